/**
 * A picture's generation parameters as text, in the format of AUTOMATIC1111's stable-diffusion-webui
 * (`modules/processing.py`, `create_infotext`), saved under the PNG text keyword `parameters`
 * (`modules/images.py`, `save_image_with_geninfo`). A1111's PNG Info tab, ComfyUI's and Civitai's importers read
 * this format:
 *
 * ```
 * a red circle on a white background
 * Negative prompt: blurry
 * Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 512x512, Model: imagine-shapes
 * ```
 */

/** The PNG text keyword A1111 uses for its infotext. */
export const PARAMETERS_KEYWORD = 'parameters';

/**
 * Our scheduler names (diffusers' algorithms) → A1111's sampler names. DPM++ 2M and LMS with Karras sigmas are
 * sampler names of their own there ("DPM++ 2M Karras", "LMS Karras"), as A1111 before 1.9 writes them and every
 * reader still accepts; A1111 has no Karras variant of the others, so they keep their plain name.
 */
const SAMPLERS: Record<string, string> = {
  ddim: 'DDIM',
  ddpm: 'DDPM',
  euler: 'Euler',
  euler_a: 'Euler a',
  heun: 'Heun',
  lms: 'LMS',
  dpmpp_2m: 'DPM++ 2M',
  pndm: 'PLMS',
  lcm: 'LCM',
};

/** A1111's name for a scheduler; `karras`: the schedule uses Karras sigmas. An unknown name is kept as it is. */
export function a1111Sampler(scheduler: string, karras = false): string {
  const name = SAMPLERS[scheduler] ?? scheduler;
  return karras && (scheduler === 'dpmpp_2m' || scheduler === 'lms') ? `${name} Karras` : name;
}

/** What one picture was made with: the values actually used (the seed of this picture, the scheduler that ran). */
export interface InfotextParams {
  prompt: string;
  /** Empty or absent: no "Negative prompt:" line. */
  negativePrompt?: string;
  steps: number;
  /** Our scheduler name (see a1111Sampler). */
  scheduler: string;
  /** The scheduler used Karras sigmas (`use_karras_sigmas` in its config). */
  karras?: boolean;
  guidanceScale: number;
  seed: number;
  width: number;
  height: number;
  /** The model's name. */
  model: string;
  /** img2img: A1111's `Denoising strength`. Absent for txt2img. */
  strength?: number;
  /** Enlarged by the model's upscaler/ by this factor: A1111's `Postprocess upscale by` (its Extras tab's key). */
  upscaler?: number;
  /** The noise generator (GenerateParams.noise): A1111's `RNG`, see {@link a1111Rng}. Absent: no RNG field. */
  noise?: string;
}

/**
 * A1111's `RNG` value for our noise generators: `CPU` for torch's CPU generator (A1111's "CPU" randn source is
 * torch.Generator("cpu"), so the seed means the same noise there); imagine's own xoshiro stream is `imagine`, a
 * value no other tool reads as its own.
 */
export function a1111Rng(noise: string): string {
  return noise === 'torch' ? 'CPU' : noise === 'xoshiro' ? 'imagine' : noise;
}

/** A1111's `quote`: a value with a comma, a newline or a colon goes in JSON quotes, so the line still splits. */
function quote(value: string): string {
  return /[,\n:]/.test(value) ? JSON.stringify(value) : value;
}

/** The `parameters` text of one picture (see the file's comment). */
export function infotext(p: InfotextParams): string {
  const fields: [string, string | number][] = [
    ['Steps', p.steps],
    ['Sampler', a1111Sampler(p.scheduler, p.karras)],
    ['CFG scale', p.guidanceScale],
    ['Seed', p.seed],
    ['Size', `${p.width}x${p.height}`],
    ['Model', p.model],
  ];
  if (p.strength !== undefined) fields.push(['Denoising strength', p.strength]);
  if (p.upscaler !== undefined) fields.push(['Postprocess upscale by', p.upscaler]);
  if (p.noise !== undefined) fields.push(['RNG', a1111Rng(p.noise)]);
  const line = fields.map(([key, value]) => `${key}: ${quote(String(value))}`).join(', ');
  const negative = p.negativePrompt ? `\nNegative prompt: ${p.negativePrompt}` : '';
  return `${p.prompt}${negative}\n${line}`;
}

/**
 * `text` (an infotext) with A1111's Extras-tab fields for a picture enlarged after it was made: `Postprocess upscale
 * by` and `Postprocess upscaler` on its last line. `Size` stays the size the model made, as A1111 keeps it.
 */
export function withPostprocess(text: string, factor: number, upscaler: string): string {
  return `${text}, Postprocess upscale by: ${factor}, Postprocess upscaler: ${quote(upscaler)}`;
}
