/**
 * The bot's numbers in Prometheus' format (prom-client), for an owner to graph over months. Data flows one way:
 * this module listens to the queue's events and discord.js's REST responses, and reads the queue's snapshot and
 * the engine's health when scraped; nothing in the queue, the engine or delivery calls it.
 *
 * Label sets are bounded: servers beyond the `topGuilds` deepest queues are summed under `other`, models beyond
 * `maxModels` likewise, and every other label takes values from a fixed list.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { REST } from 'discord.js';
import type { ImageEngine } from '../diffusion/types.js';
import type { JobQueue, QueueEventMap } from '../queue/types.js';
import { engineHealthOf } from './health.js';

export interface BotMetricsOptions {
  queue: Pick<JobQueue, 'events' | 'snapshot'>;
  engine: Pick<ImageEngine, 'health'>;
  /** discord.js's REST manager: its 429s and retries are counted. */
  rest?: Pick<REST, 'on' | 'off' | 'options'>;
  /** Health checks, also exported as `imagine_health{check}` (see health.ts). */
  health?: () => Record<string, boolean>;
  /** Servers with their own `imagine_queue_depth` series; the rest are summed as `other`. Default 10. */
  topGuilds?: number;
  /** Models with their own series; more are summed as `other`. Default 8. */
  maxModels?: number;
  /** Clock for the images-per-minute window (tests). Default `Date.now`. */
  now?: () => number;
}

export interface BotMetrics {
  readonly registry: Registry;
  /** The text a Prometheus scrape gets. */
  scrape(): Promise<string>;
  /** Stop listening to the queue and REST. */
  close(): void;
}

/** Label value for "the rest" of a bounded label set. */
export const OTHER = 'other';

/**
 * Waiting jobs per server for the `limit` servers with the most, the rest summed under `other` (absent when none),
 * so a bot in thousands of servers still exports at most `limit + 1` series.
 */
export function depthByGuild(guildIds: Iterable<string>, limit: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (const id of guildIds) counts.set(id, (counts.get(id) ?? 0) + 1);
  const sorted = [...counts].sort(([a, x], [b, y]) => y - x || (a < b ? -1 : 1));
  const result = new Map(sorted.slice(0, limit));
  const rest = sorted.slice(limit).reduce((sum, [, n]) => sum + n, 0);
  if (rest > 0) result.set(OTHER, rest);
  return result;
}

/** 1 ms … 10 s: a step of the embedded model on a CPU is ~5 ms, of SD at 512² on a CPU ~0.1–2 s. */
const STEP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** 50 ms … 30 min. */
const WAIT_BUCKETS = [0.05, 0.25, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];
/** 50 ms … 10 min (the default job timeout). */
const RUN_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const MINUTE_MS = 60_000;

