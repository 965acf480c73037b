/**
 * The fair order of the scaled mode, kept in Redis: one `FairScheduler` per model (the same class as the
 * embedded queue, so the same round robin across servers, then members), serialised as JSON under one key.
 * Every change (submit, take, cancel) reads the key under WATCH, changes the scheduler, and writes it back in a
 * MULTI with whatever must change with it (the taken-jobs record, a cancel); if another process wrote the key
 * in between, EXEC fails and the change is computed again. The caps are checked inside the same transaction, so
 * two bot processes cannot both let one member pass theirs.
 */
import type { ChainableCommander, Redis } from 'ioredis';
import PQueue from 'p-queue';
import type { GenerateParams } from '../diffusion/types.js';
import { checkCaps, imagesOf } from '../queue/caps.js';
import { FairScheduler, type FairSchedulerState } from '../queue/fair-scheduler.js';
import type { JobKind } from '../jobs/types.js';
import type { JobRecord } from '../queue/types.js';
import { ready, withinMs, type Keys } from './redis.js';

/** A job as the scaled queue hands it from bot to worker: everything a worker needs, nothing Discord-specific. */
export interface RemoteJob {
  id: string;
  guildId: string;
  channelId: string;
  userId: string;
  kind: JobKind;
  /** The bot process that submitted it and delivers it (see RedisJobQueue `instance`). */
  owner: string;
  /** The model that makes it (a ticket queue per model). */
  model: string;
  /** Its parameters without `initImage`: those bytes wait under their own key (Keys.initImage). */
  params: Omit<GenerateParams, 'initImage'>;
  hasInitImage?: boolean;
  createdAt: number;
  /** Runs started so far (a worker that died mid-run counts one). */
  attempts: number;
}

/** What Redis holds of a journaled job, made by `model` (an img2img picture is stored apart: `hasInitImage`). */
export function remoteJob(
  job: Pick<JobRecord, 'id' | 'guildId' | 'channelId' | 'userId' | 'kind' | 'params' | 'createdAt' | 'attempts'>,
  owner: string,
  model: string,
  hasInitImage: boolean,
): RemoteJob {
  const { initImage: _apart, ...params } = job.params;
  const remote: RemoteJob = {
    id: job.id,
    guildId: job.guildId,
    channelId: job.channelId,
    userId: job.userId,
    kind: job.kind,
    owner,
    model,
    params: { ...params, model },
    createdAt: job.createdAt,
    attempts: job.attempts,
  };
  if (hasInitImage) remote.hasInitImage = true;
  return remote;
}

/** The `also` of RedisFairState.submit that stores an img2img job's picture beside it, in the same MULTI. */
export function withPicture(keys: Keys, jobId: string, initImage: Uint8Array | undefined): (multi: ChainableCommander) => void {
  return (multi) => {
    if (initImage !== undefined) multi.set(keys.initImage(jobId), Buffer.from(initImage));
  };
}

/** What a worker took for one ticket; kept until the jobs' outcomes are stored. */
export interface TakenRecord {
  jobs: RemoteJob[];
  worker: string;
  startedAt: number;
  /** Times a worker started this ticket's run (more than one: a worker died and another took over). */
  runs: number;
}

interface StoredState {
  models: Record<string, FairSchedulerState<RemoteJob>>;
}

export interface Caps {
  /** Pictures this member may have waiting in this server. */
  memberCap: number;
  /** Pictures waiting in all servers together. */
  globalCap: number;
}

/** The waiting jobs of every model, read at one moment. */
export class FairView {
  constructor(readonly models: Map<string, FairScheduler<RemoteJob>>) {}

  /** Waiting jobs of one model, in the order they will start. */
  order(model: string): RemoteJob[] {
    return this.models.get(model)?.order() ?? [];
  }

  /** Every waiting job, model by model. */
  all(): RemoteJob[] {
    return [...this.models.values()].flatMap((scheduler) => scheduler.order());
  }

  find(jobId: string): RemoteJob | undefined {
    for (const scheduler of this.models.values()) {
      const job = scheduler.get(jobId);
      if (job !== undefined) return job;
    }
    return undefined;
  }
}

export class RedisFairState {
  /** One transaction at a time per connection: WATCH belongs to the connection, not to the caller. */
  private readonly serial = new PQueue({ concurrency: 1 });

  /**
   * `redis` must be this object's own connection: any EXEC or DISCARD another caller sends on it between this
   * object's WATCH and EXEC drops the WATCH, and a change computed from a stale state would be written.
   */
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {}

  /** Resolves true once its connection is ready, false after `timeoutMs`. */
  ready(timeoutMs: number): Promise<boolean> {
    return ready(this.redis, timeoutMs);
  }

  /** Close its connection. */
  close(): void {
    this.redis.disconnect();
  }

