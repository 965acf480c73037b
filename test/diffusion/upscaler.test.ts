/**
 * A model's own upscaler/ (src/diffusion/upscaler.ts): loaded with the model, run by the pipeline for
 * `upscale` jobs, refused clearly otherwise. The fixture network (test/fixtures/build-upscaler.py) is a
 * nearest-neighbour 2×, so its output is known exactly.
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isUserError } from '../../src/errors.js';
import { loadModel, type DiffusionModel } from '../../src/diffusion/model.js';
import { checkInputs, generate } from '../../src/diffusion/pipeline.js';
import type { GenerateParams } from '../../src/diffusion/types.js';
import { readPngText } from '../../src/image/png-text.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures');
const dir = mkdtempSync(join(tmpdir(), 'imagine-upscaler-unit-'));
const withUpscaler = join(dir, 'pixel-tiny');
let model: DiffusionModel;
let plain: DiffusionModel;

beforeAll(async () => {
  cpSync(join(FIXTURES, 'models', 'pixel-tiny'), withUpscaler, { recursive: true });
  cpSync(join(FIXTURES, 'parts', 'upscaler-2x'), join(withUpscaler, 'upscaler'), { recursive: true });
  model = await loadModel(withUpscaler, { log: () => {} });
  plain = await loadModel(join(FIXTURES, 'models', 'pixel-tiny'), { log: () => {} });
});
afterAll(async () => {
  await model?.release();
  await plain?.release();
  rmSync(dir, { recursive: true, force: true });
});

/** A 32×32 picture of random colours (every pixel its own, so a misplaced one shows). */
async function noisePicture(): Promise<{ png: Uint8Array; rgb: Buffer }> {
  const rgb = Buffer.alloc(32 * 32 * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 2654435761) >>> 24;
  const png = new Uint8Array(await sharp(rgb, { raw: { width: 32, height: 32, channels: 3 } }).png().toBuffer());
  return { png, rgb };
}

const base: GenerateParams = { prompt: 'a red circle', steps: 4, seed: 9, guidanceScale: 5 };

async function refusal(run: () => unknown): Promise<string> {
  try {
    await run();
  } catch (error) {
    expect(isUserError(error)).toBe(true);
    return (error as Error).message;
  }
  throw new Error('expected a refusal');
}

describe('a model’s upscaler/', () => {
  it('GIVEN upscaler/ with config { scale: 2 } THEN the model says so; a model without one does not', () => {
    expect(model.info.upscaler).toEqual({ scale: 2 });
    expect(plain.info.upscaler).toBeUndefined();
  });

  it('GIVEN an upscale job THEN the picture comes back through the network, pixel for pixel, at twice the size, with its parameters', async () => {
    const { png, rgb } = await noisePicture();
    const steps: number[] = [];
    const result = await generate(model, { ...base, upscale: true, initImage: png, width: 64, height: 64 }, { onProgress: (p) => steps.push(p.step) });
    expect([result.width, result.height, result.images.length]).toEqual([64, 64, 1]);
    const { data } = await sharp(result.images[0]).raw().toBuffer({ resolveWithObject: true });
    const expected = await sharp(rgb, { raw: { width: 32, height: 32, channels: 3 } }).resize(64, 64, { kernel: 'nearest' }).raw().toBuffer();
    expect(Buffer.from(data).equals(expected)).toBe(true);
    expect(readPngText(result.images[0]).get('parameters')).toMatch(/Seed: 9, Size: 64x64, Model: pixel-tiny, Postprocess upscale by: 2$/);
    expect(steps).toEqual([1]);
  });

  it.each([
    ['a model without upscaler/', 'plain', { width: 64, height: 64 }, /Expected a model with an upscaler\/ folder for `upscale`, got pixel-tiny without one/],
    ['a strength', 'model', { width: 64, height: 64, strength: 0.5 }, /Expected no `strength` with `upscale`/],
    ['two pictures', 'model', { width: 64, height: 64, count: 2 }, /Expected `count` 1 with `upscale`/],
    ['no picture', 'model', { width: 64, height: 64, initImage: undefined }, /Expected `initImage` \(the picture to enlarge\) with `upscale`/],
  ] as const)('GIVEN upscale with %s THEN one clear line', async (_label, which, extra, message) => {
    const { png } = await noisePicture();
    const target = which === 'plain' ? plain : model;
    const params = { ...base, upscale: true, initImage: png, ...extra } as GenerateParams;
    expect(await refusal(() => checkInputs(params, target.info))).toMatch(message);
  });

  it('GIVEN upscaler/config.json with a scale of 3 THEN the model refuses to load, naming the file', async () => {
    const bad = join(dir, 'bad');
    cpSync(withUpscaler, bad, { recursive: true });
    writeFileSync(join(bad, 'upscaler', 'config.json'), '{ "scale": 3 }');
    await expect(loadModel(bad, { log: () => {} })).rejects.toThrow(/upscaler\/config\.json: expected `scale` to be 2 or 4, got `3`/);
  });
});
