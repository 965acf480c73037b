/**
 * The parts of pipeline.ts that know nothing of jobs: tensors in the model's dtype, the timestep as the UNet asks
 * for it, seeded noise for a batch, LCM's guidance embedding, the text encoder call, the denoising loop's buffers,
 * the VAE decode (and img2img's encode), and the clock that sums the runtime's time.
 */
import * as ort from 'onnxruntime-node';
import type { CheckedParams } from './check-inputs.js';
import type { DiffusionModel, FloatType, TensorSpec, TextEncoderPart, UnetPart } from './model.js';
import { noiseSource } from './noise.js';
import type { NoiseSource } from './schedulers/types.js';
import { floatToHalf, fromHalf, toHalf } from './tensor.js';
import type { NoiseName } from './types.js';
import { decodeInTiles, encodeInTiles } from './vae-tiling.js';

/**
 * Noise for a batch where every image has its own generator (a job's image i: seed + i mod 2^32, of the job's
 * `noise` kind), so an image in a batch gets the noise it would get alone. As diffusers' `randn_tensor` with a list
 * of generators (utils/torch_utils.py): one `torch.randn((1,) + shape[1:], generator=generator[i])` per image, for
 * the initial latents and for every later draw (the ancestral schedulers' step()).
 */
export class BatchNoise implements NoiseSource {
  private readonly rngs: NoiseSource[];
  constructor(images: readonly { seed: number; noise: NoiseName }[]) {
    this.rngs = images.map(({ seed, noise }) => noiseSource(noise, seed));
  }

