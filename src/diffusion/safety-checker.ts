/**
 * The model's own safety checker, run as diffusers runs it after decoding (pipelines/stable_diffusion/
 * pipeline_onnx_stable_diffusion.py, "run safety checker"): each picture is CLIP-preprocessed as the model's
 * `feature_extractor/preprocessor_config.json` says (transformers' CLIPImageProcessor: resize, centre crop,
 * rescale, normalise) and handed, with the picture itself as NHWC floats in [0, 1], to `safety_checker/model.onnx`,
 * which answers `has_nsfw_concepts` per picture.
 *
 * The engine only reports the flag. What happens to a flagged picture (posted, spoilered, held back) is the bot's
 * decision, by server and channel (src/moderation/safety-rules.ts); diffusers' own pipeline blacks the picture
 * out instead, which leaves a server owner no choice.
 */
import sharp from 'sharp';
import * as ort from 'onnxruntime-node';
import type { FloatType, SafetyCheckerPart } from './model.js';
import { floatTensor, type RunClock } from './pipeline-steps.js';

/** transformers' OPENAI_CLIP_MEAN and OPENAI_CLIP_STD: CLIPImageProcessor's defaults when a config gives none. */
export const CLIP_MEAN: readonly [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
export const CLIP_STD: readonly [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/** The sharp kernels a PIL filter maps to. */
export type ResizeKernel = 'nearest' | 'lanczos3' | 'linear' | 'cubic';

/** PIL resample filters (as `resample` in a preprocessor config) and the sharp kernel that does the same. */
const RESAMPLE_KERNELS: Record<number, ResizeKernel> = {
  0: 'nearest',
  1: 'lanczos3',
  2: 'linear',
  // PIL's BICUBIC is Keys' cubic with a = −0.5 (Catmull-Rom), as sharp's `cubic`; both widen the kernel when
  // shrinking. The bytes may still differ from PIL's by a level here and there.
  3: 'cubic',
};

/** CLIPImageProcessor's steps, read from a preprocessor config, defaults filled in as transformers does. */
export interface ClipPreprocessing {
  /** Resize first: the shortest side to `shortestEdge` (aspect kept), or to exactly `height` × `width`. */
  resize?: { shortestEdge: number } | { height: number; width: number };
  kernel: ResizeKernel;
  /** Centre crop (zeros where the picture is smaller, as transformers pads). */
  crop?: { height: number; width: number };
  /** Multiplies the 0..255 values; 1 when `do_rescale` is false. */
  rescaleFactor: number;
  /** Per channel, RGB; absent when `do_normalize` is false. */
  normalize?: { mean: readonly number[]; std: readonly number[] };
}

/** The size of CLIP's input (`clip_input`'s height and width) that `config` makes from a `width` × `height` picture. */
export function clipInputSize(config: ClipPreprocessing, width: number, height: number): { width: number; height: number } {
  if (config.crop) return { ...config.crop };
  return resizedSize(config, width, height);
}

function resizedSize(config: ClipPreprocessing, width: number, height: number): { width: number; height: number } {
  const resize = config.resize;
  if (resize === undefined) return { width, height };
  if ('height' in resize) return { width: resize.width, height: resize.height };
  // transformers' get_resize_output_image_size(default_to_square=False): the long side is int(size × long / short).
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  const newLong = Math.floor((resize.shortestEdge * long) / short);
  return width <= height ? { width: resize.shortestEdge, height: newLong } : { width: newLong, height: resize.shortestEdge };
}

/**
 * Reads a `preprocessor_config.json` of a CLIP image processor (the keys of transformers' CLIPImageProcessor and of
 * the older CLIPFeatureExtractor: `size` as a number or `{shortest_edge}` or `{height, width}`, `crop_size` as a
 * number or `{height, width}`, `do_*` flags, `rescale_factor`, `image_mean`, `image_std`, `resample`).
 * @throws Error naming the key and what was expected; the caller adds the file.
 */
export function readClipPreprocessing(json: Record<string, unknown>): ClipPreprocessing {
  const flag = (key: string) => {
    const value = json[key];
    if (value === undefined) return true;
    if (typeof value !== 'boolean') throw new Error(`expected \`${key}\` to be true or false, got \`${JSON.stringify(value)}\``);
    return value;
  };
  const positive = (key: string, value: unknown): number => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
      throw new Error(`expected \`${key}\` to be a positive integer, got \`${JSON.stringify(value)}\``);
    }
    return value;
  };
  const triple = (key: string, fallback: readonly number[]): readonly number[] => {
    const value = json[key] ?? fallback;
    if (!Array.isArray(value) || value.length !== 3 || value.some((v) => typeof v !== 'number' || !Number.isFinite(v))) {
      throw new Error(`expected \`${key}\` to be three numbers (R, G, B), got \`${JSON.stringify(value)}\``);
    }
    return value as number[];
  };

  const config: ClipPreprocessing = { kernel: 'cubic', rescaleFactor: 1 };
  if (flag('do_resize')) {
    const size = json.size ?? { shortest_edge: 224 };
    if (typeof size === 'number') config.resize = { shortestEdge: positive('size', size) };
    else if (size !== null && typeof size === 'object' && 'shortest_edge' in size) {
      config.resize = { shortestEdge: positive('size.shortest_edge', size.shortest_edge) };
    } else if (size !== null && typeof size === 'object' && 'height' in size && 'width' in size) {
      config.resize = { height: positive('size.height', size.height), width: positive('size.width', size.width) };
    } else {
      throw new Error(`expected \`size\` to be a number, {"shortest_edge": n} or {"height": h, "width": w}, got \`${JSON.stringify(size)}\``);
    }
    const resample = json.resample ?? 3;
    if (typeof resample !== 'number' || !(resample in RESAMPLE_KERNELS)) {
      throw new Error(`expected \`resample\` to be a PIL filter 0 (nearest), 1 (lanczos), 2 (bilinear) or 3 (bicubic), got \`${JSON.stringify(resample)}\``);
    }
    config.kernel = RESAMPLE_KERNELS[resample];
  }
  if (flag('do_center_crop')) {
    const crop = json.crop_size ?? 224;
    if (typeof crop === 'number') config.crop = { height: positive('crop_size', crop), width: positive('crop_size', crop) };
    else if (crop !== null && typeof crop === 'object' && 'height' in crop && 'width' in crop) {
      config.crop = { height: positive('crop_size.height', crop.height), width: positive('crop_size.width', crop.width) };
    } else {
      throw new Error(`expected \`crop_size\` to be a number or {"height": h, "width": w}, got \`${JSON.stringify(crop)}\``);
    }
  }
  if (flag('do_rescale')) {
    const factor = json.rescale_factor ?? 1 / 255;
    if (typeof factor !== 'number' || !(factor > 0)) {
      throw new Error(`expected \`rescale_factor\` to be a positive number, got \`${JSON.stringify(factor)}\``);
    }
    config.rescaleFactor = factor;
  }
  if (flag('do_normalize')) {
    const std = triple('image_std', CLIP_STD);
    if (std.some((s) => s === 0)) throw new Error(`expected \`image_std\` to have no zero, got \`${JSON.stringify(std)}\``);
    config.normalize = { mean: triple('image_mean', CLIP_MEAN), std };
  }
  return config;
}

