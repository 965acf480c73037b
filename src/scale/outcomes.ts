/**
 * How a job ended, as its worker leaves it in Redis for the bot that delivers it: the state, the error or the
 * result's facts, and the PNGs as binary fields of the same hash (a picture of several MB is one field). The
 * worker writes it before it lets go of the job; the bot deletes it once its own journal holds the outcome, and
 * it expires by itself after a week in case no bot ever comes back for it.
 */
import type { Redis } from 'ioredis';
import type { Identifier } from '../errors.js';
import type { GenerateResult } from '../diffusion/types.js';
import type { Keys } from './redis.js';

/** A week: long enough for a bot that is down over a weekend to come back and deliver. */
export const OUTCOME_TTL_SECONDS = 7 * 24 * 3600;

export type JobOutcome =
  | { state: 'made'; result: GenerateResult }
  | { state: 'failed'; error: string; identifier?: Identifier }
  | { state: 'cancelled'; by?: string };

export class OutcomeStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {}

  async write(jobId: string, outcome: JobOutcome): Promise<void> {
    const key = this.keys.outcome(jobId);
    const fields: (string | Buffer)[] = [];
    if (outcome.state === 'made') {
      const { images, ...facts } = outcome.result;
      fields.push('state', 'made', 'meta', JSON.stringify({ ...facts, count: images.length }));
      images.forEach((png, i) => fields.push(`png${i}`, Buffer.from(png.buffer, png.byteOffset, png.byteLength)));
    } else {
      const { state, ...rest } = outcome;
      fields.push('state', state, 'meta', JSON.stringify(rest));
    }
    await this.redis.multi().del(key).hset(key, ...fields).expire(key, OUTCOME_TTL_SECONDS).exec();
  }

  async read(jobId: string): Promise<JobOutcome | undefined> {
    const raw = await this.redis.hgetallBuffer(this.keys.outcome(jobId));
    const state = raw.state?.toString();
    if (state === undefined || raw.meta === undefined) return undefined;
    const meta = JSON.parse(raw.meta.toString()) as Record<string, unknown>;
    if (state === 'made') {
      const { count, ...facts } = meta as Omit<GenerateResult, 'images'> & { count: number };
      const images: Uint8Array[] = [];
      for (let i = 0; i < count; i++) {
        const png = raw[`png${i}`];
        if (png === undefined) return undefined;
        images.push(new Uint8Array(png.buffer, png.byteOffset, png.byteLength));
      }
      return { state, result: { ...facts, images } };
    }
    if (state === 'failed') return { state, ...(meta as { error: string; identifier?: Identifier }) };
    return { state: 'cancelled', ...(meta as { by?: string }) };
  }

  async has(jobId: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.outcome(jobId))) === 1;
  }

  async delete(jobId: string): Promise<void> {
    await this.redis.del(this.keys.outcome(jobId));
  }
}
