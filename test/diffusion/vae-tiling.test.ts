/**
 * The VAE in tiles (issue 13, src/diffusion/vae-tiling.ts) on real ONNX models: sd-tiny's decoder (3×3
 * convolutions, a receptive field of about two latent cells) and encoder (an 8×8 pool, so one latent cell per
 * block), and vae-local's decoder (test/fixtures/build-vae-local.py: every pixel from one latent cell). sd-tiny's
 * native size is 64×64 (8×8 latent cells), so anything of more area runs in tiles of 8×8 cells.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type DiffusionModel } from '../../src/diffusion/model.js';
import { noiseSource } from '../../src/diffusion/noise.js';
import { decodeLatents, encodeImages, imageShape, RunClock } from '../../src/diffusion/pipeline-steps.js';
import { generate } from '../../src/diffusion/pipeline.js';
import type { GenerateParams } from '../../src/diffusion/types.js';
import { blendWeights, tileStarts, TILE_OVERLAP_FACTOR, vaeTilePlan } from '../../src/diffusion/vae-tiling.js';
import { pictureActionParams } from '../../src/moderation/request-rules.js';

const MODELS = join(import.meta.dirname, '..', 'fixtures', 'models');
let sdTiny: DiffusionModel;
let local: DiffusionModel;
let scratch: string;

beforeAll(async () => {
  sdTiny = await loadModel(join(MODELS, 'sd-tiny'), { log: () => {} });
  // sd-tiny with vae-local's decoder in place of its own.
  scratch = mkdtempSync(join(tmpdir(), 'imagine-vae-tiling-'));
  const copy = join(scratch, 'sd-tiny');
  cpSync(join(MODELS, 'sd-tiny'), copy, { recursive: true });
  cpSync(join(MODELS, 'vae-local', 'vae_decoder', 'model.onnx'), join(copy, 'vae_decoder', 'model.onnx'));
  local = await loadModel(copy, { log: () => {} });
});
afterAll(async () => {
  await sdTiny?.release();
  await local?.release();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** Records the dims of `input` at every run of `session` (the pipeline's own calls, through the real runtime). */
function recordRuns(session: ort.InferenceSession, input: string): { dims: number[][]; restore(): void } {
  const dims: number[][] = [];
  const run = session.run;
  (session as { run: unknown }).run = (feeds: Record<string, ort.Tensor>, ...rest: unknown[]) => {
    dims.push([...feeds[input].dims]);
    return (run as (...args: unknown[]) => unknown).call(session, feeds, ...rest);
  };
  return { dims, restore: () => void ((session as { run: unknown }).run = run) };
}

/** Latents as the pipeline has them before step 8 (× scaling factor), standard normal once divided back. */
function latentsFor(model: DiffusionModel, images: number, width: number, height: number, seed = 5): Float32Array {
  const latents = new Float32Array(images * imageShape(model, width, height).perImage);
  noiseSource('xoshiro', seed).fillNormal(latents);
  for (let i = 0; i < latents.length; i++) latents[i] *= model.scalingFactor;
  return latents;
}

/** The decoder's own output for the whole latent, one session.run, as decodeLatents did before tiling. */
async function wholeDecode(model: DiffusionModel, latents: Float32Array, images: number, width: number, height: number): Promise<Float32Array> {
  const { latentH, latentW } = imageShape(model, width, height);
  const scaled = latents.map((v) => v / model.scalingFactor);
  const vae = model.vaeDecoder!;
  const out = await vae.session.run({ [vae.latentSample.name]: new ort.Tensor('float32', scaled, [images, model.channels, latentH, latentW]) });
  return Float32Array.from(out[vae.sample.name].data as Float32Array);
}