/**
 * One picture (interleaved RGB bytes) as CLIP sees it: resized with the config's filter, centre-cropped, rescaled
 * and normalised, planar [3, height, width] float32 (one row of `clip_input`).
 */
export async function clipPreprocess(rgb: Uint8Array, width: number, height: number, config: ClipPreprocessing): Promise<Float32Array> {
  if (rgb.length !== width * height * 3) throw new Error(`Expected ${width}×${height}×3 = ${width * height * 3} bytes, got ${rgb.length}`);
  const size = resizedSize(config, width, height);
  let pixels = rgb;
  if (size.width !== width || size.height !== height) {
    const resized = await sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), { raw: { width, height, channels: 3 } })
      .resize(size.width, size.height, { fit: 'fill', kernel: config.kernel })
      .raw()
      .toBuffer();
    pixels = new Uint8Array(resized.buffer, resized.byteOffset, resized.byteLength);
  }
  const out = clipInputSize(config, width, height);
  // transformers' center_crop: top = (h − crop_h) // 2, left likewise; negative (a smaller picture) pads with zeros.
  const top = Math.floor((size.height - out.height) / 2);
  const left = Math.floor((size.width - out.width) / 2);
  const plane = out.width * out.height;
  const planar = new Float32Array(3 * plane);
  const { rescaleFactor, normalize } = config;
  for (let c = 0; c < 3; c++) {
    const mean = normalize ? normalize.mean[c] : 0;
    const std = normalize ? normalize.std[c] : 1;
    for (let y = 0; y < out.height; y++) {
      const sy = top + y;
      for (let x = 0; x < out.width; x++) {
        const sx = left + x;
        const inside = sy >= 0 && sy < size.height && sx >= 0 && sx < size.width;
        const value = inside ? pixels[(sy * size.width + sx) * 3 + c] * rescaleFactor : 0;
        planar[c * plane + y * out.width + x] = (value - mean) / std;
      }
    }
  }
  return planar;
}

