/**
 * The pool serves several models: a job names one (`GenerateParams.model`), a worker loads it on first use and
 * keeps the loaded ones in an LRU bounded by `memoryMb`.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { isUserError } from '../../../src/errors.js';
import { createWorkerPool, type WorkerPool } from '../../../src/diffusion/engine/worker-pool.js';
import { engineModels } from '../../../src/models/library.js';
import type { GenerateParams } from '../../../src/diffusion/types.js';

const MODELS = join(import.meta.dirname, '..', '..', 'fixtures', 'models');
const SD_TINY = join(MODELS, 'sd-tiny');
const base: GenerateParams = { prompt: 'a green triangle', steps: 2, seed: 7, guidanceScale: 7.5, scheduler: 'euler' };

const temp = mkdtempSync(join(tmpdir(), 'imagine-models-'));
const pools: WorkerPool[] = [];
afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
  rmSync(temp, { recursive: true, force: true });
});

async function pool(options: Partial<Parameters<typeof createWorkerPool>[0]> = {}): Promise<{ pool: WorkerPool; logs: string[] }> {
  const logs: string[] = [];
  const p = await createWorkerPool({ modelDir: SD_TINY, models: engineModels(MODELS), log: (l) => logs.push(l), ...options });
  pools.push(p);
  return { pool: p, logs };
}

describe('WorkerPool with several models', () => {
  it('GIVEN jobs for sd-tiny and pixel-tiny THEN one worker makes a picture with each, and both stay loaded', async () => {
    const { pool: p } = await pool();
    const sd = await p.generate({ ...base, model: 'sd-tiny' });
    const pixel = await p.generate({ ...base, model: 'pixel-tiny' });
    const plain = await p.generate(base);
    expect([sd.model, pixel.model, plain.model]).toEqual(['sd-tiny', 'pixel-tiny', 'sd-tiny']);
    for (const result of [sd, pixel]) expect((await sharp(result.images[0]).metadata()).format).toBe('png');
    expect(p.stats().loadedModels).toEqual([['pixel-tiny', 'sd-tiny']]);
    // What the queue asks before preferring a job (queue/model-affinity.ts); undefined is the default model.
    expect([p.modelLoaded('pixel-tiny'), p.modelLoaded(undefined), p.modelLoaded('sd-tiny'), p.modelLoaded('lcm-tiny')]).toEqual([true, true, true, false]);
    const listing = await p.models();
    expect(listing[0]).toMatchObject({ name: 'sd-tiny', isDefault: true });
    expect(listing.find((m) => m.name === 'pixel-tiny')).toMatchObject({ kind: 'pixel', info: { name: 'pixel-tiny', latentFactor: 1 } });
    expect(listing.find((m) => m.name === 'lcm-tiny')?.info).toBeUndefined();
    expect(listing.every((m) => m.estimatedBytes === Math.round(m.bytes * 1.2))).toBe(true);
  });

  it('GIVEN a budget of two tiny models WHEN a third is asked for THEN the least recently used is released', async () => {
    // The tiny models are ~0.2-0.3 MB on disk (× 1.2 reckoned): 0.75 MiB holds two of them, not three.
    const { pool: p } = await pool({ memoryMb: 0.75 });
    await p.generate({ ...base, model: 'pixel-tiny' });
    await p.generate(base); // sd-tiny is now the most recently used
    expect(p.stats().loadedModels).toEqual([['pixel-tiny', 'sd-tiny']]);
    const lcm = await p.generate({ ...base, model: 'lcm-tiny' });
    expect(lcm.model).toBe('lcm-tiny');
    expect(p.stats().loadedModels).toEqual([['sd-tiny', 'lcm-tiny']]);
  });

  it('GIVEN a budget smaller than any model THEN each job still runs, with one model loaded at a time', async () => {
    const { pool: p } = await pool({ memoryMb: 0.01 });
    expect((await p.generate({ ...base, model: 'pixel-tiny' })).model).toBe('pixel-tiny');
    expect(p.stats().loadedModels).toEqual([['pixel-tiny']]);
    expect((await p.generate(base)).model).toBe('sd-tiny');
    expect(p.stats().loadedModels).toEqual([['sd-tiny']]);
  });

  it('GIVEN a job for a model that is not installed THEN it is refused at once with one line naming the installed ones', async () => {
    const { pool: p } = await pool();
    const error = await p.generate({ ...base, model: 'sdxl-huge' }).catch((e: unknown) => e);
    expect(isUserError(error)).toBe(true);
    expect((error as Error).message).toBe('There is no model `sdxl-huge` (installed: sd-tiny, lcm-tiny, pixel-tiny, sd-tiny-fp16, sdxl-tiny).');
    expect(p.stats().runSizes.size).toBe(0);
  });

  it('GIVEN a model that fails to load THEN it is reported once, by name and missing file, and its jobs fail with that line', async () => {
    const library = join(temp, 'library');
    cpSync(join(MODELS, 'pixel-tiny'), join(library, 'pixel-tiny'), { recursive: true });
    const broken = join(library, 'half-gone');
    cpSync(SD_TINY, broken, { recursive: true });
    const models = engineModels(library);
    rmSync(join(broken, 'vae_decoder'), { recursive: true });
    const { pool: p, logs } = await pool({ models });
    const first = (await p.generate({ ...base, model: 'half-gone' }).catch((e: unknown) => e)) as Error;
    expect(isUserError(first)).toBe(true);
    expect(first.message).toMatch(/^The model `half-gone` could not be loaded: .*vae_decoder/);
    const second = (await p.generate({ ...base, model: 'half-gone' }).catch((e: unknown) => e)) as Error;
    expect(second.message).toBe(first.message);
    expect(logs.filter((line) => line.includes('half-gone'))).toHaveLength(1);
    // The worker goes on with the other models.
    expect((await p.generate({ ...base, model: 'pixel-tiny' })).model).toBe('pixel-tiny');
    expect((await p.generate(base)).model).toBe('sd-tiny');
  });

  it('GIVEN a batch of jobs for two models THEN only jobs for the same model share a run', async () => {
    const { pool: p } = await pool();
    // Grouping needs the model's facts (its native size), known once a worker has loaded it.
    await p.generate({ ...base, model: 'pixel-tiny' });
    const results = await Promise.all(
      p.generateBatch([
        { params: { ...base, model: 'pixel-tiny' } },
        { params: { ...base, seed: 8, model: 'pixel-tiny' } },
        { params: { ...base, seed: 9 } },
      ]),
    );
    expect(results.map((r) => r.model)).toEqual(['pixel-tiny', 'pixel-tiny', 'sd-tiny']);
    expect(Object.fromEntries(p.stats().runSizes)).toEqual({ 1: 2, 2: 1 });
  });
});
