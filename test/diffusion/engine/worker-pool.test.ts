import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { isUserError } from '../../../src/errors.js';
import { loadModel } from '../../../src/diffusion/model.js';
import { generate } from '../../../src/diffusion/pipeline.js';
import { createWorkerPool, WorkerCrashError, type WorkerPool } from '../../../src/diffusion/engine/worker-pool.js';
import type { GenerateParams, StepProgress } from '../../../src/diffusion/types.js';

const MODELS = join(import.meta.dirname, '..', '..', 'fixtures', 'models');
const SD_TINY = join(MODELS, 'sd-tiny');
const base: GenerateParams = { prompt: 'a green triangle', steps: 3, seed: 7, guidanceScale: 7.5, scheduler: 'euler' };
// A job long enough to still be running when the test acts on it, even on a fast machine (512 px, 8 images with
// CFG, 1000 steps: tens of seconds here); the tests stop it long before it ends.
const long: GenerateParams = { ...base, steps: 1000, width: 512, height: 512, count: 8 };

const temp = mkdtempSync(join(tmpdir(), 'imagine-pool-'));
const pools: WorkerPool[] = [];
afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
  rmSync(temp, { recursive: true, force: true });
});

async function pool(options: Partial<Parameters<typeof createWorkerPool>[0]> = {}): Promise<{ pool: WorkerPool; logs: string[] }> {
  const logs: string[] = [];
  const p = await createWorkerPool({ modelDir: SD_TINY, log: (l) => logs.push(l), ...options });
  pools.push(p);
  return { pool: p, logs };
}

/** Resolves at the first progress call, so the job is known to be running in the worker. */
function firstProgress(): { onProgress: (p: StepProgress) => void; started: Promise<void> } {
  let resolve!: () => void;
  const started = new Promise<void>((r) => (resolve = r));
  return { onProgress: () => resolve(), started };
}