export function createBotMetrics(options: BotMetricsOptions): BotMetrics {
  const { queue, engine, rest } = options;
  const now = options.now ?? Date.now;
  const topGuilds = options.topGuilds ?? 10;
  const maxModels = options.maxModels ?? 8;
  const registry = new Registry();
  // process_resident_memory_bytes, nodejs_eventloop_lag_p99_seconds (reset at each scrape), heap, GC, handles.
  collectDefaultMetrics({ register: registry });

  const models = new Set<string>();
  const modelLabel = (model: string) => {
    if (models.has(model) || models.size < maxModels) {
      models.add(model);
      return model;
    }
    return OTHER;
  };

  const submitted = new Counter({ name: 'imagine_jobs_submitted_total', help: 'Jobs accepted into the queue', registers: [registry] });
  const started = new Counter({ name: 'imagine_jobs_started_total', help: 'Jobs that started running (a rerun after a restart counts again)', registers: [registry] });
  const finished = new Counter({
    name: 'imagine_jobs_finished_total',
    help: 'Jobs that reached a final state, by outcome',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const requeued = new Counter({
    name: 'imagine_jobs_requeued_total',
    help: 'Jobs put back to waiting: stopped by a shutdown, or interrupted by a crash and run again after the restart',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  for (const outcome of ['delivered', 'failed', 'cancelled']) finished.inc({ outcome }, 0);
  for (const reason of ['shutdown', 'restart']) requeued.inc({ reason }, 0);

  new Gauge({
    name: 'imagine_jobs',
    help: 'Jobs now waiting (queued), running, or being posted (delivering)',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      const { totals } = queue.snapshot();
      this.set({ state: 'queued' }, totals.waiting);
      this.set({ state: 'running' }, totals.running);
      this.set({ state: 'delivering' }, totals.delivering);
    },
  });
  new Gauge({
    name: 'imagine_queue_depth',
    help: `Waiting jobs per server, for the ${topGuilds} servers with the most; the rest summed as guild="${OTHER}"`,
    labelNames: ['guild'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [guild, depth] of depthByGuild(queue.snapshot().waiting.map((view) => view.job.guildId), topGuilds)) {
        this.set({ guild }, depth);
      }
    },
  });

  const waitSeconds = new Histogram({
    name: 'imagine_job_wait_seconds',
    help: 'From /imagine to the job starting',
    buckets: WAIT_BUCKETS,
    registers: [registry],
  });
  const runSeconds = new Histogram({
    name: 'imagine_job_run_seconds',
    help: 'From the job starting to its picture being made (before it is posted)',
    buckets: RUN_BUCKETS,
    registers: [registry],
  });
  const stepSeconds = new Histogram({
    name: 'imagine_step_seconds',
    help: 'Time per denoising step of each job (its whole run divided by its steps), by model',
    labelNames: ['model'] as const,
    buckets: STEP_BUCKETS,
    registers: [registry],
  });
  const images = new Counter({ name: 'imagine_images_total', help: 'Pictures made, by model', labelNames: ['model'] as const, registers: [registry] });

  /** When pictures were made in the last minute, and how many each time. */
  const recent: { at: number; count: number }[] = [];
  const dropOld = () => {
    const since = now() - MINUTE_MS;
    while (recent.length > 0 && recent[0]!.at <= since) recent.shift();
  };
  new Gauge({
    name: 'imagine_images_per_minute',
    help: 'Pictures made in the last 60 seconds',
    registers: [registry],
    collect() {
      dropOld();
      this.set(recent.reduce((sum, r) => sum + r.count, 0));
    },
  });

  const rateLimited = new Counter({
    name: 'imagine_discord_rate_limited_total',
    help: 'Discord REST answers 429 (too many requests), by X-RateLimit-Scope; discord.js waits and sends each again',
    labelNames: ['scope'] as const,
    registers: [registry],
  });
  const retries = new Counter({
    name: 'imagine_discord_retries_total',
    help: 'Discord REST requests discord.js sends again: after a 429 (rate_limit) or a 5xx while it has tries left (server_error)',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  for (const scope of ['user', 'global', 'shared']) rateLimited.inc({ scope }, 0);
  for (const reason of ['rate_limit', 'server_error']) retries.inc({ reason }, 0);

  const engineHealth = () => engineHealthOf(engine);
  new Gauge({
    name: 'imagine_engines_alive',
    help: 'Image engines (worker threads) up with the model loaded',
    registers: [registry],
    collect() {
      this.set(engineHealth().alive);
    },
  });
  let restartsSeen = 0;
  new Counter({
    name: 'imagine_worker_restarts_total',
    help: 'Image worker threads replaced: crashed and restarted, or stuck in a model call and replaced',
    registers: [registry],
    collect() {
      const { restarts } = engineHealth();
      if (restarts > restartsSeen) this.inc(restarts - restartsSeen);
      restartsSeen = Math.max(restartsSeen, restarts);
    },
  });
  if (options.health) {
    const health = options.health;
    new Gauge({
      name: 'imagine_health',
      help: 'What /healthz checks, 1 when it passes: the gateway is connected, the journal takes writes, an engine is alive',
      labelNames: ['check'] as const,
      registers: [registry],
      collect() {
        for (const [check, ok] of Object.entries(health())) this.set({ check }, ok ? 1 : 0);
      },
    });
  }

  const unsubscribe: (() => void)[] = [];
  const on = <K extends keyof QueueEventMap>(event: K, listener: (payload: QueueEventMap[K]) => void) =>
    unsubscribe.push(queue.events.on(event, listener));
  on('queued', () => submitted.inc());
  on('started', ({ job }) => {
    started.inc();
    waitSeconds.observe(Math.max(0, (job.startedAt ?? now()) - job.createdAt) / 1000);
  });
  on('generated', ({ job, result }) => {
    if (job.startedAt !== undefined) runSeconds.observe(Math.max(0, now() - job.startedAt) / 1000);
    const model = modelLabel(result.model);
    if (result.steps > 0) stepSeconds.observe({ model }, result.timings.totalMs / result.steps / 1000);
    images.inc({ model }, result.images.length);
    recent.push({ at: now(), count: result.images.length });
    dropOld();
  });
  on('delivered', () => finished.inc({ outcome: 'delivered' }));
  on('failed', () => finished.inc({ outcome: 'failed' }));
  on('cancelled', () => finished.inc({ outcome: 'cancelled' }));
  on('requeued', ({ reason }) => requeued.inc({ reason }));

  if (rest) {
    const onResponse = (request: { retries: number }, response: { status: number; headers: { get(name: string): string | null } }) => {
      if (response.status === 429) {
        const scope = response.headers.get('x-ratelimit-scope');
        rateLimited.inc({ scope: scope === 'global' || scope === 'shared' ? scope : 'user' });
        retries.inc({ reason: 'rate_limit' });
      } else if (response.status >= 500 && request.retries < rest.options.retries) {
        retries.inc({ reason: 'server_error' });
      }
    };
    rest.on('response', onResponse);
    unsubscribe.push(() => rest.off('response', onResponse));
  }

  return {
    registry,
    scrape: () => registry.metrics(),
    close() {
      for (const off of unsubscribe.splice(0)) off();
    },
  };
}
