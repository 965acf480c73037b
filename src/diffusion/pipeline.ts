/**
 * txt2img and img2img, laid out as diffusers' StableDiffusionPipeline.__call__ (pipelines/stable_diffusion/
 * pipeline_onnx_stable_diffusion.py; img2img as pipeline_onnx_stable_diffusion_img2img.py): check inputs, plan the batch, encode prompts, timesteps, prepare latents, the
 * denoising loop written out step by step, decode, postprocess, and the model's safety checker when it has one. Latent diffusion (Rombach et al. 2022) with
 * classifier-free guidance (Ho & Salimans 2022); pixel-space models run the same loop on the image itself. Several
 * jobs can share one run: their images are rows of the same UNet calls. SDXL models encode their prompts with both
 * text encoders and add size conditioning (sdxl.ts); the rest of the loop is the same.
 */
import * as ort from 'onnxruntime-node';
import { Identifiers, UserError } from '../errors.js';
import { encodePng } from '../image/encode.js';
import { infotext, PARAMETERS_KEYWORD } from '../image/infotext.js';
import { withPngText } from '../image/png-text.js';
import { batchKey, checkInputs, invalid, show, type CheckedParams } from './check-inputs.js';
import type { DiffusionModel, FloatType, SdxlParts, UnetPart } from './model.js';
import {
  BatchNoise,
  batchOf,
  decodeLatents,
  encodeText,
  floatTensor,
  guidanceScaleEmbedding,
  imageShape,
  prepareBuffers,
  RunClock,
  type ImageShape,
  type LoopBuffers,
  type RowPlan,
} from './pipeline-steps.js';
import { prepareImg2imgLatents, readPictures, startTimesteps } from './img2img.js';
import { denoiseOnGpu, type GpuLoopHooks } from './gpu-loop.js';
import { checkPictures, resultOf, toPngs, toRgb } from './pipeline-output.js';
import { previewOf } from './preview.js';
import { upscalePicture } from './upscaler.js';
import { createScheduler, type Scheduler } from './schedulers/index.js';
import { encodeSdxlPrompts } from './sdxl.js';
import { fromHalf, guideInto, scaleInto, toHalf } from './tensor.js';
import type { GenerateOptions, GenerateParams, GenerateResult, GpuCopies, Preview, SchedulerName } from './types.js';

export { batchKey, checkInputs, LIMITS, type CheckedParams } from './check-inputs.js';
export { guidanceScaleEmbedding } from './pipeline-steps.js';

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

