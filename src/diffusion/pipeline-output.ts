/**
 * Steps 9 and 10 of the pipeline (pipeline.ts), what leaves a run: diffusers' postprocess to RGB bytes, the model's
 * safety checker, PNGs that carry their parameters, and each job's result with the run's timings.
 */
import { encodePng, planarToRgb } from '../image/encode.js';
import { infotext, PARAMETERS_KEYWORD } from '../image/infotext.js';
import { withPngText } from '../image/png-text.js';
import type { DiffusionModel } from './model.js';
import type { Member } from './pipeline.js';
import type { ImageShape, RunClock } from './pipeline-steps.js';
import { checkerImage, runSafetyChecker, type CheckerPicture } from './safety-checker.js';
import type { GenerateResult, GpuCopies } from './types.js';

/** diffusers' postprocess, clip(x / 2 + 0.5, 0, 1) × 255: each finishing job's images as RGB bytes. */
export function toRgb(finishing: readonly Member[], pixels: Float32Array, { width, height }: ImageShape): Uint8Array[][] {
  const plane = width * height;
  return finishing.map((m) => Array.from({ length: m.checked.count }, (_, i) => planarToRgb(pixels, (m.firstImage + i) * 3 * plane, width, height)));
}

/**
 * Step 9: every finishing picture through the model's safety checker (see safety-checker.ts). Returns each job's
 * flags and the time the checker took per picture (CLIP preprocessing included).
 */
export async function checkPictures(
  model: DiffusionModel,
  finishing: readonly Member[],
  pixels: Float32Array,
  rgb: Uint8Array[][],
  { width, height }: ImageShape,
  clock: RunClock,
): Promise<{ flags: boolean[][]; ms: number }> {
  const t0 = performance.now();
  const plane = width * height;
  const pictures: CheckerPicture[] = finishing.flatMap((m, k) =>
    rgb[k].map((bytes, i) => ({ rgb: bytes, nhwc: checkerImage(pixels, (m.firstImage + i) * 3 * plane, width, height), width, height })),
  );
  const all = await runSafetyChecker(model.safetyChecker!, pictures, clock);
  let next = 0;
  const flags = finishing.map((m) => all.slice(next, (next += m.checked.count)));
  return { flags, ms: (performance.now() - t0) / Math.max(1, pictures.length) };
}

/**
 * PNGs of every job's images, all at once: sharp encodes on libuv's thread pool, so several images share the cores.
 * Each carries what it was made with in a `parameters` text chunk, with its own seed (image i: seed + i).
 */
export function toPngs(model: DiffusionModel, finishing: readonly Member[], rgb: Uint8Array[][], { width, height }: ImageShape): Promise<Uint8Array[][]> {
  const karras = model.schedulerConfig.use_karras_sigmas === true;
  return Promise.all(
    rgb.map((images, k) =>
      Promise.all(
        images.map(async (bytes, i) => {
          const { prompt, negativePrompt, steps, scheduler, guidanceScale, seed, strength, noise } = finishing[k].checked;
          const text = infotext({ prompt, negativePrompt, steps, scheduler, karras, guidanceScale, seed: (seed + i) >>> 0, width, height, model: model.info.name, strength, noise });
          return withPngText(await encodePng(bytes, width, height), { [PARAMETERS_KEYWORD]: text });
        }),
      ),
    ),
  );
}

/** One job's GenerateResult: its pictures, the values it was made with, and the run's timings. */
export function resultOf(
  model: DiffusionModel,
  m: Member,
  images: Uint8Array[],
  clock: RunClock,
  started: number,
  safety?: { flagged: boolean[]; ms: number },
  gpuCopies?: GpuCopies,
): GenerateResult {
  const { width, height, seed, steps, guidanceScale, scheduler, noise } = m.checked;
  const timings: GenerateResult['timings'] = { totalMs: performance.now() - started, runtimeMs: clock.runtimeMs, unetMs: clock.unetMs };
  const result: GenerateResult = { images, width, height, seed, steps, guidanceScale, scheduler, noise, model: model.info.name, truncated: m.truncated, timings };
  if (m.checked.strength !== undefined) result.strength = m.checked.strength;
  if (gpuCopies) timings.gpuCopies = { ...gpuCopies };
  if (safety) {
    result.flagged = safety.flagged;
    // The batch's checker time, per picture, times this job's pictures.
    timings.safetyMs = safety.ms * safety.flagged.length;
  }
  return result;
}
