/**
 * The VAE in tiles, for pictures larger than the model's native size (a U's hires fix at twice the size): the
 * latent (decode) or the picture (encode) is cut into overlapping tiles, each tile runs through the VAE alone, and
 * the tiles' outputs are blended linearly across their overlaps. Learned from diffusers' `AutoencoderKL.tiled_decode`
 * and `tiled_encode` (models/autoencoders/autoencoder_kl.py), with two departures said where they are made: every
 * tile has the full tile size (the last one is not cut short), and the blend is a weighted sum over the whole
 * overlap rather than one tile written over another.
 *
 * The VAE's convolutions see a tile's edge as zero padding, and its GroupNorms and mid-block attention see only the
 * tile, so a tiled decode is close to the whole decode, not equal to it (diffusers' docstring says as much); a
 * decoder whose every output pixel depends on one latent cell gives the same picture either way.
 */
import type { DiffusionModel, TensorSpec } from './model.js';
import { dim } from './model-parts.js';

/**
 * How much neighbouring tiles overlap, as a share of the tile: diffusers' `tile_overlap_factor = 0.25`
 * (AutoencoderKL.__init__).
 */
export const TILE_OVERLAP_FACTOR = 0.25;

/** Where the tiles of one picture lie, in latent cells; every tile is tileH × tileW. */
export interface TilePlan {
  tileH: number;
  tileW: number;
  /** The first row of each row of tiles, top to bottom; the last ends at the picture's bottom edge. */
  rows: number[];
  /** The first column of each column of tiles, left to right; the last ends at the picture's right edge. */
  cols: number[];
}

/**
 * The one rule for when the VAE runs in tiles, for the decoder (`latent_sample`) and the encoder (`sample`) alike:
 * when the picture has more latent cells than the model's native size, the VAE never runs on more than a native
 * picture's worth. The native size is what every /imagine decodes in one run, so a tiled decode or encode needs no
 * more of the VAE's activation memory than the bot needs anyway; past it the memory grows faster than the pixels
 * (the mid-block attention's scores are (h·w)² floats: 64 MiB at SD 1.x's 512², 1 GiB at 1024², 16 GiB at 2048²).
 * diffusers' `enable_tiling` tiles above the VAE config's `sample_size` (`tile_sample_min_size`), which is the native
 * size of SD 1.x, 2.x and XL; the model's own native size serves models whose VAE config says nothing or something
 * else (the bench's sd-bench copies a 64-pixel VAE config beside a 512-pixel UNet).
 *
 * Measured (tools/bench/vae-memory.ts, SD 1.5's decoder topology with synthetic weights, CPU): a whole 1024² decode
 * added 3.4 GiB on its first run; the tiled one 1.9 GiB, what two 512² decodes add (tools/bench/README.md, issue 13).
 *
 * The bound is on area, not on each side, because memory follows the area: a 1024 × 256 picture is a 512² picture's
 * worth and runs whole. A tile is the native size on each side, or the picture's side where that is shorter.
 *
 * Returns undefined (one whole run, as before tiling existed) at or below the bound, for a pixel-space model, and for
 * a part exported at a fixed height and width: it cannot take any other size, so a tile would not fit it.
 */
export function vaeTilePlan(model: DiffusionModel, part: TensorSpec, latentH: number, latentW: number): TilePlan | undefined {
  if (!model.vaeDecoder) return undefined;
  if (dim(part.shape[2]) !== undefined || dim(part.shape[3]) !== undefined) return undefined;
  const { latentFactor } = model.info;
  const nativeH = model.info.height / latentFactor;
  const nativeW = model.info.width / latentFactor;
  if (latentH * latentW <= nativeH * nativeW) return undefined;
  const tileH = Math.min(latentH, nativeH);
  const tileW = Math.min(latentW, nativeW);
  return { tileH, tileW, rows: tileStarts(latentH, tileH), cols: tileStarts(latentW, tileW) };
}

/**
 * The first cell of each tile along one side of `length` cells, every tile `tile` long, overlapping by at least
 * `tile × TILE_OVERLAP_FACTOR` (give or take a cell of rounding). diffusers steps by tile × (1 − 0.25) and lets the
 * last tile run short; here the fewest tiles that cover the side at that overlap are spread evenly from 0 to
 * length − tile, so every run has the same input shape (onnxruntime plans memory for one shape, and no sliver of a
 * tile is decoded with almost no context).
 */
export function tileStarts(length: number, tile: number): number[] {
  if (length <= tile) return [0];
  const overlap = Math.floor(tile * TILE_OVERLAP_FACTOR);
  const count = Math.ceil((length - overlap) / (tile - overlap));
  return Array.from({ length: count }, (_, i) => Math.round((i * (length - tile)) / (count - 1)));
}

/**
 * Each tile's blend weight along one side, per output unit (pixel or latent cell) of the tile: linear ramps across
 * the overlap with the tile before (up from ~0) and after (down to ~0), 1 elsewhere, then divided by the sum over
 * the tiles that cover that unit, so the weights there add up to 1. diffusers' blend_v/blend_h ramp y / blend_extent
 * over the overlap; the half-unit offset here makes the two ramps of a pair mirror each other exactly.
 */
export function blendWeights(starts: readonly number[], tile: number, scale: number): Float32Array[] {
  const size = tile * scale;
  const from = starts.map((s) => s * scale);
  const raw = from.map((a, i) => {
    const w = new Float64Array(size);
    for (let k = 0; k < size; k++) {
      const p = a + k + 0.5;
      const up = i === 0 ? 1 : (p - a) / (from[i - 1] + size - a);
      const down = i === from.length - 1 ? 1 : (a + size - p) / (a + size - from[i + 1]);
      w[k] = Math.max(0, Math.min(1, up, down));
    }
    return w;
  });
  const total = new Float64Array(from[from.length - 1] + size);
  raw.forEach((w, i) => w.forEach((v, k) => (total[from[i] + k] += v)));
  return raw.map((w, i) => Float32Array.from(w, (v, k) => v / total[from[i] + k]));
}

