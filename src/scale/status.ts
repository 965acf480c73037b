/**
 * What `npm run status` shows, read from Redis at one moment: the workers (fresh and stale), the waiting jobs per
 * server and per model, the oldest of them, and the runs being made. A plain object, so the CLI only formats it
 * and a test can check the numbers. Reads only; it never changes what the bots and workers keep.
 */
import type { Redis } from 'ioredis';
import { imagesOf } from '../queue/caps.js';
import { fairView, type TakenRecord } from './fair-state.js';
import type { Keys } from './redis.js';
import { STALE_MS, type WorkerRecord } from './registry.js';

export interface WorkerStatus extends WorkerRecord {
  /** Milliseconds since its last heartbeat. */
  beatAgeMs: number;
  /** Not heard from within `STALE_MS`: bots do not count it (it died, or its machine lost Redis). */
  stale: boolean;
}

export interface RunStatus {
  /** The ticket it runs for (`runs-<model>:<n>`). */
  ticket: string;
  worker: string;
  model: string;
  jobs: { id: string; guildId: string; userId: string }[];
  startedAt: number;
  ageMs: number;
  /** Times a worker started this run (more than 1: a worker died and another took it over). */
  runs: number;
}

export interface OldestWaiting {
  jobId: string;
  guildId: string;
  userId: string;
  model: string;
  createdAt: number;
  ageMs: number;
}

export interface FleetStatus {
  /** When it was read (ms since the epoch). */
  at: number;
  prefix: string;
  staleAfterMs: number;
  workers: WorkerStatus[];
  waiting: {
    jobs: number;
    /** Pictures: a job may ask for several. */
    images: number;
    /** Waiting jobs per server (guild id), most first. */
    byServer: { guildId: string; jobs: number }[];
    /** Waiting jobs per model, most first. */
    byModel: { model: string; jobs: number }[];
    oldest?: OldestWaiting;
  };
  running: RunStatus[];
}

/** Read the fleet at one moment (one MULTI: a worker moves jobs from waiting to taken in one transaction). */
export async function readFleetStatus(redis: Redis, keys: Keys, now: number): Promise<FleetStatus> {
  const read = await redis.multi().get(keys.fair).hgetall(keys.taken).hgetall(keys.workers).exec();
  if (read === null) throw new Error('Redis discarded the status read');
  for (const [error] of read) if (error !== null) throw error;
  const fair = fairView(read[0]![1] as string | null);
  const taken = read[1]![1] as Record<string, string>;
  const workerRecords = read[2]![1] as Record<string, string>;

  const workers = Object.values(workerRecords)
    .map((raw) => JSON.parse(raw) as WorkerRecord)
    .map((worker) => ({ ...worker, beatAgeMs: now - worker.beatAt, stale: now - worker.beatAt > STALE_MS }))
    .sort((a, b) => a.id.localeCompare(b.id));

  const waitingJobs = fair.all();
  const byServer = new Map<string, number>();
  const byModel = new Map<string, number>();
  let images = 0;
  let oldest: OldestWaiting | undefined;
  for (const job of waitingJobs) {
    byServer.set(job.guildId, (byServer.get(job.guildId) ?? 0) + 1);
    byModel.set(job.model, (byModel.get(job.model) ?? 0) + 1);
    images += imagesOf(job.params);
    if (oldest === undefined || job.createdAt < oldest.createdAt) {
      oldest = { jobId: job.id, guildId: job.guildId, userId: job.userId, model: job.model, createdAt: job.createdAt, ageMs: now - job.createdAt };
    }
  }
  const mostFirst = <K extends string>(counts: Map<string, number>, key: K) =>
    [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([name, jobs]) => ({ [key]: name, jobs }) as Record<K, string> & { jobs: number });

  const running: RunStatus[] = Object.entries(taken)
    .map(([ticket, raw]) => {
      const record = JSON.parse(raw) as TakenRecord;
      return {
        ticket,
        worker: record.worker,
        model: record.jobs[0]?.model ?? '',
        jobs: record.jobs.map((job) => ({ id: job.id, guildId: job.guildId, userId: job.userId })),
        startedAt: record.startedAt,
        ageMs: now - record.startedAt,
        runs: record.runs,
      };
    })
    .sort((a, b) => a.startedAt - b.startedAt);

  return {
    at: now,
    prefix: keys.prefix,
    staleAfterMs: STALE_MS,
    workers,
    waiting: {
      jobs: waitingJobs.length,
      images,
      byServer: mostFirst(byServer, 'guildId'),
      byModel: mostFirst(byModel, 'model'),
      ...(oldest !== undefined ? { oldest } : {}),
    },
    running,
  };
}