/** Largest value minus smallest (a loop: Math.max(...a) overflows the stack at these sizes). */
function rangeOf(a: Float32Array): number {
  let [lo, hi] = [Infinity, -Infinity];
  for (const v of a) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  return hi - lo;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

describe('tileStarts and blendWeights', () => {
  it('GIVEN a side no longer than the tile THEN one tile', () => {
    expect(tileStarts(8, 8)).toEqual([0]);
    expect(tileStarts(5, 8)).toEqual([0]);
  });

  it('GIVEN longer sides THEN full tiles from 0 to the far edge, each overlapping the next by at least a quarter tile', () => {
    for (const tile of [8, 16, 64, 128]) {
      const overlap = Math.floor(tile * TILE_OVERLAP_FACTOR); // diffusers' tile_overlap_factor 0.25
      for (let length = tile + 1; length <= 5 * tile; length++) {
        const starts = tileStarts(length, tile);
        expect(starts[0]).toBe(0);
        expect(starts.at(-1)).toBe(length - tile);
        for (let i = 1; i < starts.length; i++) {
          expect(starts[i]).toBeGreaterThan(starts[i - 1]);
          // Rounding the even spread may take one cell off the overlap.
          expect(starts[i - 1] + tile - starts[i]).toBeGreaterThanOrEqual(overlap - 1);
        }
        // The fewest such tiles: one fewer at diffusers' stride (tile − overlap) would not reach the far edge.
        expect((starts.length - 2) * (tile - overlap) + tile).toBeLessThan(length);
      }
    }
    // SD 1.x at 1024² and 2048² (64-cell tiles): 3 and 5 tiles a side, as diffusers' stride of 48 cells also makes.
    expect(tileStarts(128, 64)).toEqual([0, 32, 64]);
    expect(tileStarts(256, 64)).toEqual([0, 48, 96, 144, 192]);
  });

  it('GIVEN any tiling THEN the blend weights are in [0, 1] and add up to 1 at every unit', () => {
    for (const [length, tile, scale] of [[16, 8, 8], [24, 8, 8], [9, 8, 1], [128, 64, 8], [100, 64, 1]]) {
      const starts = tileStarts(length, tile);
      const weights = blendWeights(starts, tile, scale);
      const total = new Float64Array(length * scale);
      weights.forEach((w, i) => w.forEach((v, k) => {
        expect(v).toBeGreaterThanOrEqual(0);
        expect(v).toBeLessThanOrEqual(1);
        total[starts[i] * scale + k] += v;
      }));
      for (const t of total) expect(t).toBeCloseTo(1, 6);
    }
  });
});

describe('the rule: whole at or below the native area, native-sized tiles above it', () => {
  it('GIVEN the native size (64×64) THEN one run of the whole latent, byte-identical to the decoder\'s own output', async () => {
    const latents = latentsFor(sdTiny, 1, 64, 64);
    const runs = recordRuns(sdTiny.vaeDecoder!.session, 'latent_sample');
    let pixels: Float32Array;
    try {
      pixels = await decodeLatents(sdTiny, latents, 1, imageShape(sdTiny, 64, 64), new RunClock());
    } finally {
      runs.restore();
    }
    expect(runs.dims).toEqual([[1, 4, 8, 8]]);
    expect(Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength).equals(Buffer.from((await wholeDecode(sdTiny, latents, 1, 64, 64)).buffer))).toBe(true);
  });

  it('GIVEN a picture of the native area but another shape (128×32) THEN still one run: the bound is on area, as memory is', async () => {
    const runs = recordRuns(sdTiny.vaeDecoder!.session, 'latent_sample');
    try {
      await decodeLatents(sdTiny, latentsFor(sdTiny, 1, 128, 32), 1, imageShape(sdTiny, 128, 32), new RunClock());
    } finally {
      runs.restore();
    }
    expect(runs.dims).toEqual([[1, 4, 4, 16]]);
  });

  it.each([
    [128, 64, 3, [1, 4, 8, 8]],
    [128, 128, 9, [1, 4, 8, 8]],
    [192, 128, 12, [1, 4, 8, 8]],
    // 256 × 32: 32 × 4 cells, more than 64; tiles are 8 wide and the picture's own 4 high.
    [256, 32, 5, [1, 4, 4, 8]],
  ])('GIVEN %i×%i (more than the native area) THEN the decoder runs %i times, only on tiles of %j', async (width, height, count, dims) => {
    const runs = recordRuns(sdTiny.vaeDecoder!.session, 'latent_sample');
    let pixels: Float32Array;
    try {
      pixels = await decodeLatents(sdTiny, latentsFor(sdTiny, 1, width, height), 1, imageShape(sdTiny, width, height), new RunClock());
    } finally {
      runs.restore();
    }
    expect(runs.dims).toEqual(Array.from({ length: count }, () => dims));
    expect(pixels.length).toBe(3 * width * height);
  });

  it('GIVEN two images above the bound THEN each tile runs once for both, and each image is what it would be alone', async () => {
    const both = latentsFor(sdTiny, 2, 128, 128);
    const shape = imageShape(sdTiny, 128, 128);
    const runs = recordRuns(sdTiny.vaeDecoder!.session, 'latent_sample');
    let pixels: Float32Array;
    try {
      pixels = await decodeLatents(sdTiny, both, 2, shape, new RunClock());
    } finally {
      runs.restore();
    }
    expect(runs.dims).toEqual(Array.from({ length: 9 }, () => [2, 4, 8, 8]));
    const second = await decodeLatents(sdTiny, both.slice(shape.perImage), 1, shape, new RunClock());
    expect(maxAbsDiff(pixels.subarray(3 * 128 * 128), second)).toBeLessThanOrEqual(1e-5);
  });

  it('GIVEN a decoder exported at a fixed height and width THEN it is never tiled', () => {
    const fixed = { ...sdTiny.vaeDecoder!.latentSample, shape: [1, 4, 8, 8] };
    expect(vaeTilePlan(sdTiny, fixed, 16, 16)).toBeUndefined();
    expect(vaeTilePlan(sdTiny, { ...fixed, shape: ['batch', 4, 8, 'width'] }, 16, 16)).toBeUndefined();
    expect(vaeTilePlan(sdTiny, sdTiny.vaeDecoder!.latentSample, 16, 16)).toEqual({ tileH: 8, tileW: 8, rows: [0, 4, 8], cols: [0, 4, 8] });
  });

  it('GIVEN the encoder above the bound THEN it runs on 64×64 tiles of the picture only', async () => {
    const pixels = new Float32Array(3 * 128 * 192);
    noiseSource('xoshiro', 9).fillNormal(pixels);
    const runs = recordRuns(sdTiny.vaeEncoder!.session, 'sample');
    try {
      await encodeImages(sdTiny, pixels, 1, imageShape(sdTiny, 192, 128), new RunClock());
    } finally {
      runs.restore();
    }
    expect(runs.dims).toEqual(Array.from({ length: 12 }, () => [1, 3, 64, 64]));
  });
});