/** A job's place in the batch. Its rows are set by {@link planRows}; `error` once it fails or is cancelled. */
export interface Member {
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
  // A U through the model's upscaler/ denoises nothing: each such job runs alone, outside the loop.
  if (jobs.some((job) => job.params?.upscale === true)) {
    return Promise.all(jobs.map(async (job) => (job.params?.upscale === true ? upscaleJob(model, job) : (await generateBatch(model, [job]))[0])));
  }
  const started = performance.now();
  const outcomes: (BatchOutcome | undefined)[] = new Array(jobs.length);
  // 1. Check inputs: every job first; those that fail are answered without running.
  // 1b. img2img: each job's picture decoded; one that is not a picture fails that job alone.
  const { members, pictures } = await readPictures(checkMembers(model, jobs, outcomes), outcomes);
  if (members.length === 0) return outcomes as BatchOutcome[];
  const { steps, width, height, strength } = members[0].checked;
  const clock = new RunClock();
  const gpuCopies: GpuCopies | undefined = model.executionProvider === 'webgpu' ? { toHost: 0, toHostBytes: 0, toGpuBytes: 0 } : undefined;
  try {
    // 2. Call parameters: the scheduler, and whose rows are where, guidance on or off per job.
    const scheduler = schedulerFor(model, members[0].checked.scheduler);
    const plan = planRows(model.unet, members);
    // 3. Encode the prompts (SDXL: with both text encoders, plus its pooled text and size conditioning).
    const { promptEmbeds, added } = hasSdxl(model)
      ? await encodeSdxlPrompts(model, members, plan, { width, height }, clock)
      : { promptEmbeds: await encodePrompts(model, members, plan, clock), added: undefined };
    // 4. Timesteps (before the latents: a sigma schedule's init_noise_sigma comes from them).
    scheduler.setTimesteps(steps);
    //    img2img: diffusers' get_timesteps, the last floor(steps × strength) steps of the schedule.
    const { timesteps, loopSteps } = strength === undefined ? { timesteps: scheduler.timesteps, loopSteps: steps } : startTimesteps(scheduler, steps, strength);
    // 5. Latents: seeded noise × init_noise_sigma; img2img: the encoded pictures noised to the first timestep.
    const shape = imageShape(model, width, height);
    const { latents, noise } = pictures
      ? await prepareImg2imgLatents(model, members, pictures, shape, scheduler, timesteps[0], clock)
      : prepareLatents(members, shape, scheduler);
    // 6. LCM's guidance embedding, and the loop's buffers, made once for every step.
    const buffers = prepareBuffers(model.unet, plan, shape, promptEmbeds, guidanceCondition(model, members, plan), added);
    // 7. The denoising loop; on webgpu, with the latents kept on the GPU (gpu-loop.ts).
    const context = { unet: model.unet, scheduler, timesteps, members, shape, noise, buffers, clock, started, steps: loopSteps };
    const denoised = gpuCopies ? await denoiseOnGpu(context, latents, gpuHooks(context), gpuCopies) : await denoise(context, latents);
    // A signal that aborted during the last step still cancels: the job stopped wanting its pictures.
    cancelAborted(members);
    const finishing = members.filter((m) => !m.error);
    if (finishing.length > 0) {
      // 8. Decode and postprocess to RGB bytes.
      const pixels = await decodeLatents(model, denoised, plan.images, shape, clock);
      const rgb = toRgb(finishing, pixels, shape);
      // 9. The model's safety checker, when it has one: a flag per picture (what to do with it is the bot's rule).
      const safety = model.safetyChecker ? await checkPictures(model, finishing, pixels, rgb, shape, clock) : undefined;
      // 10. PNGs, each with its parameters (A1111's `parameters` text chunk).
      const pngs = await toPngs(model, finishing, rgb, shape);
      for (const [k, m] of finishing.entries()) {
        outcomes[m.index] = { ok: true, result: resultOf(model, m, pngs[k], clock, started, safety && { flagged: safety.flags[k], ms: safety.ms }, gpuCopies) };
      }
    }
  } catch (error) {
    // A failure of the shared work (runtime, decoder) is every remaining job's failure.
    for (const m of members) m.error ??= error as Error;
  }
  for (const m of members) if (m.error) outcomes[m.index] = { ok: false, error: m.error };
  return outcomes as BatchOutcome[];
}

/**
 * One U with the model's super-resolution network (upscaler.ts): the picture at 1 / scale of the asked size,
 * enlarged by the network, as a PNG with its parameters. Progress is one step; the safety checker is not run
 * again (the picture was checked when it was made, and an enlargement adds nothing to judge).
 */
async function upscaleJob(model: DiffusionModel, job: BatchJob): Promise<BatchOutcome> {
  const started = performance.now();
  const options = job.options ?? {};
  try {
    const checked = checkInputs(job.params, model.info);
    if (!model.upscaler) throw invalid(`Expected a model with an upscaler/ folder for \`upscale\`, got ${model.info.name} without one`);
    if (options.signal?.aborted) throw cancelled();
    const { width, height, prompt, negativePrompt, steps, scheduler, guidanceScale, seed } = checked;
    const runStarted = performance.now();
    const rgb = await upscalePicture(model.upscaler, checked.initImage!, width, height);
    const runtimeMs = performance.now() - runStarted;
    if (options.signal?.aborted) throw cancelled();
    options.onProgress?.({ step: 1, totalSteps: 1, elapsedMs: performance.now() - started });
    const karras = model.schedulerConfig.use_karras_sigmas === true;
    const text = infotext({ prompt, negativePrompt, steps, scheduler, karras, guidanceScale, seed, width, height, model: model.info.name, upscaler: model.upscaler.scale });
    const png = withPngText(await encodePng(rgb, width, height), { [PARAMETERS_KEYWORD]: text });
    const timings = { totalMs: performance.now() - started, runtimeMs, unetMs: 0 };
    return { ok: true, result: { images: [png], width, height, seed, steps, guidanceScale, scheduler, model: model.info.name, truncated: false, timings } };
  } catch (error) {
    return { ok: false, error: error as Error };
  }
}

