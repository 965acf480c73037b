import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isUserError } from '../../src/errors.js';
import { loadModel, type DiffusionModel } from '../../src/diffusion/model.js';
import { batchKey, checkInputs, generate, generateBatch, guidanceScaleEmbedding } from '../../src/diffusion/pipeline.js';
import { readPngText, withPngText } from '../../src/image/png-text.js';
import { SCHEDULER_NAMES, type GenerateParams, type StepProgress } from '../../src/diffusion/types.js';

const MODELS = join(import.meta.dirname, '..', 'fixtures', 'models');
const NAMES = ['sd-tiny', 'lcm-tiny', 'sd-tiny-fp16', 'pixel-tiny'] as const;
const models = {} as Record<(typeof NAMES)[number], DiffusionModel>;

beforeAll(async () => {
  for (const name of NAMES) models[name] = await loadModel(join(MODELS, name));
});
afterAll(async () => {
  for (const name of NAMES) await models[name]?.release();
});

// Euler is the scheduler every model can use; each model's own scheduler is exercised below where available.
const base: GenerateParams = { prompt: 'a red circle on a white background', steps: 4, seed: 42, guidanceScale: 7.5, scheduler: 'euler' };

async function decode(png: Uint8Array) {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

/** The same picture, byte for byte, apart from its `parameters` text (which names the guidance, the negative prompt…). */
const same = (a: Uint8Array, b: Uint8Array) => {
  const blank = (png: Uint8Array) => Buffer.from(withPngText(png, { parameters: '' }));
  return Buffer.compare(blank(a), blank(b)) === 0;
};

describe.each(NAMES)('generate on %s', (name) => {
  it('GIVEN a prompt THEN it returns a PNG of the native size with its timings', async () => {
    const model = models[name];
    const result = await generate(model, base);
    expect(result.images).toHaveLength(1);
    const image = await decode(result.images[0]);
    expect([image.width, image.height]).toEqual([model.info.width, model.info.height]);
    expect(image.channels).toBe(3);
    expect(result).toMatchObject({ width: model.info.width, height: model.info.height, seed: 42, steps: 4, scheduler: 'euler', model: name, truncated: false });
    expect(result.timings.unetMs).toBeGreaterThan(0);
    expect(result.timings.runtimeMs).toBeGreaterThanOrEqual(result.timings.unetMs);
    expect(result.timings.totalMs).toBeGreaterThanOrEqual(result.timings.runtimeMs);
    // Not a flat image: random weights still give structure.
    expect(new Set(image.data).size).toBeGreaterThan(10);
  });

  it('GIVEN the same seed twice THEN the PNG bytes are identical; another seed or prompt gives another image', async () => {
    const model = models[name];
    const a = await generate(model, base);
    const b = await generate(model, base);
    const otherSeed = await generate(model, { ...base, seed: 43 });
    const otherPrompt = await generate(model, { ...base, prompt: 'a blue square' });
    expect(same(a.images[0], b.images[0])).toBe(true);
    expect(same(a.images[0], otherSeed.images[0])).toBe(false);
    expect(same(a.images[0], otherPrompt.images[0])).toBe(false);
  });

  it('GIVEN guidance on and off THEN the images differ; guidance 0 is accepted as a value', async () => {
    const model = models[name];
    const on = await generate(model, { ...base, guidanceScale: 7.5 });
    const off = await generate(model, { ...base, guidanceScale: 1 });
    const zero = await generate(model, { ...base, guidanceScale: 0 });
    expect(same(on.images[0], off.images[0])).toBe(false);
    expect(zero.guidanceScale).toBe(0);
    if (model.unet.timestepCond) {
      // LCM embeds w − 1 instead of running CFG: 0 and 1 are different guidance values.
      expect(same(zero.images[0], off.images[0])).toBe(false);
    } else {
      // Guidance ≤ 1 runs one half: 0 and 1 both mean "conditional only".
      expect(same(zero.images[0], off.images[0])).toBe(true);
    }
  });

  it('GIVEN steps THEN exactly one progress call per step, in order, with previews of the right size', async () => {
    const model = models[name];
    const calls: StepProgress[] = [];
    await generate(model, { ...base, steps: 5 }, { onProgress: (p) => calls.push(p), previewEvery: 2 });
    expect(calls.map((c) => c.step)).toEqual([1, 2, 3, 4, 5]);
    expect(calls.every((c) => c.totalSteps === 5)).toBe(true);
    expect(calls.map((c) => c.preview !== undefined)).toEqual([false, true, false, true, true]);
    const cells = model.info.width / model.info.latentFactor;
    const preview = calls[1].preview!;
    expect([preview.width, preview.height]).toEqual([cells, cells]);
    expect(preview.rgb).toHaveLength(cells * cells * 3);
    for (let i = 1; i < calls.length; i++) expect(calls[i].elapsedMs).toBeGreaterThanOrEqual(calls[i - 1].elapsedMs);
  });
});

describe('schedulers in the loop', () => {
  it.each(NAMES)('GIVEN %s with no scheduler named THEN its own scheduler from scheduler_config.json runs', async (name) => {
    const model = models[name];
    const calls: number[] = [];
    const result = await generate(model, { ...base, scheduler: undefined }, { onProgress: (p) => calls.push(p.step) });
    expect(result.scheduler).toBe(model.info.defaultScheduler);
    expect(calls).toEqual([1, 2, 3, 4]);
  });

  it.each(SCHEDULER_NAMES)('GIVEN scheduler %s THEN one progress call per step and a deterministic image', async (scheduler) => {
    const model = models['sd-tiny'];
    const calls: number[] = [];
    const a = await generate(model, { ...base, scheduler, steps: 6 }, { onProgress: (p) => calls.push(p.step) });
    const b = await generate(model, { ...base, scheduler, steps: 6 });
    expect(calls).toEqual([1, 2, 3, 4, 5, 6]);
    expect(same(a.images[0], b.images[0])).toBe(true);
  });
});

describe('generate', () => {
  it('GIVEN count 3 THEN one batch gives 3 images, image i matching a single job with seed + i', async () => {
    const model = models['sd-tiny'];
    const batch = await generate(model, { ...base, count: 3 });
    const single = await generate(model, { ...base, seed: 43 });
    expect(batch.images).toHaveLength(3);
    expect(same(batch.images[0], batch.images[1])).toBe(false);
    // Batched and single UNet calls may round differently in the last bit: compare decoded pixels.
    const a = await decode(batch.images[1]);
    const b = await decode(single.images[0]);
    let maxDiff = 0;
    for (let i = 0; i < a.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a.data[i] - b.data[i]));
    expect(maxDiff).toBeLessThanOrEqual(1);
    // Each PNG says what it was made with, in A1111's `parameters`, with its own seed.
    expect(batch.images.map((png) => readPngText(png).get('parameters'))).toEqual(
      [42, 43, 44].map((seed) => `${base.prompt}\nSteps: 4, Sampler: Euler, CFG scale: 7.5, Seed: ${seed}, Size: 64x64, Model: sd-tiny, RNG: CPU`),
    );
  });

  it('GIVEN a negative prompt THEN it changes the image with guidance and not without', async () => {
    const model = models['sd-tiny'];
    const plain = await generate(model, base);
    const negative = await generate(model, { ...base, negativePrompt: 'blurry, lowres' });
    expect(same(plain.images[0], negative.images[0])).toBe(false);
    const plainOff = await generate(model, { ...base, guidanceScale: 1 });
    const negativeOff = await generate(model, { ...base, guidanceScale: 1, negativePrompt: 'blurry, lowres' });
    expect(same(plainOff.images[0], negativeOff.images[0])).toBe(true);
  });

  it('GIVEN a size other than native THEN the PNG has that size', async () => {
    const result = await generate(models['sd-tiny'], { ...base, width: 128, height: 64 });
    const image = await decode(result.images[0]);
    expect([image.width, image.height]).toEqual([128, 64]);
  });

  it('GIVEN a UNet exported at a fixed size (as the embedded model is) THEN another size is refused before any work', async () => {
    const model = models['pixel-tiny'];
    expect(model.info.fixedSize).toBe(true);
    await expect(generate(model, { ...base, width: 24, height: 40 })).rejects.toThrow('This model makes only 32×32 pictures, got `24×40`');
    expect((await generate(model, { ...base, width: 32, height: 32 })).width).toBe(32);
  });

  it('GIVEN an abort after step 2 THEN it stops between steps with a `cancelled` UserError', async () => {
    const controller = new AbortController();
    const steps: number[] = [];
    const error = await generate(models['sd-tiny'], { ...base, steps: 10 }, {
      signal: controller.signal,
      onProgress: (p) => {
        steps.push(p.step);
        if (p.step === 2) controller.abort();
      },
    }).catch((e: unknown) => e);
    expect(isUserError(error) && error.identifier).toBe('cancelled');
    expect(steps).toEqual([1, 2]);
  });

  it('GIVEN an abort during the last step THEN the job is still cancelled', async () => {
    const controller = new AbortController();
    const error = await generate(models['sd-tiny'], base, {
      signal: controller.signal,
      onProgress: (p) => {
        if (p.step === p.totalSteps) controller.abort();
      },
    }).catch((e: unknown) => e);
    expect(isUserError(error) && error.identifier).toBe('cancelled');
  });

  it('GIVEN an already aborted signal THEN nothing runs', async () => {
    const calls: number[] = [];
    await expect(
      generate(models['sd-tiny'], base, { signal: AbortSignal.abort(), onProgress: (p) => calls.push(p.step) }),
    ).rejects.toMatchObject({ identifier: 'cancelled' });
    expect(calls).toEqual([]);
  });

  it('GIVEN a prompt longer than the encoder THEN truncation is reported', async () => {
    const result = await generate(models['sd-tiny'], { ...base, prompt: Array.from({ length: 120 }, () => 'castle').join(' ') });
    expect(result.truncated).toBe(true);
  });

  it('GIVEN the LCM embedding THEN it matches diffusers get_guidance_scale_embedding at w = 0 and its sinusoid layout', () => {
    const zero = guidanceScaleEmbedding(0, 256);
    // w = 0: sin(0) = 0 for the first half, cos(0) = 1 for the second.
    expect(Array.from(zero.subarray(0, 128)).every((v) => v === 0)).toBe(true);
    expect(Array.from(zero.subarray(128)).every((v) => v === 1)).toBe(true);
    const emb = guidanceScaleEmbedding(7.5, 256);
    // k = 0: frequency 1, argument w × 1000 = 7500.
    expect(emb[0]).toBeCloseTo(Math.sin(7500), 5);
    expect(emb[128]).toBeCloseTo(Math.cos(7500), 5);
    // k = 127 (last): frequency 10000^-1, argument 0.75.
    expect(emb[127]).toBeCloseTo(Math.sin(0.75), 5);
  });
});

