/**
 * Job validation, kept free of the runtime so the main thread (the worker pool, the command layer) can check a
 * job without loading onnxruntime. Validate first, never silently fix.
 */
import { Identifiers, UserError } from '../errors.js';
import { DEFAULT_NOISE, NOISE_NAMES, SCHEDULER_NAMES, type GenerateParams, type ModelInfo, type NoiseName, type SchedulerName } from './types.js';

/** Bounds every job is checked against; the guild and the model narrow them further upstream. */
export const LIMITS = {
  maxSteps: 1000,
  maxGuidance: 50,
  maxCount: 8,
  /** Longest side in pixels. */
  maxSide: 2048,
  /** Longest prompt in characters (the tokenizer truncates tokens; this only bounds the work). */
  maxPromptChars: 4000,
} as const;

/** GenerateParams with every default filled in. */
export interface CheckedParams {
  prompt: string;
  negativePrompt: string;
  steps: number;
  seed: number;
  guidanceScale: number;
  scheduler: SchedulerName;
  width: number;
  height: number;
  count: number;
  /** The noise generator (GenerateParams.noise, default {@link DEFAULT_NOISE}). */
  noise: NoiseName;
  /** img2img: the picture's bytes (not yet decoded) and the strength, default 0.8; both absent for txt2img. */
  initImage?: Uint8Array;
  strength?: number;
  /** A U through the model's upscaler/ (GenerateParams.upscale): `initImage` enlarged to width × height. */
  upscale?: true;
}

/** diffusers' img2img default `strength`. */
export const DEFAULT_STRENGTH = 0.8;

/**
 * diffusers' `get_timesteps`: the steps an img2img loop runs, `init_timestep = min(int(steps × strength), steps)`.
 * The one owner of that rule: the schedule's start (img2img.ts), the progress count and the refusal below ask it.
 */
export function img2imgSteps(steps: number, strength: number): number {
  return Math.min(Math.floor(steps * strength), steps);
}

/**
 * The steps a job's loop runs, what its progress counts to: `steps`; img2img's {@link img2imgSteps}; an upscale
 * through the model's network, 1.
 */
export function loopSteps(params: Pick<GenerateParams, 'steps' | 'strength' | 'upscale' | 'initImage'>): number {
  if (params.upscale === true) return 1;
  if (params.strength === undefined) return params.steps;
  return Math.max(1, img2imgSteps(params.steps, params.strength));
}

/** A UserError for a bad job parameter. */
export function invalid(message: string): UserError {
  return new UserError(Identifiers.InvalidInput, message);
}

/** The one line a job for a model that is not installed gets (the command layer and the engine both refuse it). */
export function unknownModel(name: string, installed: readonly string[]): UserError {
  const shown = String(name).slice(0, 80).replace(/`/g, '');
  return new UserError(Identifiers.ModelUnavailable, `There is no model \`${shown}\` (installed: ${installed.join(', ')}).`, { model: shown });
}

/** A value as it appears in messages: strings quoted. */
export function show(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

/**
 * Validate a job before any work starts; never silently fix. Throws a UserError whose message says what was
 * expected and what arrived. Omitted size: the model's native size; omitted scheduler: the model's own.
 */
export function checkInputs(params: GenerateParams, info: ModelInfo): CheckedParams {
  if (params === null || typeof params !== 'object') throw invalid(`Expected the job parameters as an object, got \`${show(params)}\``);
  const { prompt, negativePrompt, steps, seed, guidanceScale, scheduler } = params;
  if (typeof prompt !== 'string') throw invalid(`Expected \`prompt\` to be a string, got \`${show(prompt)}\``);
  if (prompt.trim() === '') throw new UserError(Identifiers.PromptEmpty, 'Expected `prompt` to contain some text, got an empty prompt');
  if (prompt.length > LIMITS.maxPromptChars) {
    throw new UserError(Identifiers.PromptTooLong, `Expected \`prompt\` of at most ${LIMITS.maxPromptChars} characters, got ${prompt.length}`);
  }
  if (negativePrompt !== undefined && typeof negativePrompt !== 'string') {
    throw invalid(`Expected \`negativePrompt\` to be a string, got \`${show(negativePrompt)}\``);
  }
  if ((negativePrompt ?? '').length > LIMITS.maxPromptChars) {
    throw new UserError(Identifiers.PromptTooLong, `Expected \`negativePrompt\` of at most ${LIMITS.maxPromptChars} characters, got ${negativePrompt!.length}`);
  }
  if (!Number.isInteger(steps) || steps < 1 || steps > LIMITS.maxSteps) {
    throw invalid(`Expected \`steps\` to be an integer from 1 to ${LIMITS.maxSteps}, got \`${show(steps)}\``);
  }
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw invalid(`Expected \`seed\` to be an integer from 0 to 4294967295, got \`${show(seed)}\``);
  }
  if (typeof guidanceScale !== 'number' || !Number.isFinite(guidanceScale) || guidanceScale < 0 || guidanceScale > LIMITS.maxGuidance) {
    throw invalid(`Expected \`guidanceScale\` to be a number from 0 to ${LIMITS.maxGuidance}, got \`${show(guidanceScale)}\``);
  }
  if (scheduler !== undefined && !(SCHEDULER_NAMES as readonly string[]).includes(scheduler)) {
    throw invalid(`Expected \`scheduler\` to be one of ${SCHEDULER_NAMES.join(', ')}, got \`${show(scheduler)}\``);
  }
  const noise = params.noise ?? DEFAULT_NOISE;
  if (!(NOISE_NAMES as readonly string[]).includes(noise)) {
    throw invalid(`Expected \`noise\` to be one of ${NOISE_NAMES.join(', ')}, got \`${show(noise)}\``);
  }
  // Latent models: multiples of 8 latent cells (the UNet downsamples three times); pixel-space: multiples of 8.
  const multiple = 8 * info.latentFactor;
  const size = (key: 'width' | 'height', native: number): number => {
    const value = params[key] ?? native;
    if (!Number.isInteger(value) || value < multiple || value > LIMITS.maxSide || value % multiple !== 0) {
      throw invalid(`Expected \`${key}\` to be a multiple of ${multiple} from ${multiple} to ${LIMITS.maxSide}, got \`${show(value)}\``);
    }
    return value;
  };
  const width = size('width', info.width);
  const height = size('height', info.height);
  if (params.upscale === true) return checkUpscale(params, { prompt, negativePrompt: negativePrompt ?? '', steps, seed, guidanceScale, scheduler: scheduler ?? info.defaultScheduler, width, height, count: params.count ?? 1, noise }, info);
  if (info.fixedSize && (width !== info.width || height !== info.height)) {
    throw invalid(`This model makes only ${info.width}×${info.height} pictures, got \`${width}×${height}\``);
  }
  const count = params.count ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > LIMITS.maxCount) {
    throw invalid(`Expected \`count\` to be an integer from 1 to ${LIMITS.maxCount}, got \`${show(count)}\``);
  }
  const checked: CheckedParams = {
    prompt,
    negativePrompt: negativePrompt ?? '',
    steps,
    seed,
    guidanceScale,
    scheduler: scheduler ?? info.defaultScheduler,
    width,
    height,
    count,
    noise,
  };
  return checkImg2img(params, checked);
}

