/**
 * Who makes pictures: each image worker writes a heartbeat record (host, models, ms per step, current jobs)
 * every few seconds, and what it knows of its models, so bots can route, refuse and estimate, and
 * `npm run status` can show the fleet. A worker whose heartbeat is older than `STALE_MS` counts as gone.
 */
import type { Redis } from 'ioredis';
import type { EngineModelListing } from '../diffusion/types.js';
import type { Keys } from './redis.js';

/** Heartbeat period of a worker. */
export const HEARTBEAT_MS = 2000;
/** A worker not heard from for this long is not counted (five missed beats). */
export const STALE_MS = 5 * HEARTBEAT_MS;

export interface WorkerRecord {
  id: string;
  host: string;
  pid: number;
  models: string[];
  /** Measured wall milliseconds per step of one reference-size image (moving average); 0 before the first run. */
  msPerStep: number;
  /**
   * Measured wall milliseconds per step of a run of k reference-size images, by k (eta.ts's `runMsPerStep`, saved
   * form); empty before the first run. Absent from a worker older than it.
   */
  runMsPerStep?: Record<string, number>;
  /** Images one of its runs may make for several jobs together (its BATCH_IMAGES). Absent: 1. */
  maxBatchImages?: number;
  /** Jobs it is making now. */
  current: string[];
  startedAt: number;
  beatAt: number;
}

export class Registry {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {}

  async beat(record: WorkerRecord): Promise<void> {
    await this.redis.hset(this.keys.workers, record.id, JSON.stringify(record));
  }

  async leave(workerId: string): Promise<void> {
    await this.redis.hdel(this.keys.workers, workerId);
  }

  /** Every worker that has a record, fresh or stale (`npm run status` shows both). */
  async workers(): Promise<WorkerRecord[]> {
    const all = await this.redis.hgetall(this.keys.workers);
    return Object.values(all)
      .map((raw) => JSON.parse(raw) as WorkerRecord)
      .sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Workers heard from within `STALE_MS` of `now`. */
  async alive(now: number): Promise<WorkerRecord[]> {
    return (await this.workers()).filter((worker) => now - worker.beatAt <= STALE_MS);
  }

  /** A worker publishes the models it serves, with their facts, so bots that load none can describe them. */
  async publishModels(models: readonly EngineModelListing[]): Promise<void> {
    if (models.length === 0) return;
    const fields: string[] = [];
    for (const model of models) fields.push(model.name, JSON.stringify(model));
    await this.redis.hset(this.keys.models, ...fields);
  }

  /** Every model any worker ever published, the default first. */
  async models(): Promise<EngineModelListing[]> {
    const all = await this.redis.hgetall(this.keys.models);
    return Object.values(all)
      .map((raw) => JSON.parse(raw) as EngineModelListing)
      .sort((a, b) => Number(b.isDefault) - Number(a.isDefault) || a.name.localeCompare(b.name));
  }
}