describe('checkInputs', () => {
  const info = { name: 'sd-tiny', width: 64, height: 64, latentFactor: 8, defaultScheduler: 'pndm' as const, maxTokens: 77 };
  const cases: [string, Partial<GenerateParams> & Record<string, unknown>, RegExp][] = [
    ['steps above the max', { steps: 1001 }, /Expected `steps` to be an integer from 1 to 1000, got `1001`/],
    ['fractional steps', { steps: 2.5 }, /`steps`.*got `2.5`/],
    ['zero steps', { steps: 0 }, /`steps`.*got `0`/],
    ['a negative seed', { seed: -1 }, /Expected `seed` to be an integer from 0 to 4294967295, got `-1`/],
    ['a seed past uint32', { seed: 2 ** 32 }, /`seed`/],
    ['NaN guidance', { guidanceScale: Number.NaN }, /Expected `guidanceScale` to be a number from 0 to 50, got `NaN`/],
    ['negative guidance', { guidanceScale: -1 }, /`guidanceScale`.*got `-1`/],
    ['a width not a multiple of 64', { width: 100 }, /Expected `width` to be a multiple of 64 from 64 to 2048, got `100`/],
    ['a huge height', { height: 4096 }, /`height`.*got `4096`/],
    ['count 9', { count: 9 }, /Expected `count` to be an integer from 1 to 8, got `9`/],
    ['an unknown scheduler', { scheduler: 'turbo' as never }, /Expected `scheduler` to be one of ddpm, ddim.*got `"turbo"`/],
    ['an empty prompt', { prompt: '   ' }, /Expected `prompt` to contain some text/],
    ['a prompt that is not text', { prompt: 42 as never }, /Expected `prompt` to be a string, got `42`/],
    ['a negative prompt that is not text', { negativePrompt: null as never }, /Expected `negativePrompt` to be a string, got `null`/],
  ];
  it.each(cases)('GIVEN %s THEN a UserError says what was expected', (_, patch, message) => {
    let error: unknown;
    try {
      checkInputs({ ...base, ...patch } as GenerateParams, info);
    } catch (e) {
      error = e;
    }
    expect(isUserError(error)).toBe(true);
    expect((error as Error).message).toMatch(message);
  });

  it('GIVEN omissions THEN native size, count 1, empty negative and the model scheduler are used; guidance 0 is kept', () => {
    const checked = checkInputs({ prompt: 'x', steps: 1, seed: 0, guidanceScale: 0 }, info);
    expect(checked).toEqual({ prompt: 'x', negativePrompt: '', steps: 1, seed: 0, guidanceScale: 0, scheduler: 'pndm', width: 64, height: 64, count: 1, noise: 'torch' });
  });

  it('GIVEN bad inputs to generate THEN it rejects before any UNet call', async () => {
    const calls: number[] = [];
    await expect(generate(models['sd-tiny'], { ...base, steps: 80.5 }, { onProgress: (p) => calls.push(p.step) })).rejects.toThrow(/`steps`/);
    await expect(generate(models['sd-tiny'], base, { previewEvery: -1 })).rejects.toThrow(/Expected `previewEvery`/);
    expect(calls).toEqual([]);
  });
});

