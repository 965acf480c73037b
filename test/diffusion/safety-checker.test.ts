import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, ModelLoadError, type DiffusionModel } from '../../src/diffusion/model.js';
import { generate, generateBatch } from '../../src/diffusion/pipeline.js';
import { CLIP_MEAN, CLIP_STD, clipPreprocess, readClipPreprocessing, type ClipPreprocessing } from '../../src/diffusion/safety-checker.js';
import { checkedModelDir, GREEN_PROMPT, RED_PROMPT } from '../fixtures/checked-model.js';

const MODELS = join(import.meta.dirname, '..', 'fixtures', 'models');
const norm = (byte: number, c: number) => (byte / 255 - CLIP_MEAN[c]) / CLIP_STD[c];

/** RGB bytes of a width × height picture from a function of the pixel. */
function picture(width: number, height: number, rgbAt: (x: number, y: number) => [number, number, number]): Uint8Array {
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) out.set(rgbAt(x, y), (y * width + x) * 3);
  return out;
}

describe('readClipPreprocessing', () => {
  it('GIVEN the config SD 1.x repositories ship (CLIPFeatureExtractor keys) THEN transformers’ defaults fill the rest', () => {
    // CompVis/stable-diffusion-v1-4, feature_extractor/preprocessor_config.json.
    const config = readClipPreprocessing({
      crop_size: 224,
      do_center_crop: true,
      do_convert_rgb: true,
      do_normalize: true,
      do_resize: true,
      feature_extractor_type: 'CLIPFeatureExtractor',
      image_mean: [0.48145466, 0.4578275, 0.40821073],
      image_std: [0.26862954, 0.26130258, 0.27577711],
      resample: 3,
      size: 224,
    });
    expect(config).toEqual({
      resize: { shortestEdge: 224 },
      kernel: 'cubic',
      crop: { height: 224, width: 224 },
      rescaleFactor: 1 / 255,
      normalize: { mean: [...CLIP_MEAN], std: [...CLIP_STD] },
    });
  });

  it('GIVEN CLIPImageProcessor keys, or steps turned off THEN each is honoured', () => {
    expect(readClipPreprocessing({ size: { height: 30, width: 20 }, crop_size: { height: 8, width: 6 }, resample: 2 })).toMatchObject({
      resize: { height: 30, width: 20 },
      kernel: 'linear',
      crop: { height: 8, width: 6 },
    });
    expect(readClipPreprocessing({ do_resize: false, do_center_crop: false, do_rescale: false, do_normalize: false })).toEqual({ kernel: 'cubic', rescaleFactor: 1 });
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['a size of 0', { size: 0 }, /`size` to be a positive integer, got `0`/],
    ['an unknown size form', { size: { longest_edge: 3 } }, /`size` to be a number, \{"shortest_edge": n\}/],
    ['an unknown filter', { resample: 7 }, /`resample` to be a PIL filter/],
    ['a zero std', { image_std: [1, 0, 1] }, /`image_std` to have no zero/],
    ['two means', { image_mean: [0.5, 0.5] }, /`image_mean` to be three numbers/],
    ['a string flag', { do_resize: 'yes' }, /`do_resize` to be true or false, got `"yes"`/],
  ])('GIVEN %s THEN it is refused, naming the key', (_label, json, message) => {
    expect(() => readClipPreprocessing(json)).toThrow(message);
  });
});

