/**
 * txt2img: the denoising loop written out in full, step by step as in diffusers'
 * pipelines/stable_diffusion/pipeline_onnx_stable_diffusion.py. Latent diffusion (Rombach et al. 2022) with
 * classifier-free guidance (Ho & Salimans 2022); pixel-space models run the same loop on the image itself.
 */
import * as ort from 'onnxruntime-node';
import { Identifiers, UserError } from '../errors.js';
import { batchKey, checkInputs, invalid, show, type CheckedParams } from './check-inputs.js';
import { encodePng, planarToRgb } from '../image/encode.js';
import type { DiffusionModel, FloatType, TensorSpec } from './model.js';
import { previewOf } from './preview.js';
import { Rng } from './rng.js';
import { createScheduler } from './schedulers/index.js';
import type { NoiseSource } from './schedulers/types.js';
import { floatToHalf, fromHalf, guideInto, scaleInto, toHalf } from './tensor.js';
import type { GenerateOptions, GenerateParams, GenerateResult } from './types.js';

export { batchKey, checkInputs, LIMITS, type CheckedParams } from './check-inputs.js';

/**
 * Noise for a batch where every image has its own generator (a job's image i: seed + i mod 2^32), so an image in
 * a batch gets the noise it would get alone.
 */
class BatchNoise implements NoiseSource {
  private readonly rngs: Rng[];
  constructor(seeds: readonly number[]) {
    this.rngs = seeds.map((seed) => new Rng(seed));
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

/**
 * The timestep as the UNet's metadata asks for it: dtype int64/int32/float32/float16, shape [], [1] or [batch].
 * Made once per job; `set(t)` refills its data before each call (onnxruntime reads the typed array at run time), so
 * the loop makes no tensor per step.
 */
function timestepTensor(spec: TensorSpec, batch: number): { tensor: ort.Tensor; set(t: number): void } {
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

function batchOf(spec: TensorSpec): number | undefined {
  const d = spec.shape[0];
  return typeof d === 'number' && d > 0 ? d : undefined;
}

function cancelled(): UserError {
  return new UserError(Identifiers.Cancelled, 'The job was cancelled');
}

/**
 * Make pictures. Validates with {@link checkInputs}, then runs the loop in {@link generateBatch}; rejects with a
 * UserError (`cancelled`) when `options.signal` aborts between steps.
 */
export async function generate(model: DiffusionModel, params: GenerateParams, options: GenerateOptions = {}): Promise<GenerateResult> {
  const [outcome] = await generateBatch(model, [{ params, options }]);
  if (!outcome.ok) throw outcome.error;
  return outcome.result;
}

/** One job in a shared batch. */
export interface BatchJob {
  params: GenerateParams;
  options?: GenerateOptions;
}

export type BatchOutcome = { ok: true; result: GenerateResult } | { ok: false; error: Error };

/** A job's place in the batch. */
interface Member {
  index: number;
  checked: CheckedParams;
  options: GenerateOptions;
  previewEvery: number;
  doCfg: boolean;
  /** First image of this job among all images of the batch. */
  firstImage: number;
  /** Row of its first unconditional UNet input (CFG jobs only). */
  uncondRow: number;
  /** Row of its first conditional UNet input. */
  condRow: number;
  truncated: boolean;
  error?: Error;
}

/**
 * Run several jobs through the same UNet calls: one row per image (two with classifier-free guidance), each job
 * with its own prompt, seed, guidance, progress and AbortSignal. Every job's pictures are what it would get
 * alone (batched calls may round differently in the last bit). Jobs that fail validation or are cancelled get
 * their error; the others go on. Timings are the batch's: `runtimeMs` and `unetMs` are shared.
 *
 * Jobs must share {@link batchKey}; a mix is a programming error and throws.
 */
export async function generateBatch(model: DiffusionModel, jobs: readonly BatchJob[]): Promise<BatchOutcome[]> {
  const started = performance.now();
  const outcomes: (BatchOutcome | undefined)[] = new Array(jobs.length);

  // 1. Validate every job first; those that fail are answered without running.
  const members: Member[] = [];
  for (let j = 0; j < jobs.length; j++) {
    const options = jobs[j].options ?? {};
    try {
      const checked = checkInputs(jobs[j].params, model.info);
      const previewEvery = options.previewEvery ?? 1;
      if (!Number.isInteger(previewEvery) || previewEvery < 0) {
        throw invalid(`Expected \`previewEvery\` to be an integer of at least 0, got \`${show(previewEvery)}\``);
      }
      if (options.signal?.aborted) throw cancelled();
      members.push({ index: j, checked, options, previewEvery, doCfg: false, firstImage: 0, uncondRow: 0, condRow: 0, truncated: false });
    } catch (error) {
      outcomes[j] = { ok: false, error: error as Error };
    }
  }
  if (members.length === 0) return outcomes as BatchOutcome[];
  const key = batchKey(members[0].checked);
  if (members.some((m) => batchKey(m.checked) !== key)) {
    throw new Error(`Expected jobs in one batch to share steps, scheduler and size, got ${members.map((m) => batchKey(m.checked)).join(', ')}`);
  }
  const { steps, width, height } = members[0].checked;

  let runtimeMs = 0;
  let unetMs = 0;
  const run = async (session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, fetches?: Record<string, ort.Tensor>) => {
    const t0 = performance.now();
    const out = fetches ? await session.run(feeds, fetches) : await session.run(feeds);
    runtimeMs += performance.now() - t0;
    return out;
  };
  const fail = (member: Member, error: Error) => {
    member.error ??= error;
  };
  const live = () => members.filter((m) => !m.error);

  try {
    // 2. Scheduler from the model's scheduler_config.json (a bad name or config key is the caller's error).
    let scheduler;
    try {
      scheduler = createScheduler(members[0].checked.scheduler, model.schedulerConfig);
    } catch (error) {
      throw invalid((error as Error).message);
    }

    // 3. Guidance mode. As diffusers: CFG when guidance > 1, except for models that embed the guidance (LCM's
    //    timestep_cond), which take it through the embedding and run one half. Rows: [uncond of CFG jobs, cond of all].
    const { unet } = model;
    let images = 0;
    let uncondRows = 0;
    for (const m of members) {
      m.doCfg = m.checked.guidanceScale > 1 && !unet.timestepCond;
      m.firstImage = images;
      m.uncondRow = uncondRows;
      images += m.checked.count;
      if (m.doCfg) uncondRows += m.checked.count;
    }
    for (const m of members) m.condRow = uncondRows + m.firstImage;
    const batch = uncondRows + images;
    const fixedBatch = batchOf(unet.sample);
    if (fixedBatch !== undefined && fixedBatch !== batch) {
      throw invalid(`This model's UNet takes a fixed batch of ${fixedBatch}; this job needs ${batch} (${images} image(s)${uncondRows ? ', with guidance' : ''})`);
    }

    // 4. Encode the prompts (and the negative prompts of CFG jobs) in one text encoder call.
    const ids: number[][] = [];
    const promptRow: { uncond?: number; cond: number }[] = [];
    for (const m of members) {
      const positive = model.tokenizer.encode(m.checked.prompt);
      const negative = m.doCfg ? model.tokenizer.encode(m.checked.negativePrompt) : undefined;
      m.truncated = positive.truncated || (negative?.truncated ?? false);
      const rows: { uncond?: number; cond: number } = { cond: ids.push(positive.ids) - 1 };
      if (negative) rows.uncond = ids.push(negative.ids) - 1;
      promptRow.push(rows);
    }
    const embeddings = await encodeText(model, ids, run);
    const seqLen = model.tokenizer.maxLength;
    const hidden = embeddings[0].length / seqLen;
    const ehs = new Float32Array(batch * seqLen * hidden);
    members.forEach((m, k) => {
      for (let i = 0; i < m.checked.count; i++) {
        if (m.doCfg) ehs.set(embeddings[promptRow[k].uncond!], (m.uncondRow + i) * seqLen * hidden);
        ehs.set(embeddings[promptRow[k].cond], (m.condRow + i) * seqLen * hidden);
      }
    });
    const sampleType = unet.sample.type as FloatType;
    const ehsTensor = floatTensor(sampleType, ehs, [batch, seqLen, hidden]);

    // 5. LCM: the guidance embedding of each job, one row per UNet row.
    let condTensor: ort.Tensor | undefined;
    if (unet.timestepCond) {
      const dim = model.timestepCondDim;
      const cond = new Float32Array(batch * dim);
      for (const m of members) {
        const row = guidanceScaleEmbedding(m.checked.guidanceScale - 1, dim);
        for (let i = 0; i < m.checked.count; i++) cond.set(row, (m.condRow + i) * dim);
      }
      condTensor = floatTensor(sampleType, cond, [batch, dim]);
    }

    // 6. Timesteps.
    scheduler.setTimesteps(steps);
    const timesteps = scheduler.timesteps;

    // 7. Initial noise: image i of a job from its seed + i, scaled by the scheduler's init_noise_sigma.
    const { channels } = model;
    const latentH = height / model.info.latentFactor;
    const latentW = width / model.info.latentFactor;
    const perImage = channels * latentH * latentW;
    const noise = new BatchNoise(members.flatMap((m) => Array.from({ length: m.checked.count }, (_, i) => (m.checked.seed + i) >>> 0)));
    let latents: Float32Array<ArrayBufferLike> = new Float32Array(images * perImage);
    // The scheduler writes x_{t−1} here (step()'s `out`); the two buffers swap every step, so the loop allocates none.
    let spare: Float32Array<ArrayBufferLike> = new Float32Array(images * perImage);
    noise.fillNormal(latents);
    // In a small helper rather than inline: V8 optimizes a loop in this long function late, and it runs once a job.
    scaleInto(latents, scheduler.initNoiseSigma, latents);

    // Buffers reused by every step: the UNet input (all rows), its fp16 form, the prediction, the guided prediction.
    const sampleIn = new Float32Array(batch * perImage);
    const condRows = sampleIn.subarray(uncondRows * perImage);
    const sampleHalf = sampleType === 'float16' ? new Uint16Array(batch * perImage) : undefined;
    const outFloat = sampleType === 'float16' ? new Float32Array(batch * perImage) : undefined;
    // The UNet writes its prediction into this tensor (onnxruntime fills pre-allocated outputs) instead of a new one.
    const unetOut =
      unet.output.type === 'float16'
        ? new ort.Tensor('float16', new Uint16Array(batch * perImage), [batch, channels, latentH, latentW])
        : new ort.Tensor('float32', new Float32Array(batch * perImage), [batch, channels, latentH, latentW]);
    const sampleDims = [batch, channels, latentH, latentW];
    // The step's tensors are made once over those buffers and refilled in place: onnxruntime reads their data at
    // run time, so a new ort.Tensor per step would only add garbage.
    const sampleTensor = floatTensor(sampleType, sampleIn, sampleDims, sampleHalf);
    const timestep = timestepTensor(unet.timestep, batch);
    const feeds: Record<string, ort.Tensor> = {
      [unet.sample.name]: sampleTensor,
      [unet.timestep.name]: timestep.tensor,
      [unet.encoderHiddenStates.name]: ehsTensor,
    };
    if (condTensor && unet.timestepCond) feeds[unet.timestepCond.name] = condTensor;
    const fetches = { [unet.output.name]: unetOut };

    // 8. Denoising loop. One progress call per user-visible step: a scheduler may run the UNet more than once per
    //    step (Heun: twice; PNDM's Runge–Kutta warm-up: more).
    let reported = 0;
    for (let i = 0; i < timesteps.length; i++) {
      // Plain loops over members here and below: live() would make two arrays a step.
      let running = 0;
      for (const m of members) {
        if (!m.error && m.options.signal?.aborted) fail(m, cancelled());
        if (!m.error) running++;
      }
      if (running === 0) break;
      const t = timesteps[i];

      // 8a. Scale the input (Euler-family schedulers divide by sqrt(sigma² + 1)); CFG jobs' images go in twice.
      //     The cond rows take the scaled images straight from the scheduler (they are in image order); the
      //     uncond rows are copies of them.
      const scaled = scheduler.scaleModelInput(latents, t, condRows);
      if (scaled !== condRows) condRows.set(scaled);
      for (const m of members) {
        if (!m.doCfg) continue;
        const from = m.condRow * perImage;
        sampleIn.copyWithin(m.uncondRow * perImage, from, from + m.checked.count * perImage);
      }

      // 8b. Predict the noise residual.
      if (sampleHalf) toHalf(sampleIn, sampleHalf);
      timestep.set(t);
      const t0 = performance.now();
      await run(unet.session, feeds, fetches);
      unetMs += performance.now() - t0;
      const modelOut = readFloat(unetOut, outFloat);

      // 8c. Guidance, per job: uncond + scale × (cond − uncond), written over the job's cond rows. Those rows are
      //     in image order (condRow = uncondRows + firstImage), so they are the guided prediction of the whole batch
      //     with no copy; jobs without guidance are there already. The output buffer is ours (refilled every call).
      for (const m of members) {
        if (!m.doCfg) continue;
        guideInto(modelOut, m.uncondRow * perImage, m.condRow * perImage, m.checked.count * perImage, m.checked.guidanceScale, modelOut, m.condRow * perImage);
      }
      const guided = modelOut.subarray(uncondRows * perImage);

      // 8d. One scheduler step: x_t → x_{t−1}, with the seeded generators for any noise it adds.
      const result = scheduler.step(guided, t, latents, noise, spare);
      if (result.prevSample === spare) spare = latents;
      latents = result.prevSample;

      // 8e. Progress, with a cheap preview of each job's current estimate of its first clean image.
      const done = Math.floor(((i + 1) * steps) / timesteps.length);
      while (reported < done) {
        reported++;
        for (const m of members) {
          if (m.error || !m.options.onProgress) continue;
          const wantPreview = m.previewEvery > 0 && (reported % m.previewEvery === 0 || reported === steps);
          const estimate = result.predOriginalSample ?? latents;
          m.options.onProgress({
            step: reported,
            totalSteps: steps,
            elapsedMs: performance.now() - started,
            preview: wantPreview ? previewOf(estimate, m.firstImage, channels, latentW, latentH) : undefined,
          });
        }
      }
    }
    for (const m of live()) if (m.options.signal?.aborted) fail(m, cancelled());
    const finishing = live();

    // 9. Decode: latents / scaling_factor through the VAE (latent models), or the sample itself (pixel-space).
    const plane = width * height;
    let pixels: Float32Array<ArrayBufferLike> = latents;
    if (model.vaeDecoder && finishing.length > 0) {
      const vae = model.vaeDecoder;
      const scaledLatents = new Float32Array(latents.length);
      for (let i = 0; i < latents.length; i++) scaledLatents[i] = latents[i] / model.scalingFactor;
      const vaeBatch = batchOf(vae.latentSample) ?? images;
      pixels = new Float32Array(images * 3 * plane);
      for (let start = 0; start < images; start += vaeBatch) {
        const n = Math.min(vaeBatch, images - start);
        const chunk = scaledLatents.subarray(start * perImage, (start + n) * perImage);
        const out = await run(vae.session, {
          [vae.latentSample.name]: floatTensor(vae.latentSample.type as FloatType, chunk, [n, channels, latentH, latentW]),
        });
        const decoded = readFloat(out[vae.sample.name]);
        if (decoded.length !== n * 3 * plane) {
          throw new Error(`${model.dir}/vae_decoder/model.onnx: expected ${n}×3×${height}×${width} values, got ${decoded.length}`);
        }
        pixels.set(decoded, start * 3 * plane);
      }
    }

    // 10. To PNG: clip(x / 2 + 0.5, 0, 1) × 255, as diffusers' postprocess. Every image of the batch at once:
    //     sharp encodes on libuv's thread pool, so several images share the cores instead of waiting in turn.
    const encoded = await Promise.all(
      finishing.map((m) =>
        Promise.all(Array.from({ length: m.checked.count }, (_, i) => encodePng(planarToRgb(pixels, (m.firstImage + i) * 3 * plane, width, height), width, height))),
      ),
    );
    for (const [k, m] of finishing.entries()) {
      const pngs = encoded[k];
      const { seed, guidanceScale, scheduler: name } = m.checked;
      outcomes[m.index] = {
        ok: true,
        result: {
          images: pngs,
          width,
          height,
          seed,
          steps,
          guidanceScale,
          scheduler: name,
          model: model.info.name,
          truncated: m.truncated,
          timings: { totalMs: performance.now() - started, runtimeMs, unetMs },
        },
      };
    }
  } catch (error) {
    // A failure of the shared work (runtime, decoder) is every remaining job's failure.
    for (const m of live()) fail(m, error as Error);
  }
  for (const m of members) if (m.error) outcomes[m.index] = { ok: false, error: m.error };
  return outcomes as BatchOutcome[];
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
    const feeds: Record<string, ort.Tensor> = { [textEncoder.inputIds.name]: ids };
    if (textEncoder.attentionMask) {
      const n = group.length * seqLen;
      feeds[textEncoder.attentionMask.name] =
        textEncoder.attentionMask.type === 'int64'
          ? new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [group.length, seqLen])
          : new ort.Tensor('int32', new Int32Array(n).fill(1), [group.length, seqLen]);
    }
    const out = await run(textEncoder.session, feeds);
    const hidden = readFloat(out[textEncoder.lastHiddenState.name]);
    const rowLength = hidden.length / group.length;
    for (let i = 0; i < group.length; i++) rows.push(hidden.slice(i * rowLength, (i + 1) * rowLength));
  }
  return rows;
}