function cancelled(): UserError {
  return new UserError(Identifiers.Cancelled, 'The job was cancelled');
}

/**
 * Step 1: {@link checkInputs} and the options of every job. A job that fails is answered in `outcomes` and left
 * out; the rest must share {@link batchKey} (a mix is the caller's bug, so it throws rather than answers).
 */
function checkMembers(model: DiffusionModel, jobs: readonly BatchJob[], outcomes: (BatchOutcome | undefined)[]): Member[] {
  const members: Member[] = [];
  for (let index = 0; index < jobs.length; index++) {
    const options = jobs[index].options ?? {};
    try {
      const checked = checkInputs(jobs[index].params, model.info);
      if (checked.initImage && model.vaeDecoder && !model.vaeEncoder) {
        throw invalid(`This model cannot start from a picture: ${model.info.name} has no vae_encoder/ folder (img2img needs vae_encoder/model.onnx)`);
      }
      const previewEvery = options.previewEvery ?? 1;
      if (!Number.isInteger(previewEvery) || previewEvery < 0) {
        throw invalid(`Expected \`previewEvery\` to be an integer of at least 0, got \`${show(previewEvery)}\``);
      }
      if (options.signal?.aborted) throw cancelled();
      members.push({ index, checked, options, previewEvery, doCfg: false, firstImage: 0, uncondRow: 0, condRow: 0, truncated: false });
    } catch (error) {
      outcomes[index] = { ok: false, error: error as Error };
    }
  }
  const keys = members.map((m) => batchKey(m.checked));
  if (keys.some((key) => key !== keys[0])) {
    throw new Error(`Expected jobs in one batch to share steps, scheduler and size, got ${keys.join(', ')}`);
  }
  return members;
}

/** The scheduler from the model's scheduler_config.json; a bad name or config key is the caller's error. */
function schedulerFor(model: DiffusionModel, name: SchedulerName): Scheduler {
  try {
    return createScheduler(name, model.schedulerConfig);
  } catch (error) {
    throw invalid((error as Error).message);
  }
}

/**
 * Step 2, diffusers' `do_classifier_free_guidance` per job: CFG when guidance > 1, except for models that embed the
 * guidance (LCM's timestep_cond), which take it through the embedding and run one half. Sets each job's rows.
 */
function planRows(unet: UnetPart, members: readonly Member[]): RowPlan {
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
  return { images, uncondRows, batch };
}

function hasSdxl(model: DiffusionModel): model is DiffusionModel & { sdxl: SdxlParts } {
  return model.sdxl !== undefined;
}

/**
 * Step 3, diffusers' `encode_prompt`: every prompt, and each CFG job's negative prompt, in one text encoder call,
 * then one row of encoder_hidden_states per UNet row, in the UNet's dtype. Sets each job's `truncated`.
 */
async function encodePrompts(model: DiffusionModel, members: readonly Member[], plan: RowPlan, clock: RunClock): Promise<ort.Tensor> {
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
  const embeddings = await encodeText(model, ids, clock);
  const seqLen = model.tokenizer.maxLength;
  const hidden = embeddings[0].length / seqLen;
  const ehs = new Float32Array(plan.batch * seqLen * hidden);
  members.forEach((m, k) => {
    for (let i = 0; i < m.checked.count; i++) {
      if (m.doCfg) ehs.set(embeddings[promptRow[k].uncond!], (m.uncondRow + i) * seqLen * hidden);
      ehs.set(embeddings[promptRow[k].cond], (m.condRow + i) * seqLen * hidden);
    }
  });
  return floatTensor(model.unet.sample.type as FloatType, ehs, [plan.batch, seqLen, hidden]);
}