  /** The state now (no transaction). */
  async read(): Promise<FairView> {
    return fairView(await this.redis.get(this.keys.fair));
  }

  /**
   * Queue a job at the back of its member's line, if the caps allow. `also` adds to the same MULTI (the job's
   * picture, its ticket marker). @throws UserError MemberQueueFull / QueueFull; nothing is written then.
   */
  async submit(job: RemoteJob, caps: Caps | undefined, also?: (multi: ChainableCommander) => void): Promise<void> {
    await this.transact((models) => {
      if (caps !== undefined) {
        let mine = 0;
        let total = 0;
        for (const scheduler of models.values()) {
          for (const waiting of scheduler.jobsFor(job.guildId, job.userId)) mine += imagesOf(waiting.params);
          for (const waiting of scheduler.waiting()) total += imagesOf(waiting.params);
        }
        checkCaps({ images: imagesOf(job.params), mine, memberCap: caps.memberCap, total, globalCap: caps.globalCap, countChosen: job.kind === 'imagine' });
      }
      let scheduler = models.get(job.model);
      if (scheduler === undefined) models.set(job.model, (scheduler = new FairScheduler<RemoteJob>()));
      if (scheduler.has(job.id)) return { write: false, result: undefined };
      scheduler.add(job);
      return { write: true, result: undefined, also };
    });
  }

  /**
   * A worker takes the next run of `model` for a ticket: the head of the fair order and the companions `choose`
   * picks (indices into the order, 0 first), recorded under the ticket in the same transaction.
   */
  async take(
    model: string,
    ticketId: string,
    worker: string,
    choose: (order: readonly RemoteJob[]) => readonly number[],
    now: number,
  ): Promise<RemoteJob[]> {
    return this.transact((models) => {
      const scheduler = models.get(model);
      if (scheduler === undefined || scheduler.size === 0) return { write: false, result: [] };
      const jobs = scheduler.takeBatch(choose).map((job) => ({ ...job, attempts: job.attempts + 1 }));
      const record: TakenRecord = { jobs, worker, startedAt: now, runs: 1 };
      return {
        write: true,
        result: jobs,
        also: (multi) => multi.hset(this.keys.taken, ticketId, JSON.stringify(record)),
      };
    });
  }

  /** Take a waiting job out (cancelled). Returns it, or undefined when it was not waiting. */
  async remove(jobId: string, also?: (multi: ChainableCommander) => void): Promise<RemoteJob | undefined> {
    return this.transact((models) => {
      for (const scheduler of models.values()) {
        const job = scheduler.remove(jobId);
        if (job !== undefined) return { write: true, result: job, also };
      }
      return { write: false, result: undefined };
    });
  }

  private transact<R>(
    change: (models: Map<string, FairScheduler<RemoteJob>>) => { write: boolean; result: R; also?: (multi: ChainableCommander) => void },
  ): Promise<R> {
    return this.serial.add(() => withinMs(this.transactOnce(change), 10_000, 'a fair-queue transaction')) as Promise<R>;
  }

  private async transactOnce<R>(
    change: (models: Map<string, FairScheduler<RemoteJob>>) => { write: boolean; result: R; also?: (multi: ChainableCommander) => void },
  ): Promise<R> {
    {
      for (let attempt = 0; ; attempt++) {
        await this.redis.watch(this.keys.fair);
        let outcome: ReturnType<typeof change>;
        try {
          const models = parse(await this.redis.get(this.keys.fair));
          outcome = change(models);
          if (!outcome.write) {
            await this.redis.unwatch();
            return outcome.result;
          }
          const multi = this.redis.multi().set(this.keys.fair, serialize(models)).publish(this.keys.changed, '1');
          outcome.also?.(multi);
          // null: the watched key changed since it was read; compute again from the new state.
          if ((await multi.exec()) !== null) return outcome.result;
        } catch (error) {
          await this.redis.unwatch().catch(() => undefined);
          throw error;
        }
        if (attempt >= 100) throw new Error('The fair queue state in Redis kept changing under 100 attempts in a row');
      }
    }
  }
}

/** The view of a fair-state value as read from Redis (null: nothing waits). */
export function fairView(raw: string | null): FairView {
  return new FairView(parse(raw));
}

function parse(raw: string | null): Map<string, FairScheduler<RemoteJob>> {
  const models = new Map<string, FairScheduler<RemoteJob>>();
  if (raw === null) return models;
  const state = JSON.parse(raw) as StoredState;
  for (const [model, scheduler] of Object.entries(state.models)) models.set(model, FairScheduler.fromJSON(scheduler));
  return models;
}

function serialize(models: Map<string, FairScheduler<RemoteJob>>): string {
  const state: StoredState = { models: {} };
  for (const [model, scheduler] of models) state.models[model] = scheduler.toJSON();
  return JSON.stringify(state);
}
