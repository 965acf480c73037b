/**
 * txt2img: the denoising loop written out in full, step by step as in diffusers'
 * pipelines/stable_diffusion/pipeline_onnx_stable_diffusion.py. Latent diffusion (Rombach et al. 2022) with
 * classifier-free guidance (Ho & Salimans 2022); pixel-space models run the same loop on the image itself.
 */
import * as ort from 'onnxruntime-node';
import { Identifiers, UserError } from '../errors.js';
import { encodePng, planarToRgb } from '../image/encode.js';
import type { DiffusionModel, FloatType, TensorSpec } from './model.js';
import { previewOf } from './preview.js';
import { Rng } from './rng.js';
import { createScheduler } from './schedulers/index.js';
import type { NoiseSource } from './schedulers/types.js';
import { floatToHalf, fromHalf, guideInto, toHalf } from './tensor.js';
import {
  SCHEDULER_NAMES,
  type GenerateOptions,
  type GenerateParams,
  type GenerateResult,
  type ModelInfo,
  type SchedulerName,
} from './types.js';

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
}

function invalid(message: string): UserError {
  return new UserError(Identifiers.InvalidInput, message);
}

function show(value: unknown): string {
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
  if (info.fixedSize && (width !== info.width || height !== info.height)) {
    throw invalid(`This model makes only ${info.width}×${info.height} pictures, got \`${width}×${height}\``);
  }
  const count = params.count ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > LIMITS.maxCount) {
    throw invalid(`Expected \`count\` to be an integer from 1 to ${LIMITS.maxCount}, got \`${show(count)}\``);
  }
  return {
    prompt,
    negativePrompt: negativePrompt ?? '',
    steps,
    seed,
    guidanceScale,
    scheduler: scheduler ?? info.defaultScheduler,
    width,
    height,
    count,
  };
}

/** Noise for a batch where image i has its own generator seeded (seed + i) mod 2^32, so a batch image equals the single job. */
class BatchNoise implements NoiseSource {
  private readonly rngs: Rng[];
  constructor(seed: number, count: number) {
    this.rngs = Array.from({ length: count }, (_, i) => new Rng((seed + i) >>> 0));
  }
  fillNormal(out: Float32Array): void {
    if (out.length % this.rngs.length !== 0) {
      // Not a whole batch (no scheduler here asks for that): one stream keeps it seeded all the same.
      this.rngs[0].fillNormal(out);
      return;
    }
    const per = out.length / this.rngs.length;
    for (let i = 0; i < this.rngs.length; i++) this.rngs[i].fillNormal(out.subarray(i * per, (i + 1) * per));
  }
}

/**
 * LCM's guidance embedding, diffusers' `get_guidance_scale_embedding(w, embedding_dim)`: sinusoids of w × 1000,
 * with w = guidance − 1 as StableDiffusionPipeline and LatentConsistencyModelPipeline pass it.
 */
export function guidanceScaleEmbedding(w: number, dim: number, out = new Float32Array(dim)): Float32Array {
  const half = Math.floor(dim / 2);
  const scale = Math.log(10000) / (half - 1);
  const wk = Math.fround(w * 1000);
  for (let k = 0; k < half; k++) {
    const arg = Math.fround(wk * Math.fround(Math.exp(-k * scale)));
    out[k] = Math.sin(arg);
    out[half + k] = Math.cos(arg);
  }
  if (dim % 2 === 1) out[dim - 1] = 0;
  return out;
}

/** A float tensor of the model's dtype from float32 data (fp16 models convert here, at the edge). */
function floatTensor(type: FloatType, data: Float32Array, dims: readonly number[], half?: Uint16Array): ort.Tensor {
  if (type === 'float16') return new ort.Tensor('float16', toHalf(data, half ?? new Uint16Array(data.length)), dims);
  return new ort.Tensor('float32', data, dims);
}

/** A session output as float32 (fp16 converted into `out` when given). */
function readFloat(tensor: ort.Tensor, out?: Float32Array): Float32Array {
  if (tensor.type === 'float16') {
    const bits = tensor.data as Uint16Array;
    return fromHalf(bits, out ?? new Float32Array(bits.length));
  }
  if (tensor.type !== 'float32') throw new Error(`Expected a float32 or float16 output, got ${tensor.type}`);
  return tensor.data as Float32Array;
}

