/**
 * The denoising loop on the webgpu provider, with the latents and the UNet's prediction kept in GPU buffers between
 * steps. The steps are pipeline.ts's (diffusers' loop): expand and scale, UNet, split and guide, scheduler step,
 * progress; here guidance and the step run as one small ONNX graph on the GPU (gpu-graphs.ts) when the scheduler's
 * step is a {@link LinearStep} (Euler, DDIM with η = 0), so a step copies nothing of latent size between host and
 * GPU: the prompts' embeddings go up once, the last latents come down once, a preview reads back only its image's
 * three RGB planes. Other schedulers (ancestral, multistep, Heun, …) keep their step in JS: the GPU guides, the
 * guided prediction (one row per image) comes down, the next input goes up.
 *
 * Pictures match the cpu loop's within float32 rounding (the GPU's kernels and the step's algebra round
 * differently); the cpu loop in pipeline.ts stays as it was, and only webgpu runs this one.
 */
import * as ort from 'onnxruntime-node';
import { gpuGraphsFor, type GpuGraphs, type StepScalar } from './gpu-graphs.js';
import type { FloatType } from './model.js';
import type { LoopContext, Member } from './pipeline.js';
import type { ImageShape, LoopBuffers, RunClock } from './pipeline-steps.js';
import { previewOf, previewOfRgbPlanes } from './preview.js';
import type { LinearStep, Scheduler } from './schedulers/types.js';
import { toHalf } from './tensor.js';
import type { GpuCopies, Preview } from './types.js';

/** What the loop reads: pipeline.ts's LoopContext (progress timing stays with the hooks). */
export type GpuLoopContext = Omit<LoopContext, 'started'>;

/** pipeline.ts's own step helpers, so that both loops share one rule for cancelling, expanding and reporting. */
export interface GpuLoopHooks {
  /** Gives `cancelled` to each job whose signal aborted; returns how many still run. */
  running(): number;
  /** 7.1: the latents expanded and scaled for timestep t into buffers.sampleIn (the cpu loop's expandModelInput). */
  expand(latents: Float32Array, t: number): void;
  /** 7.5: progress up to step `done`, each preview from `preview`; returns the last step reported. */
  report(reported: number, done: number, preview: (m: Member) => Preview | undefined): number;
  /** Whether job m shows a preview at user-visible step `step`. */
  previewDue(m: Member, step: number): boolean;
}

