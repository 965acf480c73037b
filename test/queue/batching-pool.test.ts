import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../src/diffusion/model.js';
import { generate } from '../../src/diffusion/pipeline.js';
import { createWorkerPool, type WorkerPool } from '../../src/diffusion/engine/worker-pool.js';
import { FairQueue } from '../../src/queue/fair-queue.js';
import type { DeliverFn } from '../../src/queue/types.js';
import type { GenerateParams, GenerateResult } from '../../src/diffusion/types.js';
import { openDatabase } from '../../src/store/database.js';
import { tempDataDir } from './helpers.js';

const PIXEL_TINY = path.join(import.meta.dirname, '..', 'fixtures', 'models', 'pixel-tiny');
const cleanup: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const step of cleanup.reverse()) await step();
});

describe('FairQueue batching over the real worker pool (pixel-tiny)', () => {
  it('GIVEN 4 compatible jobs from 4 members THEN the pool runs them as one batch and each PNG is the one its seed makes alone', async () => {
    const pool: WorkerPool = await createWorkerPool({ modelDir: PIXEL_TINY, log: () => undefined });
    cleanup.push(() => pool.close());
    const dataDir = tempDataDir();
    const db = openDatabase({ dataDir });
    cleanup.push(() => fs.rmSync(dataDir, { recursive: true, force: true }));
    cleanup.push(() => {
      db.close();
    });
    const results = new Map<string, GenerateResult>();
    const deliver: DeliverFn = async (job, result) => {
      results.set(job.userId, result);
      return { messageId: `m-${job.id}` };
    };
    const queue = new FairQueue({ db, engine: pool, deliver, resultsDir: path.join(dataDir, 'results'), maxBatchImages: 4 });
    await queue.resume();
    cleanup.push(async () => void (await queue.shutdown({ deliveryGraceMs: 100 })));

    const base: GenerateParams = { prompt: 'a red circle', steps: 6, seed: 0, guidanceScale: 7.5, width: 32, height: 32 };
    const jobs: Record<string, GenerateParams> = {
      ann: { ...base, seed: 11 },
      bob: { ...base, seed: 22, prompt: 'a blue square' },
      cat: { ...base, seed: 33, guidanceScale: 1 },
      dan: { ...base, seed: 44, negativePrompt: 'green' },
    };
    for (const [userId, params] of Object.entries(jobs)) queue.submit({ guildId: 'g', channelId: 'c', userId, params });
    await queue.onIdle();

    expect([...pool.stats().runSizes]).toEqual([[4, 1]]);
    expect([...results.keys()].sort()).toEqual(Object.keys(jobs));
    const model = await loadModel(PIXEL_TINY);
    try {
      for (const [userId, params] of Object.entries(jobs)) {
        const alone = await generate(model, params);
        const [got, want] = await Promise.all([
          sharp(Buffer.from(results.get(userId)!.images[0])).raw().toBuffer(),
          sharp(Buffer.from(alone.images[0])).raw().toBuffer(),
        ]);
        let max = 0;
        for (let i = 0; i < got.length; i++) max = Math.max(max, Math.abs(got[i] - want[i]));
        // A wider UNet batch may round differently in the last float bit: at most one level per channel.
        expect(max).toBeLessThanOrEqual(1);
      }
    } finally {
      await model.release();
    }
  });
});