/** A decoded picture for the checker: its bytes (for CLIP's preprocessing) and its values in [0, 1], NHWC. */
export interface CheckerPicture {
  rgb: Uint8Array;
  /** height × width × 3 floats in [0, 1]: diffusers' `images` input, before rounding to bytes. */
  nhwc: Float32Array;
  width: number;
  height: number;
}

/**
 * Planar float picture in [−1, 1] (the decoder's output) → NHWC floats in [0, 1], as diffusers' postprocess
 * (clip(x / 2 + 0.5, 0, 1), then transpose) hands them to the checker.
 */
export function checkerImage(data: Float32Array, offset: number, width: number, height: number): Float32Array {
  const plane = width * height;
  const out = new Float32Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    const base = offset + c * plane;
    for (let p = 0; p < plane; p++) {
      const v = data[base + p] / 2 + 0.5;
      out[p * 3 + c] = v < 0 ? 0 : v > 1 ? 1 : v;
    }
  }
  return out;
}

/**
 * Runs the checker over pictures, one call per picture as diffusers' ONNX pipeline does (exports of the checker
 * do not batch reliably). Returns one flag per picture, in order. Its session time counts in `clock`.
 */
export async function runSafetyChecker(checker: SafetyCheckerPart, pictures: readonly CheckerPicture[], clock: RunClock): Promise<boolean[]> {
  const flags: boolean[] = [];
  for (const picture of pictures) {
    const clip = await clipPreprocess(picture.rgb, picture.width, picture.height, checker.preprocessing);
    const size = clipInputSize(checker.preprocessing, picture.width, picture.height);
    const out = await clock.run(checker.session, {
      [checker.clipInput.name]: floatTensor(checker.clipInput.type as FloatType, clip, [1, 3, size.height, size.width]),
      [checker.images.name]: floatTensor(checker.images.type as FloatType, picture.nhwc, [1, picture.height, picture.width, 3]),
    });
    flags.push(flagOf(out[checker.hasNsfwConcepts.name], checker.file));
  }
  return flags;
}

function flagOf(tensor: ort.Tensor | undefined, file: string): boolean {
  if (tensor === undefined || tensor.data.length !== 1) {
    throw new Error(`${file}: expected one \`has_nsfw_concepts\` value per picture, got ${tensor?.data.length ?? 'none'}`);
  }
  return Boolean(Number(tensor.data[0]));
}