describe('generateBatch', () => {
  async function maxPixelDiff(a: Uint8Array, b: Uint8Array): Promise<number> {
    const [x, y] = await Promise.all([decode(a), decode(b)]);
    let max = 0;
    for (let i = 0; i < x.data.length; i++) max = Math.max(max, Math.abs(x.data[i] - y.data[i]));
    return max;
  }

  it.each(['sd-tiny', 'lcm-tiny', 'sd-tiny-fp16', 'pixel-tiny'] as const)(
    'GIVEN jobs with their own prompt, seed, guidance and count on %s THEN each gets the pictures it gets alone',
    async (name) => {
      const model = models[name];
      const jobs: GenerateParams[] = [
        { ...base, prompt: 'a red circle', seed: 1, guidanceScale: 7.5, count: 2 },
        { ...base, prompt: 'a blue square', seed: 99, guidanceScale: 1 },
        { ...base, prompt: 'a green star', seed: 5, guidanceScale: 3, negativePrompt: 'blurry' },
      ];
      const progress = jobs.map(() => [] as number[]);
      const outcomes = await generateBatch(model, jobs.map((params, j) => ({ params, options: { onProgress: (p) => progress[j].push(p.step) } })));
      for (let j = 0; j < jobs.length; j++) {
        const outcome = outcomes[j];
        if (!outcome.ok) throw outcome.error;
        const alone = await generate(model, jobs[j]);
        expect(outcome.result.images).toHaveLength(jobs[j].count ?? 1);
        expect(outcome.result).toMatchObject({ seed: jobs[j].seed, guidanceScale: jobs[j].guidanceScale });
        for (let i = 0; i < alone.images.length; i++) expect(await maxPixelDiff(outcome.result.images[i], alone.images[i])).toBeLessThanOrEqual(1);
        expect(progress[j]).toEqual([1, 2, 3, 4]);
      }
    },
  );

  it('GIVEN one invalid job THEN it alone gets its error and the others run', async () => {
    const outcomes = await generateBatch(models['sd-tiny'], [{ params: { ...base, seed: -5 } }, { params: base }]);
    expect(outcomes[0].ok).toBe(false);
    expect(!outcomes[0].ok && outcomes[0].error.message).toMatch(/`seed`/);
    expect(outcomes[1].ok).toBe(true);
  });

  it('GIVEN one job cancelled midway THEN it gets `cancelled`, stops hearing progress, and the other finishes as alone', async () => {
    const model = models['sd-tiny'];
    const controller = new AbortController();
    const cancelledSteps: number[] = [];
    const outcomes = await generateBatch(model, [
      { params: { ...base, steps: 6 }, options: { signal: controller.signal, onProgress: (p) => { cancelledSteps.push(p.step); if (p.step === 2) controller.abort(); } } },
      { params: { ...base, steps: 6, seed: 8 } },
    ]);
    expect(outcomes[0].ok === false && isUserError(outcomes[0].error) && outcomes[0].error.identifier).toBe('cancelled');
    expect(cancelledSteps).toEqual([1, 2]);
    if (!outcomes[1].ok) throw outcomes[1].error;
    const alone = await generate(model, { ...base, steps: 6, seed: 8 });
    expect(await maxPixelDiff(outcomes[1].result.images[0], alone.images[0])).toBeLessThanOrEqual(1);
  });

  it('GIVEN jobs of different sizes THEN the batch is refused as a programming error, naming the keys', async () => {
    await expect(generateBatch(models['sd-tiny'], [{ params: base }, { params: { ...base, width: 128 } }])).rejects.toThrow(
      /share steps, scheduler and size, got \|4\|euler\|64x64, \|4\|euler\|128x64/,
    );
    expect(batchKey({ steps: 4, scheduler: 'euler', width: 64, height: 64 })).toBe('|4|euler|64x64');
  });
});