describe('tiled against whole', () => {
  it.each([
    [128, 128],
    [192, 128],
    [256, 256],
  ])('GIVEN a decoder with a one-cell receptive field (vae-local) at %i×%i THEN the tiled decode is the whole decode within 1e-5', async (width, height) => {
    const latents = latentsFor(local, 1, width, height);
    const runs = recordRuns(local.vaeDecoder!.session, 'latent_sample');
    let tiled: Float32Array;
    try {
      tiled = await decodeLatents(local, latents, 1, imageShape(local, width, height), new RunClock());
    } finally {
      runs.restore();
    }
    expect(runs.dims.every((d) => d[2] === 8 && d[3] === 8)).toBe(true);
    const whole = await wholeDecode(local, latents, 1, width, height);
    // The picture is not flat, so equality says something.
    expect(rangeOf(whole)).toBeGreaterThan(0.5);
    expect(maxAbsDiff(tiled, whole)).toBeLessThanOrEqual(1e-5);
  });

  it('GIVEN an encoder with a one-cell receptive field (sd-tiny\'s 8×8 pool) THEN the tiled encode is the whole encode within 1e-5', async () => {
    const [width, height] = [192, 128];
    const pixels = new Float32Array(3 * width * height);
    noiseSource('xoshiro', 11).fillNormal(pixels);
    for (let i = 0; i < pixels.length; i++) pixels[i] = Math.tanh(pixels[i]);
    const runs = recordRuns(sdTiny.vaeEncoder!.session, 'sample');
    let tiled: Float32Array;
    try {
      tiled = await encodeImages(sdTiny, pixels, 1, imageShape(sdTiny, width, height), new RunClock());
    } finally {
      runs.restore();
    }
    expect(runs.dims.every((d) => d[2] === 64 && d[3] === 64)).toBe(true);
    const vae = sdTiny.vaeEncoder!;
    const out = await vae.session.run({ [vae.sample.name]: new ort.Tensor('float32', pixels, [1, 3, height, width]) });
    const whole = (out[vae.latent.name].data as Float32Array).map((v) => v * sdTiny.scalingFactor);
    expect(maxAbsDiff(tiled, whole)).toBeLessThanOrEqual(1e-5);
  });

  /**
   * sd-tiny's decoder pads each tile's edge with zeros where the whole decode has neighbours, so pixels within its
   * receptive field (about two latent cells, 16 pixels) of a tile's inner edge differ; elsewhere the tiles see what
   * the whole decode sees.
   */
  describe.each([
    [128, 128],
    [256, 256],
  ])('GIVEN sd-tiny\'s 3×3-convolution decoder at %i×%i', (width, height) => {
    let tiled: Float32Array;
    let whole: Float32Array;
    let range: number;
    const f = 8;
    const plan = () => vaeTilePlan(sdTiny, sdTiny.vaeDecoder!.latentSample, height / f, width / f)!;
    /** Whether pixel (x, y) lies where two tiles overlap along either axis. */
    const inOverlap = (x: number, y: number) => {
      const within = (p: number, starts: number[], tile: number) => starts.filter((s) => p >= s * f && p < (s + tile) * f).length > 1;
      return within(x, plan().cols, plan().tileW) || within(y, plan().rows, plan().tileH);
    };

    beforeAll(async () => {
      const latents = latentsFor(sdTiny, 1, width, height, 21);
      tiled = await decodeLatents(sdTiny, latents, 1, imageShape(sdTiny, width, height), new RunClock());
      whole = await wholeDecode(sdTiny, latents, 1, width, height);
      range = rangeOf(whole);
    });

    it('THEN outside the overlaps it is the whole decode (1e-5), and inside them within 0.01 (1.3 levels of 255) and 15 % of the picture\'s range', () => {
      let outside = 0;
      let inside = 0;
      for (let c = 0; c < 3; c++) {
        for (let y = 0; y < height; y++) {
          for (let x = 0; x < width; x++) {
            const i = (c * height + y) * width + x;
            const d = Math.abs(tiled[i] - whole[i]);
            if (inOverlap(x, y)) inside = Math.max(inside, d);
            else outside = Math.max(outside, d);
          }
        }
      }
      expect(outside).toBeLessThanOrEqual(1e-5);
      expect(inside).toBeGreaterThan(0); // the test can see a difference where there is one
      expect(inside).toBeLessThanOrEqual(0.01);
      expect(inside / range).toBeLessThanOrEqual(0.15);
    });

    /**
     * A seam is a step between two neighbouring columns (or rows) that the whole decode does not have. For each
     * boundary between columns x and x + 1: the mean |step| of the tiled picture over that boundary, against the
     * whole decode's. The same tiles pasted one over another without blending (each tile's edge, where its zero
     * padding shows most, lying on the one before) show such a step, which the measure must catch.
     */
    it('THEN no column or row boundary steps more than 1.25× the whole decode\'s (the tiles pasted unblended do)', async () => {
      const steps = (img: Float32Array, boundary: number, vertical: boolean) => {
        let sum = 0;
        const across = vertical ? height : width;
        for (let c = 0; c < 3; c++) {
          for (let k = 0; k < across; k++) {
            const at = (p: number) => (vertical ? (c * height + k) * width + p : (c * height + p) * width + k);
            sum += Math.abs(img[at(boundary + 1)] - img[at(boundary)]);
          }
        }
        return sum / (3 * across);
      };
      const worst = (img: Float32Array) => {
        let ratio = 0;
        for (let x = 0; x < width - 1; x++) ratio = Math.max(ratio, steps(img, x, true) / steps(whole, x, true));
        for (let y = 0; y < height - 1; y++) ratio = Math.max(ratio, steps(img, y, false) / steps(whole, y, false));
        return ratio;
      };
      expect(worst(tiled)).toBeLessThanOrEqual(1.25);
      expect(worst(await pasted())).toBeGreaterThan(1.25);
    });

    /** The plan's tiles decoded one by one through the session and pasted in order, each over the ones before. */
    async function pasted(): Promise<Float32Array> {
      const { tileH, tileW, rows, cols } = plan();
      const latents = latentsFor(sdTiny, 1, width, height, 21).map((v) => v / sdTiny.scalingFactor);
      const out = new Float32Array(3 * width * height);
      for (const row of rows) {
        for (const col of cols) {
          const tile = new Float32Array(4 * tileH * tileW);
          for (let ch = 0; ch < 4; ch++) {
            for (let y = 0; y < tileH; y++) {
              const from = (ch * (height / f) + row + y) * (width / f) + col;
              tile.set(latents.subarray(from, from + tileW), (ch * tileH + y) * tileW);
            }
          }
          const decoded = (await sdTiny.vaeDecoder!.session.run({ latent_sample: new ort.Tensor('float32', tile, [1, 4, tileH, tileW]) })).sample.data as Float32Array;
          for (let ch = 0; ch < 3; ch++) {
            for (let y = 0; y < tileH * f; y++) {
              const from = (ch * tileH * f + y) * tileW * f;
              out.set(decoded.subarray(from, from + tileW * f), (ch * height + row * f + y) * width + col * f);
            }
          }
        }
      }
      return out;
    }
  });
});