/**
 * Step 5, diffusers' `prepare_latents` (pipelines/stable_diffusion/pipeline_stable_diffusion.py): `latents =
 * randn_tensor(shape, generator)`, image i of a job from its own generator (seed + i), the first draw of each, then
 * scaled by the scheduler's init_noise_sigma. The generators stay with the batch: the ancestral schedulers draw their
 * step noise from them afterwards, as diffusers' `scheduler.step(…, generator=generator)` does
 * (EulerAncestralDiscreteScheduler.step: `noise = randn_tensor(model_output.shape, generator=generator)`).
 */
function prepareLatents(members: readonly Member[], shape: ImageShape, scheduler: Scheduler): { latents: Float32Array; noise: BatchNoise } {
  const noise = BatchNoise.of(members);
  const latents = new Float32Array(members.reduce((n, m) => n + m.checked.count, 0) * shape.perImage);
  noise.fillNormal(latents);
  scaleInto(latents, scheduler.initNoiseSigma, latents);
  return { latents, noise };
}

/**
 * Step 6 for LCM-distilled UNets (diffusers' `timestep_cond`): each job's guidance embedding, w = guidance − 1, on
 * each of its rows. Other models take none.
 */
function guidanceCondition(model: DiffusionModel, members: readonly Member[], plan: RowPlan): ort.Tensor | undefined {
  if (!model.unet.timestepCond) return undefined;
  const dim = model.timestepCondDim;
  const cond = new Float32Array(plan.batch * dim);
  for (const m of members) {
    const row = guidanceScaleEmbedding(m.checked.guidanceScale - 1, dim);
    for (let i = 0; i < m.checked.count; i++) cond.set(row, (m.condRow + i) * dim);
  }
  return floatTensor(model.unet.sample.type as FloatType, cond, [plan.batch, dim]);
}

/** What the denoising loop reads (the cpu loop here, the webgpu loop in gpu-loop.ts). */
export interface LoopContext {
  unet: UnetPart;
  scheduler: Scheduler;
  /** The timesteps the loop visits: the scheduler's, or their end for img2img. */
  timesteps: Float64Array;
  members: readonly Member[];
  shape: ImageShape;
  noise: BatchNoise;
  buffers: LoopBuffers;
  clock: RunClock;
  /** performance.now() when the batch began (progress reports elapsed time from it). */
  started: number;
  /** User-visible steps that run (a scheduler may run the UNet more often); img2img: floor(steps × strength). */
  steps: number;
}

/**
 * Step 7, diffusers' denoising loop, for every job's rows at once. A job whose signal aborts drops out between
 * steps (its rows still run: the batch's shape is fixed); the loop ends when none is left. Returns the last latents.
 */
async function denoise(context: LoopContext, initial: Float32Array): Promise<Float32Array> {
  const { unet, scheduler, timesteps, members, noise, buffers, clock, steps, shape } = context;
  let latents = initial;
  let spare = buffers.spare;
  let reported = 0;
  for (let i = 0; i < timesteps.length; i++) {
    if (cancelAborted(members) === 0) break;
    const t = timesteps[i];
    // 7.1 Expand the latents (CFG jobs' images go in twice) and scale them for the scheduler.
    expandModelInput(context, latents, t);
    // 7.2 Predict the noise residual (onnxruntime writes it into the fetches; an fp16 one is converted).
    if (buffers.sampleHalf) toHalf(buffers.sampleIn, buffers.sampleHalf);
    buffers.timestep.set(t);
    await clock.runUnet(unet.session, buffers.feeds, buffers.fetches);
    if (buffers.outHalf) fromHalf(buffers.outHalf, buffers.noisePred);
    // 7.3 Split and guide.
    const guided = guide(context);
    // 7.4 Compute the previous noisy sample x_t → x_{t−1}, with the seeded generators for any noise it adds.
    const result = scheduler.step(guided, t, latents, noise, spare);
    if (result.prevSample === spare) spare = latents;
    latents = result.prevSample;
    // 7.5 Progress: one call per user-visible step, as a scheduler may run the UNet more than once a step (Heun:
    //     twice; PNDM's Runge–Kutta warm-up: more).
    const done = Math.floor(((i + 1) * steps) / timesteps.length);
    const estimate = result.predOriginalSample ?? latents;
    reported = reportProgress(context, reported, done, (m) => previewOf(estimate, m.firstImage, shape.channels, shape.latentW, shape.latentH));
  }
  return latents;
}

