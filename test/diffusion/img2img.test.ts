import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isUserError } from '../../src/errors.js';
import { loadModel, type DiffusionModel } from '../../src/diffusion/model.js';
import { batchKey, checkInputs, generate, generateBatch } from '../../src/diffusion/pipeline.js';
import type { GenerateParams, StepProgress } from '../../src/diffusion/types.js';
import { initImagePixels } from '../../src/image/init-image.js';
import { readPngText } from '../../src/image/png-text.js';

const MODELS = join(import.meta.dirname, '..', 'fixtures', 'models');
const NAMES = ['sd-tiny', 'sd-tiny-fp16', 'pixel-tiny'] as const;
const models = {} as Record<(typeof NAMES)[number], DiffusionModel>;

beforeAll(async () => {
  for (const name of NAMES) models[name] = await loadModel(join(MODELS, name), { log: () => {} });
});
afterAll(async () => {
  for (const name of NAMES) await models[name]?.release();
});

async function solid(r: number, g: number, b: number, width = 80, height = 50): Promise<Uint8Array> {
  return new Uint8Array(await sharp({ create: { width, height, channels: 3, background: { r, g, b } } }).png().toBuffer());
}

async function decode(png: Uint8Array) {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

const base: GenerateParams = { prompt: 'a fox in the snow', steps: 10, seed: 7, guidanceScale: 5, scheduler: 'euler' };

async function userError(run: () => unknown): Promise<Error> {
  let error: unknown;
  try {
    await run();
  } catch (e) {
    error = e;
  }
  expect(isUserError(error)).toBe(true);
  return error as Error;
}

describe('img2img checkInputs', () => {
  const info = { name: 'sd-tiny', width: 64, height: 64, latentFactor: 8, defaultScheduler: 'pndm' as const, maxTokens: 77 };
  const picture = new Uint8Array([1, 2, 3]);
  const cases: [string, Partial<GenerateParams>, RegExp][] = [
    ['strength 0', { initImage: picture, strength: 0 }, /^Expected `strength` to be a number greater than 0 and at most 1, got `0`$/],
    ['strength above 1', { initImage: picture, strength: 1.5 }, /`strength`.*got `1.5`/],
    ['NaN strength', { initImage: picture, strength: Number.NaN }, /`strength`.*got `NaN`/],
    ['a strength that is not a number', { initImage: picture, strength: '0.5' as never }, /`strength`.*got `"0.5"`/],
    ['strength without a picture', { strength: 0.5 }, /Expected `strength` only with `initImage`/],
    ['an empty picture', { initImage: new Uint8Array(0) }, /Expected `initImage` to be the bytes of a PNG, JPEG or WebP picture, got `no bytes`/],
    ['a picture that is not bytes', { initImage: 'cat.png' as never }, /`initImage`.*got `"cat.png"`/],
    ['steps × strength below 1', { initImage: picture, steps: 3, strength: 0.3 }, /Expected `steps` × `strength` to be at least 1.*got 3 × 0.3/],
    ['the lcm scheduler', { initImage: picture, scheduler: 'lcm' }, /scheduler other than `lcm` for img2img/],
  ];
  it.each(cases)('GIVEN %s THEN a UserError says what was expected', async (_, patch, message) => {
    const error = await userError(() => checkInputs({ ...base, ...patch } as GenerateParams, info));
    expect(error.message).toMatch(message);
  });

  it('GIVEN a picture without strength THEN diffusers’ 0.8 applies; txt2img has neither key', () => {
    expect(checkInputs({ ...base, initImage: picture }, info).strength).toBe(0.8);
    expect(Object.keys(checkInputs(base, info))).not.toContain('strength');
  });

  it('GIVEN img2img jobs THEN only those of the same strength share a batch key; txt2img keys are unchanged', () => {
    const txt = checkInputs(base, info);
    const half = checkInputs({ ...base, initImage: picture, strength: 0.5 }, info);
    const most = checkInputs({ ...base, initImage: picture, strength: 0.75 }, info);
    expect(batchKey(txt)).toBe('|10|euler|64x64'); // the default model's key, as before img2img
    expect(batchKey(half)).not.toBe(batchKey(txt));
    expect(batchKey(half)).not.toBe(batchKey(most));
    expect(batchKey(half)).toBe(batchKey(checkInputs({ ...base, seed: 9, initImage: new Uint8Array([9]), strength: 0.5 }, info)));
  });
});

describe('initImagePixels', () => {
  it('GIVEN a picture of another shape THEN it covers the size and is cropped at the centre, in [-1, 1]', async () => {
    // 40×20: green quarter, red half, green quarter; 20×20 cover is the red middle.
    const green = { r: 0, g: 255, b: 0 };
    const png = await sharp({ create: { width: 40, height: 20, channels: 3, background: green } })
      .composite([{ input: { create: { width: 20, height: 20, channels: 3, background: { r: 255, g: 0, b: 0 } } }, left: 10, top: 0 }])
      .png()
      .toBuffer();
    const pixels = await initImagePixels(new Uint8Array(png), 20, 20);
    expect(pixels).toHaveLength(3 * 20 * 20);
    const plane = 400;
    for (const p of [0, 19, 210, 399]) {
      expect([pixels[p], pixels[plane + p], pixels[2 * plane + p]]).toEqual([1, -1, -1]);
    }
  });

  it('GIVEN a JPEG with EXIF orientation 6 THEN it is turned upright first', async () => {
    // Stored: left red, right blue; orientation 6 shows it turned 90° clockwise: red on top, blue below.
    const jpeg = await sharp({ create: { width: 40, height: 20, channels: 3, background: { r: 0, g: 0, b: 255 } } })
      .composite([{ input: { create: { width: 20, height: 20, channels: 3, background: { r: 255, g: 0, b: 0 } } }, left: 0, top: 0 }])
      .jpeg({ quality: 100 })
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const pixels = await initImagePixels(new Uint8Array(jpeg), 20, 40);
    const plane = 800;
    const top = 5 * 20 + 10;
    const bottom = 35 * 20 + 10;
    expect(pixels[top]).toBeGreaterThan(0.9); // red
    expect(pixels[2 * plane + top]).toBeLessThan(-0.9);
    expect(pixels[bottom]).toBeLessThan(-0.9);
    expect(pixels[2 * plane + bottom]).toBeGreaterThan(0.9); // blue
  });

  it.each([
    ['garbage bytes', async () => new Uint8Array(Buffer.from('not a picture at all')), /got bytes that are not a picture$/],
    ['a GIF', async () => new Uint8Array(await sharp({ create: { width: 8, height: 8, channels: 3, background: 'red' } }).gif().toBuffer()), /got a gif file$/],
    ['a truncated PNG', async () => (await solid(1, 2, 3)).subarray(0, 60), /PNG, JPEG or WebP picture, got/],
  ])('GIVEN %s THEN one clear UserError line', async (_, bytes, message) => {
    const input = await bytes();
    const error = await userError(() => initImagePixels(input, 16, 16));
    expect(error.message).toMatch(/^Expected `initImage` to be a PNG, JPEG or WebP picture, got /);
    expect(error.message).toMatch(message);
    expect(error.message).not.toContain('\n');
  });
});

describe.each(['sd-tiny', 'pixel-tiny'] as const)('img2img on %s', (name) => {
  it('GIVEN a picture and strength 0.5 THEN a PNG of the requested size, floor(steps × strength) steps, the strength in its text', async () => {
    const model = models[name];
    const progress: StepProgress[] = [];
    const result = await generate(model, { ...base, initImage: await solid(255, 0, 0), strength: 0.5 }, { onProgress: (p) => progress.push(p) });
    const image = await decode(result.images[0]);
    expect([image.width, image.height]).toEqual([model.info.width, model.info.height]);
    expect(progress.map((p) => p.step)).toEqual([1, 2, 3, 4, 5]);
    expect(progress.every((p) => p.totalSteps === 5)).toBe(true);
    expect(result.strength).toBe(0.5);
    expect(result.steps).toBe(10);
    expect(readPngText(result.images[0]).get('parameters')).toMatch(/Steps: 10, .*Denoising strength: 0\.5, RNG: CPU$/);
  });

  it('GIVEN the same picture and seed twice THEN identical bytes; another picture, seed or strength gives another image; txt2img differs', async () => {
    const model = models[name];
    const red = await solid(255, 0, 0);
    const run = async (patch: Partial<GenerateParams>) => Buffer.from((await generate(model, { ...base, initImage: red, strength: 0.5, ...patch })).images[0]);
    const first = await run({});
    expect((await run({})).equals(first)).toBe(true);
    expect((await run({ initImage: await solid(0, 0, 255) })).equals(first)).toBe(false);
    expect((await run({ seed: 8 })).equals(first)).toBe(false);
    expect((await run({ strength: 0.8 })).equals(first)).toBe(false);
    expect(Buffer.from((await generate(model, base)).images[0]).equals(first)).toBe(false);
  });

  it('GIVEN count 2 THEN image i is what a single job with seed + i makes', async () => {
    const model = models[name];
    const red = await solid(255, 0, 0);
    const both = await generate(model, { ...base, initImage: red, strength: 0.6, count: 2 });
    const second = await generate(model, { ...base, initImage: red, strength: 0.6, seed: base.seed + 1 });
    const pixels = async (png: Uint8Array) => (await decode(png)).data;
    expect(Buffer.compare(await pixels(both.images[1]), await pixels(second.images[0]))).toBe(0);
  });
});

describe('img2img refusals', () => {
  it('GIVEN a latent model without vae_encoder/ THEN one clear line naming the folder, before any step', async () => {
    const progress: number[] = [];
    const run = () => generate(models['sd-tiny-fp16'], { ...base, initImage: new Uint8Array([1]) }, { onProgress: (p) => progress.push(p.step) });
    const error = await userError(run);
    expect(error.message).toBe('This model cannot start from a picture: sd-tiny-fp16 has no vae_encoder/ folder (img2img needs vae_encoder/model.onnx)');
    expect(progress).toEqual([]);
  });

  it('GIVEN a batch where one picture is garbage THEN that job fails alone and the other gets its picture', async () => {
    const params = { ...base, strength: 0.5 };
    const [bad, good] = await generateBatch(models['sd-tiny'], [
      { params: { ...params, initImage: new Uint8Array([1, 2, 3]) } },
      { params: { ...params, initImage: await solid(0, 255, 0) } },
    ]);
    expect(bad.ok).toBe(false);
    expect(!bad.ok && bad.error.message).toMatch(/^Expected `initImage` to be a PNG, JPEG or WebP picture/);
    expect(good.ok).toBe(true);
  });

  it('GIVEN sd-tiny THEN its vae_encoder is loaded with its tensor specs; the embedded-style pixel model has none', () => {
    expect(models['sd-tiny'].vaeEncoder).toMatchObject({ sample: { name: 'sample', type: 'float32' }, latent: { name: 'latent_sample' }, latentKind: 'sample' });
    expect(models['pixel-tiny'].vaeEncoder).toBeUndefined();
  });

  it('GIVEN an Optimum-style encoder (`latent_parameters`: mean then log-variance) THEN its mean is the latent: the same pictures', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'imagine-vae-parameters-'));
    const copy = join(dir, 'sd-tiny');
    cpSync(join(MODELS, 'sd-tiny'), copy, { recursive: true });
    cpSync(join(MODELS, 'vae-encoder-parameters', 'vae_encoder', 'model.onnx'), join(copy, 'vae_encoder', 'model.onnx'));
    const model = await loadModel(copy, { log: () => {} });
    try {
      expect(model.vaeEncoder).toMatchObject({ latent: { name: 'latent_parameters', shape: ['batch', 8, 'latent_height', 'latent_width'] }, latentKind: 'parameters' });
      const params = { ...base, initImage: await solid(10, 200, 90), strength: 0.7 };
      const [ours, reference] = await Promise.all([generate(model, params), generate(models['sd-tiny'], params)]);
      expect(Buffer.from(ours.images[0]).equals(Buffer.from(reference.images[0]))).toBe(true);
    } finally {
      await model.release();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