describe('clipPreprocess', () => {
  const base: ClipPreprocessing = { kernel: 'cubic', rescaleFactor: 1 / 255, normalize: { mean: CLIP_MEAN, std: CLIP_STD } };

  it('GIVEN a picture already at the size THEN the centre crop takes transformers’ window, planar RGB, rescaled and normalised', async () => {
    // 6 × 4 with shortest edge 4: no resize; a 2 × 2 crop starts at top (4 − 2) // 2 = 1, left (6 − 2) // 2 = 2.
    const rgb = picture(6, 4, (x, y) => [x * 40, y * 60, 7]);
    const out = await clipPreprocess(rgb, 6, 4, { ...base, resize: { shortestEdge: 4 }, crop: { height: 2, width: 2 } });
    const expected: number[] = [];
    for (let c = 0; c < 3; c++) for (let y = 1; y < 3; y++) for (let x = 2; x < 4; x++) expected.push(norm([x * 40, y * 60, 7][c], c));
    expect(out).toHaveLength(12);
    [...out].forEach((value, i) => expect(value).toBeCloseTo(expected[i], 5));
  });

  it('GIVEN a portrait picture THEN its shortest side is resized (aspect kept) and the halves stay where they were', async () => {
    // 32 × 64, red above blue; shortest edge 24 → 24 × 48, no crop.
    const rgb = picture(32, 64, (_x, y) => (y < 32 ? [255, 0, 0] : [0, 0, 255]));
    const out = await clipPreprocess(rgb, 32, 64, { ...base, resize: { shortestEdge: 24 } });
    expect(out).toHaveLength(3 * 24 * 48);
    const at = (c: number, x: number, y: number) => out[c * 24 * 48 + y * 24 + x];
    expect(at(0, 5, 2)).toBeCloseTo(norm(255, 0), 4);
    expect(at(2, 5, 2)).toBeCloseTo(norm(0, 2), 4);
    expect(at(0, 5, 45)).toBeCloseTo(norm(0, 0), 4);
    expect(at(2, 5, 45)).toBeCloseTo(norm(255, 2), 4);
  });

  it('GIVEN a flat colour shrunk with the cubic filter THEN every value is that colour’s', async () => {
    const rgb = picture(48, 32, () => [200, 100, 50]);
    const out = await clipPreprocess(rgb, 48, 32, { ...base, resize: { shortestEdge: 24 }, crop: { height: 16, width: 16 } });
    expect(out).toHaveLength(3 * 16 * 16);
    for (let c = 0; c < 3; c++) {
      const value = norm([200, 100, 50][c], c);
      for (let p = 0; p < 256; p++) expect(Math.abs(out[c * 256 + p] - value)).toBeLessThan(1 / 255 / CLIP_STD[c] + 1e-6);
    }
  });

  it('GIVEN a picture smaller than the crop THEN it is padded with zeros around it, as transformers pads', async () => {
    const rgb = picture(2, 2, () => [255, 255, 255]);
    const out = await clipPreprocess(rgb, 2, 2, { ...base, crop: { height: 4, width: 4 } });
    const red = (x: number, y: number) => out[y * 4 + x];
    expect(red(1, 1)).toBeCloseTo(norm(255, 0), 5);
    expect(red(2, 2)).toBeCloseTo(norm(255, 0), 5);
    expect(red(0, 0)).toBeCloseTo(norm(0, 0), 5);
    expect(red(3, 3)).toBeCloseTo(norm(0, 0), 5);
  });
});

describe('the safety checker in the pipeline', () => {
  let checked: ReturnType<typeof checkedModelDir>;
  let model: DiffusionModel;
  beforeAll(async () => {
    checked = checkedModelDir();
    model = await loadModel(checked.dir, { log: () => {} });
  });
  afterAll(async () => {
    await model?.release();
    checked?.remove();
  });

  it('GIVEN a model with safety_checker/ THEN every picture is checked: the red one flagged, the green one not', async () => {
    expect(model.info.safetyChecker).toBe(true);
    const red = await generate(model, { prompt: RED_PROMPT, steps: 20, seed: 1, guidanceScale: 7.5, count: 2 });
    expect(red.flagged).toEqual([true, true]);
    expect(red.timings.safetyMs).toBeGreaterThan(0);
    const green = await generate(model, { prompt: GREEN_PROMPT, steps: 20, seed: 1, guidanceScale: 7.5 });
    expect(green.flagged).toEqual([false]);
  });

  it('GIVEN two jobs sharing a run THEN each gets its own flags', async () => {
    const outcomes = await generateBatch(model, [
      { params: { prompt: GREEN_PROMPT, steps: 20, seed: 2, guidanceScale: 7.5 } },
      { params: { prompt: RED_PROMPT, steps: 20, seed: 2, guidanceScale: 7.5 } },
    ]);
    expect(outcomes.map((o) => (o.ok ? o.result.flagged : o.error.message))).toEqual([[false], [true]]);
  });

  it('GIVEN a model without a checker THEN results carry no flags (unchecked), and a checker folder without its model is ignored', async () => {
    const plain = await loadModel(join(MODELS, 'sd-tiny'));
    try {
      expect(plain.info.safetyChecker).toBe(false);
      const result = await generate(plain, { prompt: 'x', steps: 2, seed: 1, guidanceScale: 1 });
      expect(result.flagged).toBeUndefined();
      expect(result.timings.safetyMs).toBeUndefined();
    } finally {
      await plain.release();
    }
    const lines: string[] = [];
    const lcm = await loadModel(join(MODELS, 'lcm-tiny'), { log: (line) => lines.push(line) });
    await lcm.release();
    expect(lcm.info.safetyChecker).toBe(false);
    expect(lines.join('\n')).toMatch(/safety_checker has no model\.onnx; pictures are not checked/);
  });

  it('GIVEN a checker without its preprocessing config, or one whose crop does not fit clip_input THEN the load is refused naming the file', async () => {
    const lonely = checkedModelDir('lonely', { parts: ['safety_checker'] });
    try {
      await expect(loadModel(lonely.dir, { log: () => {} })).rejects.toThrow(/feature_extractor\/preprocessor_config\.json: expected the safety checker's CLIP preprocessing config/);
      mkdirSync(join(lonely.dir, 'feature_extractor'));
      writeFileSync(join(lonely.dir, 'feature_extractor', 'preprocessor_config.json'), JSON.stringify({ size: 64, crop_size: 32 }));
      const error = await loadModel(lonely.dir, { log: () => {} }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ModelLoadError);
      expect((error as Error).message).toMatch(/preprocessor_config\.json: expected a crop of 16×16 for `clip_input` of .*safety_checker\/model\.onnx, got 32×32/);
    } finally {
      lonely.remove();
    }
  });
});