/** The timestep as the UNet's metadata asks for it: dtype int64/int32/float32/float16, shape [] , [1] or [batch]. */
function timestepTensor(spec: TensorSpec, t: number, batch: number): ort.Tensor {
  const dims = spec.shape.length === 0 ? [] : typeof spec.shape[0] === 'number' && spec.shape[0] > 0 ? [spec.shape[0]] : [batch];
  const n = dims.length === 0 ? 1 : dims[0];
  switch (spec.type) {
    case 'int64':
      // As diffusers' ONNX pipeline casts with np.array([t], dtype=int64): truncation.
      return new ort.Tensor('int64', new BigInt64Array(n).fill(BigInt(Math.trunc(t))), dims);
    case 'int32':
      return new ort.Tensor('int32', new Int32Array(n).fill(Math.trunc(t)), dims);
    case 'float16':
      return new ort.Tensor('float16', new Uint16Array(n).fill(floatToHalf(t)), dims);
    default:
      return new ort.Tensor('float32', new Float32Array(n).fill(t), dims);
  }
}

function batchOf(spec: TensorSpec): number | undefined {
  const d = spec.shape[0];
  return typeof d === 'number' && d > 0 ? d : undefined;
}

function cancelled(): UserError {
  return new UserError(Identifiers.Cancelled, 'The job was cancelled');
}

/**
 * Make pictures. Validates with {@link checkInputs}, then runs the loop below; rejects with a UserError
 * (`cancelled`) when `options.signal` aborts between steps.
 */