/** Step 7 on webgpu; returns the last latents, on the host, and counts what crossed between host and GPU. */
export async function denoiseOnGpu(context: GpuLoopContext, initial: Float32Array, hooks: GpuLoopHooks, copies: GpuCopies): Promise<Float32Array> {
  const { unet, scheduler, timesteps, members, shape, buffers, clock, steps } = context;
  const types = { sample: unet.sample.type as FloatType, hidden: unet.encoderHiddenStates.type as FloatType, output: unet.output.type as FloatType };
  const graphs = await gpuGraphsFor(unet.session, types, shape.channels);
  const rows = layoutOf(members);
  const images = rows.uncondIndex.length;
  const latentDims = [images, shape.channels, shape.latentH, shape.latentW];
  const latentBytes = images * shape.perImage * 4;
  const rowBytes = rows.expandIndex.length * shape.perImage * (types.sample === 'float16' ? 2 : 4);
  // Per step, besides what is counted: the timestep, the rows' indices and guidance, the step's 8 coefficients
  // (bytes, not latents) go up as cpu tensors.
  const fixed: Record<string, ort.Tensor> = {
    uncond_index: int64(rows.uncondIndex),
    cond_index: int64(rows.condIndex),
    guidance: new ort.Tensor('float32', rows.guidance, [images, 1, 1, 1]),
    expand_index: int64(rows.expandIndex),
  };
  const scalars = Object.fromEntries(STEP_SCALARS.map((name) => [name, new ort.Tensor('float32', new Float32Array(1), [])])) as Record<StepScalar, ort.Tensor>;
  const feeds = { ...buffers.feeds };
  // Made on the GPU once: the prompts' embeddings are the same every step.
  const hidden = await upload(graphs, buffers.feeds[unet.encoderHiddenStates.name], clock, copies);
  feeds[unet.encoderHiddenStates.name] = hidden;
  let latents: ort.Tensor = new ort.Tensor('float32', initial, latentDims);
  let latentsOnHost: Float32Array | undefined = initial;
  let denoised: ort.Tensor | undefined;
  let spare = buffers.spare;
  let reported = 0;
  let linear: boolean | undefined;
  const dispose = (tensor: ort.Tensor | undefined) => {
    if (tensor && tensor.location === 'gpu-buffer') tensor.dispose();
  };
  try {
    for (let i = 0; i < timesteps.length; i++) {
      if (hooks.running() === 0) break;
      const t = timesteps[i];
      // 7.1 The first step (and every step of a JS-stepped scheduler): the input made on the host and sent up.
      if (feeds[unet.sample.name].location !== 'gpu-buffer') {
        hooks.expand(latentsOnHost!, t);
        if (buffers.sampleHalf) toHalfInto(buffers);
        copies.toGpuBytes += rowBytes;
      }
      // 7.2 Predict the noise residual; its output stays in a GPU buffer.
      buffers.timestep.set(t);
      const out = await clock.runUnet(unet.session, feeds);
      const prediction = out[unet.output.name];
      if (prediction.location !== 'gpu-buffer') countRead(copies, prediction);
      // 7.3 + 7.4 Guide, and step where the scheduler's step is linear.
      const coefficients = linear === false ? undefined : scheduler.linearStep?.(t);
      linear ??= coefficients !== undefined;
      const nextScale = coefficients && i + 1 < timesteps.length ? scaleAt(scheduler, timesteps[i + 1]) : 1;
      setScalars(scalars, coefficients ?? GUIDE_ONLY, nextScale);
      const stepped = await clock.run(graphs.step, { noise_pred: prediction, latents, ...fixed, ...scalars });
      dispose(prediction);
      if (linear) {
        dispose(latents);
        dispose(denoised);
        if (latentsOnHost) copies.toGpuBytes += latentBytes; // the first step's latents went up with that run
        latents = stepped.latents_out;
        latentsOnHost = undefined;
        denoised = stepped.denoised;
        dispose(feeds[unet.sample.name]);
        feeds[unet.sample.name] = stepped.sample_out;
      } else {
        // The JS step: the guided prediction comes down, the scheduler steps on the host, the next input goes up.
        dispose(stepped.sample_out);
        dispose(stepped.denoised);
        const guided = await download(graphs, stepped.latents_out, clock, copies);
        dispose(stepped.latents_out);
        if (latents.location !== 'gpu-buffer') copies.toGpuBytes += latentBytes;
        const result = scheduler.step(guided, t, latentsOnHost!, context.noise, spare);
        if (result.prevSample === spare) spare = latentsOnHost!;
        latentsOnHost = result.prevSample;
        latents = new ort.Tensor('float32', latentsOnHost, latentDims);
        feeds[unet.sample.name] = buffers.feeds[unet.sample.name];
        denoised = undefined;
        const estimate = result.predOriginalSample ?? latentsOnHost;
        const done = Math.floor(((i + 1) * steps) / timesteps.length);
        reported = hooks.report(reported, done, (m) => previewOfHost(estimate, m, shape));
        continue;
      }
      // 7.5 Progress; a preview reads back only the RGB planes of the images whose jobs show one now.
      const done = Math.floor(((i + 1) * steps) / timesteps.length);
      const previews = await gpuPreviews(graphs, members, hooks, reported, done, denoised!, shape, clock, copies);
      reported = hooks.report(reported, done, (m) => previews.get(m));
    }
    return latentsOnHost ?? (await download(graphs, latents, clock, copies));
  } finally {
    dispose(latents);
    dispose(denoised);
    if (feeds[unet.sample.name] !== buffers.feeds[unet.sample.name]) dispose(feeds[unet.sample.name]);
    dispose(hidden);
  }
}

const STEP_SCALARS: readonly StepScalar[] = ['x0_sample', 'x0_output', 'clip_min', 'clip_max', 'prev_sample', 'prev_output', 'prev_x0', 'next_scale'];

/** The step graph's coefficients that make `latents_out` the guided prediction itself. */
const GUIDE_ONLY: LinearStep = { x0Sample: 0, x0Output: 0, prevSample: 0, prevOutput: 1, prevX0: 0 };

function setScalars(scalars: Record<StepScalar, ort.Tensor>, c: LinearStep, nextScale: number): void {
  const set = (name: StepScalar, value: number) => void ((scalars[name].data as Float32Array)[0] = value);
  set('x0_sample', c.x0Sample);
  set('x0_output', c.x0Output);
  // No clip: the float32 range, which Clip passes through unchanged.
  set('clip_min', c.clip === undefined ? -3.4028234663852886e38 : -c.clip);
  set('clip_max', c.clip === undefined ? 3.4028234663852886e38 : c.clip);
  set('prev_sample', c.prevSample);
  set('prev_output', c.prevOutput);
  set('prev_x0', c.prevX0);
  set('next_scale', nextScale);
}

