import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../../src/diffusion/model.js';
import { generate } from '../../../src/diffusion/pipeline.js';
import { createWorkerPool, WorkerCrashError, type WorkerPool } from '../../../src/diffusion/engine/worker-pool.js';
import type { GenerateParams, GenerateResult } from '../../../src/diffusion/types.js';

const MODELS = join(import.meta.dirname, '..', '..', 'fixtures', 'models');
const SD_TINY = join(MODELS, 'sd-tiny');
const PIXEL_TINY = join(MODELS, 'pixel-tiny');

const temp = mkdtempSync(join(tmpdir(), 'imagine-pool-batch-'));
const pools: WorkerPool[] = [];
afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
  rmSync(temp, { recursive: true, force: true });
});

async function pool(modelDir: string, options: Partial<Parameters<typeof createWorkerPool>[0]> = {}): Promise<WorkerPool> {
  const p = await createWorkerPool({ modelDir, log: () => undefined, ...options });
  pools.push(p);
  return p;
}

/** Largest difference of any channel of any pixel between two PNGs (decoded). */
async function maxPixelDiff(a: Uint8Array, b: Uint8Array): Promise<number> {
  const [x, y] = await Promise.all([sharp(a).raw().toBuffer(), sharp(b).raw().toBuffer()]);
  expect(x.length).toBe(y.length);
  let max = 0;
  for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs(x[i] - y[i]));
  return max;
}

/** Each result's pictures against the same job made alone in this thread: same seed → same picture. */
async function expectSoloPictures(modelDir: string, jobs: GenerateParams[], results: GenerateResult[]): Promise<void> {
  const model = await loadModel(modelDir);
  try {
    for (let j = 0; j < jobs.length; j++) {
      const alone = await generate(model, jobs[j]);
      expect(results[j].images).toHaveLength(alone.images.length);
      for (let i = 0; i < alone.images.length; i++) {
        // A batched UNet call may round differently in the last bit (other kernels' blocking for a wider batch),
        // which can move a pixel by one level after clipping and quantising; never more.
        expect(await maxPixelDiff(results[j].images[i], alone.images[i])).toBeLessThanOrEqual(1);
      }
    }
  } finally {
    await model.release();
  }
}

describe('WorkerPool.generateBatch', () => {
  it.each([
    ['sd-tiny', SD_TINY, { prompt: 'a green triangle', steps: 3, seed: 7, guidanceScale: 7.5, scheduler: 'euler' }],
    ['pixel-tiny', PIXEL_TINY, { prompt: 'a red circle', steps: 3, seed: 7, guidanceScale: 7.5 }],
  ] as const)(
    'GIVEN 4 jobs from 4 members handed over together (%s) THEN they share every UNet call and each gets the picture of its own seed',
    async (_name, modelDir, base) => {
      const p = await pool(modelDir);
      const jobs: GenerateParams[] = [
        { ...base, prompt: 'one', seed: 1 },
        { ...base, prompt: 'two', seed: 2, guidanceScale: 1 },
        { ...base, prompt: 'three', seed: 3, count: 2 },
        { ...base, prompt: 'four', seed: 4 },
      ];
      const events: string[] = [];
      const results = await Promise.all(
        p.generateBatch(jobs.map((params, j) => ({ params, options: { onProgress: (s) => events.push(`${j}:${s.step}`) } }))),
      );
      // One run: every job's step 1 is reported before any job's step 2.
      expect(events.slice(0, 4).sort()).toEqual(['0:1', '1:1', '2:1', '3:1']);
      expect(events).toHaveLength(12);
      expect(results.map((r) => [r.seed, r.images.length])).toEqual([[1, 1], [2, 1], [3, 2], [4, 1]]);
      // Different seeds, different pictures.
      expect(await maxPixelDiff(results[0].images[0], results[3].images[0])).toBeGreaterThan(1);
      await expectSoloPictures(modelDir, jobs, results);
    },
  );

  it('GIVEN a group with a job of another size THEN that job runs on its own after the others', async () => {
    const p = await pool(SD_TINY);
    const base: GenerateParams = { prompt: 'a cat', steps: 3, seed: 5, guidanceScale: 7.5, scheduler: 'euler' };
    const jobs: GenerateParams[] = [base, { ...base, seed: 6, width: 128 }, { ...base, seed: 7 }];
    const events: string[] = [];
    const results = await Promise.all(
      p.generateBatch(jobs.map((params, j) => ({ params, options: { onProgress: (s) => events.push(`${j}:${s.step}`) } }))),
    );
    expect(events).toEqual(['0:1', '2:1', '0:2', '2:2', '0:3', '2:3', '1:1', '1:2', '1:3']);
    expect(results[1].width).toBe(128);
    await expectSoloPictures(SD_TINY, jobs, results);
  });

  it('GIVEN one job of a running batch is cancelled THEN it is answered at once and the others finish with their own pictures', async () => {
    const p = await pool(SD_TINY);
    // Long enough to still be running when the cancel lands, even on a fast machine.
    const base: GenerateParams = { prompt: 'a boat', steps: 60, seed: 1, guidanceScale: 7.5, scheduler: 'euler', width: 256, height: 256 };
    const jobs: GenerateParams[] = [0, 1, 2].map((i) => ({ ...base, seed: 10 + i, prompt: `boat ${i}` }));
    const cancel = new AbortController();
    const settledAt: string[] = [];
    let resolveStarted!: () => void;
    const started = new Promise<void>((resolve) => (resolveStarted = resolve));
    const promises = p.generateBatch(
      jobs.map((params, j) => ({
        params,
        options: { signal: j === 1 ? cancel.signal : undefined, onProgress: j === 1 ? () => resolveStarted() : undefined },
      })),
    );
    const outcomes = promises.map((promise, j) =>
      promise.then(
        (result) => (settledAt.push(`${j}:ok`), result),
        (error: unknown) => (settledAt.push(`${j}:error`), error),
      ),
    );
    await started;
    cancel.abort();
    expect(await outcomes[1]).toMatchObject({ identifier: 'cancelled' });
    expect(settledAt).toEqual(['1:error']);
    const [a, , c] = (await Promise.all(outcomes)) as GenerateResult[];
    expect(settledAt.slice(1).sort()).toEqual(['0:ok', '2:ok']);
    await expectSoloPictures(SD_TINY, [jobs[0], jobs[2]], [a, c]);
  });

  it('GIVEN the worker dies mid-batch THEN every job of the batch gets the crash error and the next batch runs', async () => {
    const p = await pool(SD_TINY, { allowCrashForTests: true });
    const base: GenerateParams = { prompt: 'a tree', steps: 400, seed: 1, guidanceScale: 7.5, scheduler: 'euler', width: 256, height: 256 };
    let resolveStarted!: () => void;
    const started = new Promise<void>((resolve) => (resolveStarted = resolve));
    const outcomes = p
      .generateBatch([0, 1, 2].map((i) => ({ params: { ...base, seed: i }, options: { onProgress: () => resolveStarted() } })))
      .map((promise) => promise.catch((error: unknown) => error));
    await started;
    p.crashWorkerForTest();
    for (const outcome of await Promise.all(outcomes)) expect(outcome).toBeInstanceOf(WorkerCrashError);
    const small: GenerateParams = { ...base, steps: 2, width: 64, height: 64 };
    const again = await Promise.all(p.generateBatch([{ params: small }, { params: { ...small, seed: 9 } }]));
    expect(again.map((r) => r.images.length)).toEqual([1, 1]);
  });
});