export async function generate(model: DiffusionModel, params: GenerateParams, options: GenerateOptions = {}): Promise<GenerateResult> {
  const started = performance.now();
  const checked = checkInputs(params, model.info);
  const previewEvery = options.previewEvery ?? 1;
  if (!Number.isInteger(previewEvery) || previewEvery < 0) {
    throw invalid(`Expected \`previewEvery\` to be an integer of at least 0, got \`${show(previewEvery)}\``);
  }
  const { signal, onProgress } = options;
  const { steps, seed, guidanceScale, count } = checked;
  let runtimeMs = 0;
  let unetMs = 0;
  const run = async (session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, fetches?: Record<string, ort.Tensor>) => {
    const t0 = performance.now();
    const out = fetches ? await session.run(feeds, fetches) : await session.run(feeds);
    runtimeMs += performance.now() - t0;
    return out;
  };
  if (signal?.aborted) throw cancelled();

  // 1. Scheduler from the model's scheduler_config.json (a bad name or config key is the caller's error).
  let scheduler;
  try {
    scheduler = createScheduler(checked.scheduler, model.schedulerConfig);
  } catch (error) {
    throw invalid((error as Error).message);
  }

  // 2. Guidance mode. As diffusers: CFG when guidance > 1, except for models that embed the guidance (LCM's
  //    timestep_cond), which take it through the embedding and run one half.
  const { unet } = model;
  const doCfg = guidanceScale > 1 && !unet.timestepCond;
  const batch = doCfg ? 2 * count : count;
  const fixedBatch = batchOf(unet.sample);
  if (fixedBatch !== undefined && fixedBatch !== batch) {
    throw invalid(`This model's UNet takes a fixed batch of ${fixedBatch}; this job needs ${batch} (count ${count}${doCfg ? ', with guidance' : ''})`);
  }

  // 3. Encode the prompt (and the negative prompt for CFG): [uncond × count, cond × count], as diffusers concatenates.
  const positive = model.tokenizer.encode(checked.prompt);
  const negative = doCfg ? model.tokenizer.encode(checked.negativePrompt) : undefined;
  const truncated = positive.truncated || (negative?.truncated ?? false);
  const prompts = negative ? [negative.ids, positive.ids] : [positive.ids];
  const embeddings = await encodeText(model, prompts, run);
  const seqLen = model.tokenizer.maxLength;
  const hidden = embeddings[0].length / seqLen;
  const ehs = new Float32Array(batch * seqLen * hidden);
  for (let half = 0; half < prompts.length; half++) {
    for (let i = 0; i < count; i++) ehs.set(embeddings[half], (half * count + i) * seqLen * hidden);
  }
  const sampleType = unet.sample.type as FloatType;
  const ehsTensor = floatTensor(sampleType, ehs, [batch, seqLen, hidden]);

  // 4. LCM: the guidance embedding, one row per image.
  let condTensor: ort.Tensor | undefined;
  if (unet.timestepCond) {
    const row = guidanceScaleEmbedding(guidanceScale - 1, model.timestepCondDim);
    const cond = new Float32Array(batch * row.length);
    for (let i = 0; i < batch; i++) cond.set(row, i * row.length);
    condTensor = floatTensor(sampleType, cond, [batch, row.length]);
  }

  // 5. Timesteps.
  scheduler.setTimesteps(steps);
  const timesteps = scheduler.timesteps;

  // 6. Initial noise: image i from seed + i, scaled by the scheduler's init_noise_sigma.
  const { channels } = model;
  const latentH = checked.height / model.info.latentFactor;
  const latentW = checked.width / model.info.latentFactor;
  const perImage = channels * latentH * latentW;
  const noise = new BatchNoise(seed, count);
  let latents: Float32Array<ArrayBufferLike> = new Float32Array(count * perImage);
  noise.fillNormal(latents);
  const sigma = scheduler.initNoiseSigma;
  for (let i = 0; i < latents.length; i++) latents[i] *= sigma;

  // Buffers reused by every step: the UNet input (both CFG halves), its fp16 form, the guided noise prediction.
  const sampleIn = new Float32Array(batch * perImage);
  const sampleHalf = sampleType === 'float16' ? new Uint16Array(batch * perImage) : undefined;
  const outFloat = sampleType === 'float16' ? new Float32Array(batch * perImage) : undefined;
  // The UNet writes its prediction into this tensor (onnxruntime fills pre-allocated outputs) instead of a new one.
  const unetOut =
    unet.output.type === 'float16'
      ? new ort.Tensor('float16', new Uint16Array(batch * perImage), [batch, channels, latentH, latentW])
      : new ort.Tensor('float32', new Float32Array(batch * perImage), [batch, channels, latentH, latentW]);
  const noisePred = doCfg ? new Float32Array(count * perImage) : undefined;
  const sampleDims = [batch, channels, latentH, latentW];

  // 7. Denoising loop. One progress call per user-visible step: a scheduler may run the UNet more than once per
  //    step (Heun: twice; PNDM's Runge–Kutta warm-up: more).
  let reported = 0;
  for (let i = 0; i < timesteps.length; i++) {
    if (signal?.aborted) throw cancelled();
    const t = timesteps[i];

    // 7a. Scale the input (Euler-family schedulers divide by sqrt(sigma² + 1)) and duplicate it for CFG.
    const scaled = scheduler.scaleModelInput(latents, t);
    sampleIn.set(scaled, 0);
    if (doCfg) sampleIn.set(scaled, count * perImage);

    // 7b. Predict the noise residual.
    const feeds: Record<string, ort.Tensor> = {
      [unet.sample.name]: floatTensor(sampleType, sampleIn, sampleDims, sampleHalf),
      [unet.timestep.name]: timestepTensor(unet.timestep, t, batch),
      [unet.encoderHiddenStates.name]: ehsTensor,
    };
    if (condTensor && unet.timestepCond) feeds[unet.timestepCond.name] = condTensor;
    const t0 = performance.now();
    await run(unet.session, feeds, { [unet.output.name]: unetOut });
    unetMs += performance.now() - t0;
    const modelOut = readFloat(unetOut, outFloat);

    // 7c. Guidance: uncond + scale × (cond − uncond).
    const guided = noisePred ? guideInto(modelOut, count * perImage, guidanceScale, noisePred) : modelOut;

    // 7d. One scheduler step: x_t → x_{t−1}, with the seeded generator for any noise it adds.
    const result = scheduler.step(guided, t, latents, noise);
    latents = result.prevSample;

    // 7e. Progress, with a cheap preview of the current estimate of the clean image.
    const done = Math.floor(((i + 1) * steps) / timesteps.length);
    while (reported < done) {
      reported++;
      if (onProgress) {
        const wantPreview = previewEvery > 0 && (reported % previewEvery === 0 || reported === steps);
        const estimate = result.predOriginalSample ?? latents;
        onProgress({
          step: reported,
          totalSteps: steps,
          elapsedMs: performance.now() - started,
          preview: wantPreview ? previewOf(estimate, 0, channels, latentW, latentH) : undefined,
        });
      }
    }
  }
  if (signal?.aborted) throw cancelled();

  // 8. Decode: latents / scaling_factor through the VAE (latent models), or the sample itself (pixel-space).
  let pixels: Float32Array<ArrayBufferLike>;
  if (model.vaeDecoder) {
    const vae = model.vaeDecoder;
    const scaledLatents = new Float32Array(latents.length);
    for (let i = 0; i < latents.length; i++) scaledLatents[i] = latents[i] / model.scalingFactor;
    const vaeBatch = batchOf(vae.latentSample) ?? count;
    pixels = new Float32Array(count * 3 * checked.width * checked.height);
    for (let start = 0; start < count; start += vaeBatch) {
      const n = Math.min(vaeBatch, count - start);
      const chunk = scaledLatents.subarray(start * perImage, (start + n) * perImage);
      const out = await run(vae.session, {
        [vae.latentSample.name]: floatTensor(vae.latentSample.type as FloatType, chunk, [n, channels, latentH, latentW]),
      });
      const decoded = readFloat(out[vae.sample.name]);
      if (decoded.length !== n * 3 * checked.width * checked.height) {
        throw new Error(`${model.dir}/vae_decoder/model.onnx: expected ${n}×3×${checked.height}×${checked.width} values, got ${decoded.length}`);
      }
      pixels.set(decoded, start * 3 * checked.width * checked.height);
    }
  } else {
    pixels = latents;
  }

  // 9. To PNG: clip(x / 2 + 0.5, 0, 1) × 255, as diffusers' postprocess.
  const images: Uint8Array[] = [];
  const plane = checked.width * checked.height;
  for (let i = 0; i < count; i++) {
    images.push(await encodePng(planarToRgb(pixels, i * 3 * plane, checked.width, checked.height), checked.width, checked.height));
  }

  return {
    images,
    width: checked.width,
    height: checked.height,
    seed,
    steps,
    guidanceScale,
    scheduler: checked.scheduler,
    model: model.info.name,
    truncated,
    timings: { totalMs: performance.now() - started, runtimeMs, unetMs },
  };
}