  /** One generator per image of `members`' jobs, in image order: job image i from seed + i. */
  static of(members: readonly { checked: Pick<CheckedParams, 'seed' | 'count' | 'noise'> }[]): BatchNoise {
    return new BatchNoise(
      members.flatMap(({ checked }) => Array.from({ length: checked.count }, (_, i) => ({ seed: (checked.seed + i) >>> 0, noise: checked.noise }))),
    );
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
export function floatTensor(type: FloatType, data: Float32Array, dims: readonly number[], half?: Uint16Array): ort.Tensor {
  if (type === 'float16') return new ort.Tensor('float16', toHalf(data, half ?? new Uint16Array(data.length)), dims);
  return new ort.Tensor('float32', data, dims);
}

/** A session output as float32 (fp16 converted into `out` when given). */
export function readFloat(tensor: ort.Tensor, out?: Float32Array): Float32Array {
  if (tensor.type === 'float16') {
    const bits = tensor.data as Uint16Array;
    return fromHalf(bits, out ?? new Float32Array(bits.length));
  }
  if (tensor.type !== 'float32') throw new Error(`Expected a float32 or float16 output, got ${tensor.type}`);
  return tensor.data as Float32Array;
}

/** The timestep tensor of one batch; `set(t)` refills it in place before each UNet call. */
export interface TimestepTensor {
  tensor: ort.Tensor;
  set(t: number): void;
}

/**
 * The timestep as the UNet's metadata asks for it: dtype int64/int32/float32/float16, shape [], [1] or [batch].
 * Made once per batch: onnxruntime reads the typed array at run time, so the loop makes no tensor per step.
 */
export function timestepTensor(spec: TensorSpec, batch: number): TimestepTensor {
  const dims = spec.shape.length === 0 ? [] : typeof spec.shape[0] === 'number' && spec.shape[0] > 0 ? [spec.shape[0]] : [batch];
  const n = dims.length === 0 ? 1 : dims[0];
  switch (spec.type) {
    case 'int64': {
      const data = new BigInt64Array(n);
      // As diffusers' ONNX pipeline casts with np.array([t], dtype=int64): truncation.
      return { tensor: new ort.Tensor('int64', data, dims), set: (t) => void data.fill(BigInt(Math.trunc(t))) };
    }
    case 'int32': {
      const data = new Int32Array(n);
      return { tensor: new ort.Tensor('int32', data, dims), set: (t) => void data.fill(Math.trunc(t)) };
    }
    case 'float16': {
      const data = new Uint16Array(n);
      return { tensor: new ort.Tensor('float16', data, dims), set: (t) => void data.fill(floatToHalf(t)) };
    }
    default: {
      const data = new Float32Array(n);
      return { tensor: new ort.Tensor('float32', data, dims), set: (t) => void data.fill(t) };
    }
  }
}

/** The batch size a session was exported with, or undefined when it is symbolic. */
export function batchOf(spec: TensorSpec): number | undefined {
  const d = spec.shape[0];
  return typeof d === 'number' && d > 0 ? d : undefined;
}

/**
 * The runtime's share of a batch's time: every `session.run` (`runtimeMs`), the UNet's calls among them
 * (`unetMs`). Both come from the same measurement, so `unetMs` never exceeds `runtimeMs`.
 */
export class RunClock {
  runtimeMs = 0;
  unetMs = 0;
  /** The last call's time (a batch's calls run one after another). */
  private lastMs = 0;

  /** `fetches`: pre-allocated outputs onnxruntime writes into instead of making new tensors. */
  async run(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, fetches?: Record<string, ort.Tensor>) {
    const t0 = performance.now();
    const out = fetches ? await session.run(feeds, fetches) : await session.run(feeds);
    this.lastMs = performance.now() - t0;
    this.runtimeMs += this.lastMs;
    return out;
  }

  /** {@link run} for the UNet: its time counts in `unetMs` as well. */
  async runUnet(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, fetches?: Record<string, ort.Tensor>) {
    const out = await this.run(session, feeds, fetches);
    this.unetMs += this.lastMs;
    return out;
  }
}

/** Run the text encoder over prompts' ids (one call, or one per prompt for a fixed batch of 1); float32 rows out. */
export async function encodeText(model: DiffusionModel, prompts: number[][], clock: RunClock): Promise<Float32Array[]> {
  const { textEncoder } = model;
  const [rows] = await runTextEncoder(textEncoder, `${model.dir}/text_encoder/model.onnx`, model.tokenizer.maxLength, prompts, [textEncoder.lastHiddenState], clock);
  return rows;
}

/**
 * Run a text encoder over prompts' ids (one call, or one per group of its fixed batch) and read `outputs`: for
 * each output, one float32 row per prompt. `file` names the encoder in errors.
 */
export async function runTextEncoder(
  textEncoder: TextEncoderPart,
  file: string,
  seqLen: number,
  prompts: number[][],
  outputs: readonly TensorSpec[],
  clock: RunClock,
): Promise<Float32Array[][]> {
  const per = batchOf(textEncoder.inputIds) ?? prompts.length;
  const rows: Float32Array[][] = outputs.map(() => []);
  for (let start = 0; start < prompts.length; start += per) {
    const group = prompts.slice(start, start + per);
    if (group.length !== per) throw new Error(`${file} takes a fixed batch of ${per}`);
    const flat = group.flat();
    const ids =
      textEncoder.inputIds.type === 'int64'
        ? new ort.Tensor('int64', BigInt64Array.from(flat, (x) => BigInt(x)), [group.length, seqLen])
        : new ort.Tensor('int32', Int32Array.from(flat), [group.length, seqLen]);
    const feeds: Record<string, ort.Tensor> = { [textEncoder.inputIds.name]: ids };
    if (textEncoder.attentionMask) {
      const n = group.length * seqLen;
      feeds[textEncoder.attentionMask.name] =
        textEncoder.attentionMask.type === 'int64'
          ? new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [group.length, seqLen])
          : new ort.Tensor('int32', new Int32Array(n).fill(1), [group.length, seqLen]);
    }
    const out = await clock.run(textEncoder.session, feeds);
    outputs.forEach((output, k) => {
      const values = readFloat(out[output.name]);
      const rowLength = values.length / group.length;
      for (let i = 0; i < group.length; i++) rows[k].push(values.slice(i * rowLength, (i + 1) * rowLength));
    });
  }
  return rows;
}

/**
 * The UNet's rows: [uncond rows of the CFG jobs | cond rows of every job]. The cond rows are in image order (a
 * job's condRow = uncondRows + firstImage), so once guided they are the whole batch's prediction, with no copy.
 */
export interface RowPlan {
  /** Images of every job: the cond rows, and the latents' batch. */
  images: number;
  uncondRows: number;
  /** uncondRows + images. */
  batch: number;
}

/** One image's size in pixels, and of the latent the UNet denoises: [channels, latentH, latentW], perImage values. */
export interface ImageShape {
  width: number;
  height: number;
  channels: number;
  latentH: number;
  latentW: number;
  perImage: number;
}

/** The latent of a width × height image: one cell per latentFactor × latentFactor pixels. */
export function imageShape(model: DiffusionModel, width: number, height: number): ImageShape {
  const latentH = height / model.info.latentFactor;
  const latentW = width / model.info.latentFactor;
  return { width, height, channels: model.channels, latentH, latentW, perImage: model.channels * latentH * latentW };
}

/**
 * The UNet call's tensors and the buffers under them, made once a batch and refilled in place every step:
 * onnxruntime reads a tensor's data at run time, so a new ort.Tensor per step would only add garbage.
 */
export interface LoopBuffers {
  /** The UNet's sample input, every row, as float32. */
  sampleIn: Float32Array;
  /** sampleIn's cond rows: the scheduler writes the scaled latents straight in (they are in image order). */
  condRows: Float32Array;
  /** fp16 UNet: the copy of sampleIn its sample tensor reads. */
  sampleHalf?: Uint16Array;
  timestep: TimestepTensor;
  feeds: Record<string, ort.Tensor>;
  /** Pre-allocated UNet output: onnxruntime writes the prediction here instead of into a new tensor. */
  fetches: Record<string, ort.Tensor>;
  /** fp16 UNet: the output tensor's data, converted into noisePred after each call. */
  outHalf?: Uint16Array;
  /** The prediction, every row, as float32; guidance writes over its cond rows. */
  noisePred: Float32Array;
  /** noisePred's cond rows: the guided prediction of the whole batch. */
  guided: Float32Array;
  /** Where the scheduler writes x_{t−1} (step()'s `out`); it and the latents swap every step. */
  spare: Float32Array;
}

/**
 * The loop's {@link LoopBuffers}, zeroed, for this batch's rows and image size; the prompts, LCM's embedding and
 * SDXL's `text_embeds` and `time_ids` (`added`, by input name) fed as made: they are the same every step.
 */
export function prepareBuffers(
  unet: UnetPart,
  plan: RowPlan,
  shape: ImageShape,
  promptEmbeds: ort.Tensor,
  timestepCond?: ort.Tensor,
  added?: Readonly<Record<string, ort.Tensor>>,
): LoopBuffers {
  const { batch, uncondRows } = plan;
  const { perImage } = shape;
  const dims = [batch, shape.channels, shape.latentH, shape.latentW];
  const sampleType = unet.sample.type as FloatType;
  const sampleIn = new Float32Array(batch * perImage);
  const sampleHalf = sampleType === 'float16' ? new Uint16Array(batch * perImage) : undefined;
  const timestep = timestepTensor(unet.timestep, batch);
  const feeds: Record<string, ort.Tensor> = {
    [unet.sample.name]: floatTensor(sampleType, sampleIn, dims, sampleHalf),
    [unet.timestep.name]: timestep.tensor,
    [unet.encoderHiddenStates.name]: promptEmbeds,
  };
  if (unet.timestepCond && timestepCond) feeds[unet.timestepCond.name] = timestepCond;
  if (added) Object.assign(feeds, added);
  const outHalf = unet.output.type === 'float16' ? new Uint16Array(batch * perImage) : undefined;
  const noisePred = new Float32Array(batch * perImage);
  const unetOut = outHalf ? new ort.Tensor('float16', outHalf, dims) : new ort.Tensor('float32', noisePred, dims);
  return {
    sampleIn,
    condRows: sampleIn.subarray(uncondRows * perImage),
    sampleHalf,
    timestep,
    feeds,
    fetches: { [unet.output.name]: unetOut },
    outHalf,
    noisePred,
    guided: noisePred.subarray(uncondRows * perImage),
    spare: new Float32Array(plan.images * perImage),
  };
}

/**
 * Step 8, diffusers' `vae.decode(latents / scaling_factor)`, in chunks of the decoder's fixed batch when it has one,
 * in tiles above the model's native size (vae-tiling.ts); a pixel-space model's sample is the image already.
 * Returns planar [images, 3, height, width] in [-1, 1].
 */
export async function decodeLatents(model: DiffusionModel, latents: Float32Array, images: number, shape: ImageShape, clock: RunClock): Promise<Float32Array> {
  const vae = model.vaeDecoder;
  if (!vae) return latents;
  const { width, height, channels, latentH, latentW, perImage } = shape;
  const plane = width * height;
  const scaledLatents = new Float32Array(latents.length);
  for (let i = 0; i < latents.length; i++) scaledLatents[i] = latents[i] / model.scalingFactor;
  const vaeBatch = batchOf(vae.latentSample) ?? images;
  const pixels = new Float32Array(images * 3 * plane);
  for (let start = 0; start < images; start += vaeBatch) {
    const n = Math.min(vaeBatch, images - start);
    const chunk = scaledLatents.subarray(start * perImage, (start + n) * perImage);
    const decoded = await decodeInTiles(model, chunk, n, latentH, latentW, async (input, count, h, w) => {
      const out = await clock.run(vae.session, { [vae.latentSample.name]: floatTensor(vae.latentSample.type as FloatType, input, [count, channels, h, w]) });
      return readFloat(out[vae.sample.name]);
    });
    if (decoded.length !== n * 3 * plane) {
      throw new Error(`${model.dir}/vae_decoder/model.onnx: expected ${n}×3×${height}×${width} values, got ${decoded.length}`);
    }
    pixels.set(decoded, start * 3 * plane);
  }
  return pixels;
}

/**
 * img2img's encode, diffusers' `vae.encode(image).latent_dist` × scaling_factor (the ONNX pipeline: `vae_encoder(
 * sample=image)[0]` × scaling factor), in chunks of the encoder's fixed batch when it has one, in tiles above the
 * model's native size (vae-tiling.ts); a pixel-space model's "latent" is the image itself. `pixels`: planar [images, 3, height, width] in [-1, 1]. Returns [images, channels,
 * latentH, latentW]. A latent model without vae_encoder/ refuses, naming the folder.
 */
export async function encodeImages(model: DiffusionModel, pixels: Float32Array, images: number, shape: ImageShape, clock: RunClock): Promise<Float32Array> {
  if (!model.vaeDecoder) return pixels;
  const vae = model.vaeEncoder;
  if (!vae) throw new Error(`${model.dir}/vae_encoder/model.onnx: expected the vae_encoder ONNX model for img2img`);
  const { width, height, latentH, latentW, perImage } = shape;
  const plane = width * height;
  const vaeBatch = batchOf(vae.sample) ?? images;
  const latents = new Float32Array(images * perImage);
  for (let start = 0; start < images; start += vaeBatch) {
    const n = Math.min(vaeBatch, images - start);
    const chunk = pixels.subarray(start * 3 * plane, (start + n) * 3 * plane);
    const encoded = await encodeInTiles(model, chunk, n, height, width, async (input, count, h, w) => {
      const out = await clock.run(vae.session, { [vae.sample.name]: floatTensor(vae.sample.type as FloatType, input, [count, 3, h, w]) });
      return readFloat(out[vae.latent.name]);
    });
    // latent_parameters: per image, the mean's channels first, then the log-variance's.
    const outPerImage = vae.latentKind === 'parameters' ? 2 * perImage : perImage;
    if (encoded.length !== n * outPerImage) {
      throw new Error(`${vae.file}: expected ${n}×${outPerImage / (latentH * latentW)}×${latentH}×${latentW} values, got ${encoded.length}`);
    }
    for (let i = 0; i < n; i++) {
      const from = encoded.subarray(i * outPerImage, i * outPerImage + perImage);
      const to = latents.subarray((start + i) * perImage, (start + i + 1) * perImage);
      for (let k = 0; k < perImage; k++) to[k] = from[k] * model.scalingFactor;
    }
  }
  return latents;
}