describe('WorkerPool', () => {
  it('GIVEN a job THEN the worker returns the same PNG bytes as the pipeline in this thread, with progress relayed', async () => {
    const { pool: p } = await pool();
    const info = await p.info();
    expect(info).toMatchObject({ name: 'sd-tiny', width: 64, height: 64, latentFactor: 8 });
    const progress: StepProgress[] = [];
    const result = await p.generate(base, { onProgress: (s) => progress.push(s) });
    expect(progress.map((s) => s.step)).toEqual([1, 2, 3]);
    expect(progress[0].preview?.rgb).toBeInstanceOf(Uint8Array);
    const meta = await sharp(result.images[0]).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 64]);

    const model = await loadModel(SD_TINY);
    try {
      const local = await generate(model, base);
      expect(Buffer.compare(Buffer.from(local.images[0]), Buffer.from(result.images[0]))).toBe(0);
    } finally {
      await model.release();
    }
  });

  it('GIVEN bad inputs THEN the caller gets the UserError from the worker', async () => {
    const { pool: p } = await pool();
    const error = await p.generate({ ...base, steps: 0 }).catch((e: unknown) => e);
    expect(isUserError(error) && error.identifier).toBe('invalidInput');
    expect((error as Error).message).toMatch(/Expected `steps` to be an integer from 1 to 1000, got `0`/);
  });

  it('GIVEN an abort while running THEN the job is cancelled between steps and the next job works', async () => {
    const { pool: p } = await pool();
    const controller = new AbortController();
    const { onProgress, started } = firstProgress();
    const running = p.generate(long, { signal: controller.signal, onProgress });
    await started;
    controller.abort();
    await expect(running).rejects.toMatchObject({ identifier: 'cancelled' });
    const next = await p.generate(base);
    expect(next.images).toHaveLength(1);
  });

  it('GIVEN an abort of a queued job THEN it is dropped without running', async () => {
    const { pool: p } = await pool();
    const runningAbort = new AbortController();
    const { onProgress, started } = firstProgress();
    const running = p.generate(long, { signal: runningAbort.signal, onProgress });
    await started;
    const queuedAbort = new AbortController();
    const queuedProgress: number[] = [];
    const queued = p.generate(base, { signal: queuedAbort.signal, onProgress: (s) => queuedProgress.push(s.step) });
    expect(p.stats().waiting).toBe(1);
    queuedAbort.abort();
    await expect(queued).rejects.toMatchObject({ identifier: 'cancelled' });
    expect(p.stats().waiting).toBe(0);
    runningAbort.abort();
    await expect(running).rejects.toMatchObject({ identifier: 'cancelled' });
    expect(queuedProgress).toEqual([]);
  });

  it('GIVEN the worker dies during a job THEN that caller gets a clear error, the worker restarts (counted in health) and the next job works', async () => {
    const { pool: p, logs } = await pool({ allowCrashForTests: true });
    expect(p.health()).toEqual({ alive: 1, restarts: 0 });
    const { onProgress, started } = firstProgress();
    const running = p.generate(long, { onProgress });
    await started;
    p.crashWorkerForTest();
    const error = await running.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkerCrashError);
    expect((error as Error).message).toMatch(/stopped unexpectedly \(exit code 70\).*restarted/);
    const next = await p.generate(base);
    expect(next.images).toHaveLength(1);
    expect(logs.some((l) => /exited with code 70; restarting/.test(l))).toBe(true);
    expect(p.health()).toEqual({ alive: 1, restarts: 1 });
    await p.close();
    expect(p.health().alive).toBe(0);
  });

  it('GIVEN a UNet that throws inside the runtime THEN the job fails with its message and the worker keeps serving', async () => {
    const dir = join(temp, 'broken');
    cpSync(SD_TINY, dir, { recursive: true });
    cpSync(join(MODELS, 'broken-unet', 'unet', 'model.onnx'), join(dir, 'unet', 'model.onnx'));
    const { pool: p, logs } = await pool({ modelDir: dir });
    await expect(p.generate(base)).rejects.toThrow(/reshape|Reshape|shape/i);
    await expect(p.generate(base)).rejects.toThrow(/reshape|Reshape|shape/i);
    expect(logs.some((l) => /restarting/.test(l))).toBe(false);
  });

  it('GIVEN a model that does not fit THEN creating the pool fails with the loader message', async () => {
    const dir = join(temp, 'misfit');
    cpSync(SD_TINY, dir, { recursive: true });
    cpSync(join(SD_TINY, 'vae_decoder', 'model.onnx'), join(dir, 'unet', 'model.onnx'));
    await expect(createWorkerPool({ modelDir: dir, log: () => {} })).rejects.toThrow(/unet\/model\.onnx: expected an input `sample`/);
  });

  it('GIVEN a plain node process with tsx (as npm scripts run) THEN the .ts worker starts and makes a picture', async () => {
    const script = join(temp, 'pool-under-tsx.mts'); // .mts: ESM (top-level await) outside the package
    const poolUrl = pathToFileURL(join(import.meta.dirname, '..', '..', '..', 'src', 'diffusion', 'engine', 'worker-pool.ts')).href;
    writeFileSync(
      script,
      `import { createWorkerPool } from ${JSON.stringify(poolUrl)};
const pool = await createWorkerPool({ modelDir: ${JSON.stringify(SD_TINY)} });
const result = await pool.generate(${JSON.stringify(base)});
await pool.close();
console.log(JSON.stringify({ bytes: result.images[0].byteLength, png: Buffer.from(result.images[0].subarray(1, 4)).toString() }));
`,
    );
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', tsx, script]);
    const out = JSON.parse(stdout.trim().split('\n').at(-1)!) as { bytes: number; png: string };
    expect(out.png).toBe('PNG');
    expect(out.bytes).toBeGreaterThan(100);
  });

  it('GIVEN waiting jobs of one size given one by one THEN each runs alone, in order: grouping is the queue\'s (generateBatch)', async () => {
    const { pool: p } = await pool();
    // A long job holds the worker while the others queue up; cancelling it frees the worker for them.
    const { onProgress, started } = firstProgress();
    const firstAbort = new AbortController();
    const first = p.generate(long, { onProgress, signal: firstAbort.signal }).catch((e: unknown) => e);
    await started;
    const events: string[] = [];
    const jobs: GenerateParams[] = [1, 2, 3].map((seed) => ({ ...base, prompt: `job ${seed}`, seed }));
    const running = Promise.all(jobs.map((params, j) => p.generate(params, { onProgress: (s) => events.push(`${j}:${s.step}`) })));
    expect(p.stats().waiting).toBe(3);
    firstAbort.abort();
    const results = await running;
    expect(await first).toMatchObject({ identifier: 'cancelled' });
    expect(events).toEqual(['0:1', '0:2', '0:3', '1:1', '1:2', '1:3', '2:1', '2:2', '2:3']);
    expect(results.map((r) => r.seed)).toEqual([1, 2, 3]);
    expect([...p.stats().runSizes]).toEqual([[1, 4]]);
  });

  it('GIVEN two workers THEN two jobs run side by side and close() rejects what waits', async () => {
    const { pool: p } = await pool({ workers: 2 });
    const [a, b] = await Promise.all([p.generate(base), p.generate({ ...base, seed: 8 })]);
    expect(Buffer.compare(Buffer.from(a.images[0]), Buffer.from(b.images[0]))).not.toBe(0);
    const waiting = [p.generate(long), p.generate(long), p.generate(long)].map((job) => job.catch((e: unknown) => e));
    await p.close();
    for (const error of await Promise.all(waiting)) expect(error).toMatchObject({ identifier: 'shuttingDown' });
    await expect(p.generate(base)).rejects.toMatchObject({ identifier: 'shuttingDown' });
  });
});