/**
 * What one VAE part does to a tile: its input's channels and units per latent cell, its output's units per latent
 * cell, and the run itself (`input` is [n, inChannels, tileH × inScale, tileW × inScale]; returns the output as
 * float32, [n, outChannels, tileH × outScale, tileW × outScale]).
 */
interface TiledPart {
  inChannels: number;
  inScale: number;
  outScale: number;
  run: VaeRun;
}

/**
 * Run `part` over `plan`'s tiles of `input` ([n, inChannels, latentH × inScale, latentW × inScale]) and blend the
 * tiles' outputs into the whole picture's output, [n, outChannels, latentH × outScale, latentW × outScale].
 */
async function runTiles(part: TiledPart, plan: TilePlan, input: Float32Array, n: number, latentH: number, latentW: number): Promise<Float32Array> {
  const { inChannels, inScale, outScale } = part;
  const [inH, inW, outH, outW] = [latentH * inScale, latentW * inScale, latentH * outScale, latentW * outScale];
  const [tileInH, tileInW, tileOutH, tileOutW] = [plan.tileH * inScale, plan.tileW * inScale, plan.tileH * outScale, plan.tileW * outScale];
  const rowWeights = blendWeights(plan.rows, plan.tileH, outScale);
  const colWeights = blendWeights(plan.cols, plan.tileW, outScale);
  const tileIn = new Float32Array(n * inChannels * tileInH * tileInW);
  let output: Float32Array | undefined;
  let outChannels = 0;
  for (let r = 0; r < plan.rows.length; r++) {
    for (let c = 0; c < plan.cols.length; c++) {
      // 1. Cut the tile out of every image of the chunk.
      const y0 = plan.rows[r] * inScale;
      const x0 = plan.cols[c] * inScale;
      for (let plane = 0; plane < n * inChannels; plane++) {
        for (let y = 0; y < tileInH; y++) {
          const from = plane * inH * inW + (y0 + y) * inW + x0;
          tileIn.set(input.subarray(from, from + tileInW), (plane * tileInH + y) * tileInW);
        }
      }
      // 2. Run it.
      const tileOut = await part.run(tileIn, n, tileInH, tileInW);
      const perPlane = tileOutH * tileOutW;
      if (output === undefined) {
        outChannels = tileOut.length / (n * perPlane);
        if (!Number.isInteger(outChannels)) throw new Error(`Expected a tile's output to be ${n}×channels×${tileOutH}×${tileOutW} values, got ${tileOut.length}`);
        output = new Float32Array(n * outChannels * outH * outW);
      } else if (tileOut.length !== n * outChannels * perPlane) {
        throw new Error(`Expected a tile's output to be ${n}×${outChannels}×${tileOutH}×${tileOutW} values, got ${tileOut.length}`);
      }
      // 3. Add it in, weighted by its blend along both sides (the weights of all tiles add up to 1 everywhere).
      const wy = rowWeights[r];
      const wx = colWeights[c];
      const oy = plan.rows[r] * outScale;
      const ox = plan.cols[c] * outScale;
      for (let plane = 0; plane < n * outChannels; plane++) {
        for (let y = 0; y < tileOutH; y++) {
          const src = (plane * tileOutH + y) * tileOutW;
          const dst = plane * outH * outW + (oy + y) * outW + ox;
          const rowWeight = wy[y];
          for (let x = 0; x < tileOutW; x++) output[dst + x] += rowWeight * wx[x] * tileOut[src + x];
        }
      }
    }
  }
  return output!;
}

/**
 * One VAE run over `n` images as `run` makes it ([n, channels, h, w] in → float32 [n, channels, h', w'] out).
 * pipeline-steps.ts passes the decoder's or the encoder's.
 */
export type VaeRun = (input: Float32Array, n: number, height: number, width: number) => Promise<Float32Array>;

/**
 * The decoder over `n` images' scaled latents ([n, channels, latentH, latentW]): one `run` of the whole, or one per
 * tile when {@link vaeTilePlan} says so. Returns the decoder's output, [n, 3, height, width].
 */
export async function decodeInTiles(model: DiffusionModel, latents: Float32Array, n: number, latentH: number, latentW: number, run: VaeRun): Promise<Float32Array> {
  const plan = vaeTilePlan(model, model.vaeDecoder!.latentSample, latentH, latentW);
  if (!plan) return run(latents, n, latentH, latentW);
  return runTiles({ inChannels: model.channels, inScale: 1, outScale: model.info.latentFactor, run }, plan, latents, n, latentH, latentW);
}

/**
 * The encoder over `n` pictures ([n, 3, height, width] in [-1, 1]): one `run` of the whole, or one per tile when
 * {@link vaeTilePlan} says so. Returns the encoder's output, [n, its channels, latentH, latentW] (a
 * `latent_parameters` output's mean and log-variance are blended alike).
 */
export async function encodeInTiles(model: DiffusionModel, pixels: Float32Array, n: number, height: number, width: number, run: VaeRun): Promise<Float32Array> {
  const factor = model.info.latentFactor;
  const plan = vaeTilePlan(model, model.vaeEncoder!.sample, height / factor, width / factor);
  if (!plan) return run(pixels, n, height, width);
  return runTiles({ inChannels: 3, inScale: factor, outScale: 1, run }, plan, pixels, n, height / factor, width / factor);
}