const ONE = Float32Array.of(1);
const scaled = new Float32Array(1);

/** The scheduler's input scaling at `t` (1 / sqrt(σ² + 1) for the Euler family, 1 for DDIM), from its own method. */
function scaleAt(scheduler: Scheduler, t: number): number {
  return scheduler.scaleModelInput(ONE, t, scaled)[0];
}

/**
 * Where each image's rows are in the UNet's batch: its uncond row (its own cond row for a job without guidance, with
 * guidance 1, so that u + 1·(c − u) = c), its cond row, its guidance; and for each UNet row, the image it repeats.
 */
function layoutOf(members: readonly Member[]): { uncondIndex: number[]; condIndex: number[]; guidance: Float32Array; expandIndex: number[] } {
  const uncondIndex: number[] = [];
  const condIndex: number[] = [];
  const guidance: number[] = [];
  const uncondImages: number[] = [];
  for (const m of members) {
    for (let i = 0; i < m.checked.count; i++) {
      condIndex.push(m.condRow + i);
      uncondIndex.push(m.doCfg ? m.uncondRow + i : m.condRow + i);
      guidance.push(m.doCfg ? m.checked.guidanceScale : 1);
      if (m.doCfg) uncondImages[m.uncondRow + i] = m.firstImage + i;
    }
  }
  const images = condIndex.length;
  const expandIndex = [...uncondImages, ...Array.from({ length: images }, (_, i) => i)];
  return { uncondIndex, condIndex, guidance: Float32Array.from(guidance), expandIndex };
}

function int64(values: readonly number[]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), [values.length]);
}

/** The fp16 UNet's sample tensor reads sampleHalf: refill it from sampleIn. */
function toHalfInto(buffers: LoopBuffers): void {
  toHalf(buffers.sampleIn, buffers.sampleHalf!);
}

async function upload(graphs: GpuGraphs, tensor: ort.Tensor, clock: RunClock, copies: GpuCopies): Promise<ort.Tensor> {
  copies.toGpuBytes += (tensor.data as Float32Array | Uint16Array).byteLength;
  return (await clock.run(graphs.upload, { x: tensor })).y;
}

async function download(graphs: GpuGraphs, tensor: ort.Tensor, clock: RunClock, copies: GpuCopies): Promise<Float32Array> {
  const out = (await clock.run(graphs.download, { x: tensor })).y;
  countRead(copies, out);
  return out.data as Float32Array;
}

function countRead(copies: GpuCopies, tensor: ort.Tensor): void {
  copies.toHost++;
  copies.toHostBytes += (tensor.data as Float32Array | Uint16Array).byteLength;
}

/** The previews due at steps reported+1 … done, one run of the preview graph for all of them. */
async function gpuPreviews(
  graphs: GpuGraphs,
  members: readonly Member[],
  hooks: GpuLoopHooks,
  reported: number,
  done: number,
  denoised: ort.Tensor,
  shape: ImageShape,
  clock: RunClock,
  copies: GpuCopies,
): Promise<Map<Member, Preview>> {
  const previews = new Map<Member, Preview>();
  if (!graphs.preview) return previews;
  const wanting: Member[] = [];
  for (const m of members) {
    if (m.error || !m.options.onProgress) continue;
    for (let step = reported + 1; step <= done; step++) {
      if (hooks.previewDue(m, step)) {
        wanting.push(m);
        break;
      }
    }
  }
  if (wanting.length === 0) return previews;
  const out = await clock.run(graphs.preview, { denoised, rows: int64(wanting.map((m) => m.firstImage)) });
  const rgb = out.rgb;
  countRead(copies, rgb);
  const data = rgb.data as Float32Array;
  wanting.forEach((m, k) => previews.set(m, previewOfRgbPlanes(data, k, shape.latentW, shape.latentH)));
  return previews;
}

/** A JS-stepped scheduler's preview: its estimate is on the host already. */
function previewOfHost(estimate: Float32Array, m: Member, shape: ImageShape): Preview | undefined {
  return previewOf(estimate, m.firstImage, shape.channels, shape.latentW, shape.latentH);
}