/** A U through the model's upscaler: a picture, one of it, a size the network's scale divides, no strength. */
function checkUpscale(params: GenerateParams, checked: CheckedParams, info: ModelInfo): CheckedParams {
  if (!info.upscaler) throw invalid(`Expected a model with an upscaler/ folder for \`upscale\`, got ${info.name} without one`);
  const { scale } = info.upscaler;
  if (!(params.initImage instanceof Uint8Array) || params.initImage.length === 0) {
    throw invalid('Expected `initImage` (the picture to enlarge) with `upscale`, got none');
  }
  if (params.strength !== undefined) throw invalid(`Expected no \`strength\` with \`upscale\` (nothing is denoised), got \`${show(params.strength)}\``);
  if (checked.count !== 1) throw invalid(`Expected \`count\` 1 with \`upscale\`, got \`${show(checked.count)}\``);
  if (checked.width % scale !== 0 || checked.height % scale !== 0) {
    throw invalid(`Expected a size the upscaler's scale (${scale}) divides, got \`${checked.width}×${checked.height}\``);
  }
  return { ...checked, initImage: params.initImage, upscale: true };
}

/** img2img's two parameters (diffusers' `check_inputs` on `strength`, and `get_timesteps` leaving at least one step). */
function checkImg2img(params: GenerateParams, checked: CheckedParams): CheckedParams {
  const { initImage, strength } = params;
  if (initImage === undefined) {
    if (strength !== undefined) throw invalid(`Expected \`strength\` only with \`initImage\` (img2img), got \`${show(strength)}\` without a picture`);
    return checked;
  }
  if (!(initImage instanceof Uint8Array) || initImage.length === 0) {
    throw invalid(`Expected \`initImage\` to be the bytes of a PNG, JPEG or WebP picture, got \`${initImage instanceof Uint8Array ? 'no bytes' : show(initImage)}\``);
  }
  const value = strength ?? DEFAULT_STRENGTH;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > 1) {
    throw invalid(`Expected \`strength\` to be a number greater than 0 and at most 1, got \`${show(value)}\``);
  }
  if (img2imgSteps(checked.steps, value) < 1) {
    throw invalid(`Expected \`steps\` × \`strength\` to be at least 1 (img2img runs floor(steps × strength) steps), got ${checked.steps} × ${value}`);
  }
  if (checked.scheduler === 'lcm') {
    throw invalid('Expected a scheduler other than `lcm` for img2img (LCM sets its timesteps from the strength; not supported yet)');
  }
  return { ...checked, initImage, strength: value };
}

/**
 * Jobs with the same key can share UNet calls: same model, steps, scheduler and size (prompts, seeds, guidance and
 * counts may differ). Use on checked params; `model` is the job's `GenerateParams.model` (undefined: the default).
 */
export function batchKey(
  checked: Pick<CheckedParams, 'steps' | 'scheduler' | 'width' | 'height' | 'strength'>,
  model?: string,
): string {
  // img2img jobs start mid-schedule: only jobs of the same strength share the loop (txt2img keys are unchanged).
  const img2img = checked.strength !== undefined ? `|strength ${checked.strength}` : '';
  return `${model ?? ''}|${checked.steps}|${checked.scheduler}|${checked.width}x${checked.height}${img2img}`;
}