/** Gives `cancelled` to each running job whose signal has aborted; returns how many still run. */
function cancelAborted(members: readonly Member[]): number {
  // A plain loop, not a filter: it runs every step, and would make an array each time.
  let running = 0;
  for (const m of members) {
    if (!m.error && m.options.signal?.aborted) m.error = cancelled();
    if (!m.error) running++;
  }
  return running;
}

/**
 * 7.1, diffusers' `torch.cat([latents] * 2)` then `scale_model_input`: the scheduler writes the scaled latents into
 * the cond rows (Euler-family schedulers divide by sqrt(sigma² + 1)); each CFG job's uncond rows copy its cond rows.
 */
function expandModelInput({ scheduler, members, buffers, shape }: LoopContext, latents: Float32Array, t: number): void {
  const scaled = scheduler.scaleModelInput(latents, t, buffers.condRows);
  if (scaled !== buffers.condRows) buffers.condRows.set(scaled);
  for (const m of members) {
    if (!m.doCfg) continue;
    const from = m.condRow * shape.perImage;
    buffers.sampleIn.copyWithin(m.uncondRow * shape.perImage, from, from + m.checked.count * shape.perImage);
  }
}

/**
 * 7.3, diffusers' `noise_pred.chunk(2)` and uncond + scale × (cond − uncond), per CFG job, written over its cond
 * rows; jobs without guidance are there already. Returns the cond rows: the guided prediction of the whole batch.
 */
function guide({ members, buffers, shape }: LoopContext): Float32Array {
  const { noisePred } = buffers;
  for (const m of members) {
    if (!m.doCfg) continue;
    const cond = m.condRow * shape.perImage;
    guideInto(noisePred, m.uncondRow * shape.perImage, cond, m.checked.count * shape.perImage, m.checked.guidanceScale, noisePred, cond);
  }
  return buffers.guided;
}

/**
 * 7.5: progress up to step `done` for every running job that listens, with a cheap preview of its first image's
 * current clean estimate (`preview`) every `previewEvery` steps and at the last. Returns the last step reported.
 */
function reportProgress({ members, steps, started }: LoopContext, reported: number, done: number, preview: (m: Member) => Preview | undefined): number {
  while (reported < done) {
    reported++;
    for (const m of members) {
      if (m.error || !m.options.onProgress) continue;
      m.options.onProgress({
        step: reported,
        totalSteps: steps,
        elapsedMs: performance.now() - started,
        preview: previewDue(m, reported, steps) ? preview(m) : undefined,
      });
    }
  }
  return reported;
}

/** Whether job m shows a preview at user-visible step `step` of `steps`: every `previewEvery` steps, and the last. */
function previewDue(m: Member, step: number, steps: number): boolean {
  return m.previewEvery > 0 && (step % m.previewEvery === 0 || step === steps);
}

/** The cpu loop's rules, for the webgpu loop (gpu-loop.ts): one owner for cancelling, expanding and reporting. */
function gpuHooks(context: LoopContext): GpuLoopHooks {
  return {
    running: () => cancelAborted(context.members),
    expand: (latents, t) => expandModelInput(context, latents, t),
    report: (reported, done, preview) => reportProgress(context, reported, done, preview),
    previewDue: (m, step) => previewDue(m, step, context.steps),
  };
}
