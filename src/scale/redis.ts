/**
 * Connections and key names of the scaled mode. Every key lives under one prefix (`imagine:` by default), so one
 * Redis can serve several bots, and a test its own. BullMQ's queues use the same prefix through its `prefix` option.
 */
import { Redis, type RedisOptions } from 'ioredis';

export interface RedisTarget {
  url: string;
  /** Key prefix without the trailing colon. Default `imagine`. */
  prefix?: string;
}

/**
 * A connection for commands that must answer now or fail: with Redis unreachable a command fails at once
 * (no offline queue), so `/imagine` can say so instead of hanging; ioredis reconnects by itself meanwhile.
 */
export function commandConnection(target: RedisTarget, name: string): Redis {
  return quiet(new Redis(target.url, {
    connectionName: name,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // Back off up to 2 s between reconnects, for ever: the bot keeps running while Redis is away.
    retryStrategy: (times) => Math.min(100 * times, 2000),
  } satisfies RedisOptions));
}

/** A connection for BullMQ's blocking reads and workers (BullMQ requires `maxRetriesPerRequest: null`). */
export function bullConnection(target: RedisTarget, name: string): Redis {
  return quiet(new Redis(target.url, {
    connectionName: name,
    maxRetriesPerRequest: null,
    retryStrategy: (times) => Math.min(100 * times, 2000),
  } satisfies RedisOptions));
}

/**
 * Connection errors are expected while Redis is away (ioredis reconnects by itself); the callers see them as
 * failed commands. Without a listener ioredis prints every failed reconnect to the console.
 */
function quiet(redis: Redis): Redis {
  redis.on('error', () => undefined);
  return redis;
}

/** The names of everything the scaled mode keeps in Redis. */
export class Keys {
  readonly prefix: string;
  constructor(prefix = 'imagine') {
    this.prefix = prefix;
  }
  /** JSON: per model, the fair order of the waiting jobs (`FairScheduler` state). */
  get fair(): string {
    return `${this.prefix}:fair`;
  }
  /** Hash: BullMQ ticket id → the jobs its worker took (JSON), until their outcomes are stored. */
  get taken(): string {
    return `${this.prefix}:taken`;
  }
  /** Hash: worker id → its heartbeat record (JSON). */
  get workers(): string {
    return `${this.prefix}:workers`;
  }
  /** Hash: model name → what the bot needs to know of it (JSON), written by the workers that serve it. */
  get models(): string {
    return `${this.prefix}:models`;
  }
  /** Pub/sub channel: the fair state changed (places may have moved). */
  get changed(): string {
    return `${this.prefix}:changed`;
  }
  /** String: a running job's cancel request (who asked), read by its worker at each step. */
  cancel(jobId: string): string {
    return `${this.prefix}:cancel:${jobId}`;
  }
  /** Hash: a job's outcome (state, meta JSON, PNG fields), until its bot has taken it. */
  outcome(jobId: string): string {
    return `${this.prefix}:outcome:${jobId}`;
  }
  /** Binary string: an img2img job's starting picture, until the job is done. */
  initImage(jobId: string): string {
    return `${this.prefix}:init:${jobId}`;
  }
  /** BullMQ queue name of a model's tickets (queue names may not contain ':'). */
  ticketQueue(model: string): string {
    return `runs-${model.replace(/[^A-Za-z0-9._-]/g, '_')}`;
  }
}

/**
 * A Redis call that gives up after `ms`: with the offline queue off, ioredis can leave a MULTI pending for good
 * when the connection drops under it, and one stuck call must not hold up everything queued behind it.
 */
export async function withinMs<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`Redis did not answer ${what} within ${ms} ms`)), ms);
        timer.unref();
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves true once the connection is ready, false after `timeoutMs` (it goes on trying). */
export function ready(redis: Redis, timeoutMs: number): Promise<boolean> {
  if (redis.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      resolve(false);
    }, timeoutMs);
    timer.unref();
    const onReady = () => {
      clearTimeout(timer);
      resolve(true);
    };
    redis.once('ready', onReady);
  });
}