describe('a U (hires fix) through the pipeline at a size that tiles', () => {
  it('GIVEN U1 on a 64×64 sd-tiny picture THEN 128×128 is encoded and decoded in 64×64 tiles and the PNG is 128×128', async () => {
    const original: GenerateParams = { prompt: 'a red circle on a white background', steps: 10, seed: 9, guidanceScale: 7.5, scheduler: 'euler', width: 64, height: 64 };
    const [picture] = (await generate(sdTiny, original)).images;
    const { params } = pictureActionParams('upscale', { params: original }, 0, { params: original }, { variationStrength: 0.6 }, { width: 64, height: 64 });
    expect(params).toMatchObject({ width: 128, height: 128, strength: 0.35, seed: 9 });
    const encoder = recordRuns(sdTiny.vaeEncoder!.session, 'sample');
    const decoder = recordRuns(sdTiny.vaeDecoder!.session, 'latent_sample');
    let png: Uint8Array;
    try {
      [png] = (await generate(sdTiny, { ...params, initImage: picture })).images;
    } finally {
      encoder.restore();
      decoder.restore();
    }
    expect(encoder.dims).toEqual(Array.from({ length: 9 }, () => [1, 3, 64, 64]));
    expect(decoder.dims).toEqual(Array.from({ length: 9 }, () => [1, 4, 8, 8]));
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([128, 128, 3]);
    // A picture, not a blank: the decoded pixels vary.
    expect(new Set(data).size).toBeGreaterThan(10);
  });
});