/** Run the text encoder over prompts' ids (one call, or one per prompt for a fixed batch of 1); float32 rows out. */
async function encodeText(
  model: DiffusionModel,
  prompts: number[][],
  run: (session: ort.InferenceSession, feeds: Record<string, ort.Tensor>) => Promise<ort.InferenceSession.OnnxValueMapType>,
): Promise<Float32Array[]> {
  const { textEncoder } = model;
  const seqLen = model.tokenizer.maxLength;
  const fixed = batchOf(textEncoder.inputIds);
  const per = fixed ?? prompts.length;
  const rows: Float32Array[] = [];
  for (let start = 0; start < prompts.length; start += per) {
    const group = prompts.slice(start, start + per);
    if (group.length !== per) throw new Error(`${model.dir}/text_encoder/model.onnx takes a fixed batch of ${per}`);
    const flat = group.flat();
    const ids =
      textEncoder.inputIds.type === 'int64'
        ? new ort.Tensor('int64', BigInt64Array.from(flat, (x) => BigInt(x)), [group.length, seqLen])
        : new ort.Tensor('int32', Int32Array.from(flat), [group.length, seqLen]);
    const out = await run(textEncoder.session, { [textEncoder.inputIds.name]: ids });
    const hidden = readFloat(out[textEncoder.lastHiddenState.name]);
    const rowLength = hidden.length / group.length;
    for (let i = 0; i < group.length; i++) rows.push(hidden.slice(i * rowLength, (i + 1) * rowLength));
  }
  return rows;
}
