/**
 * Per-model measurements, run in a fresh process so load time and peak memory belong to this model alone:
 * load time; whole images at 20 steps (UNet ms per step, s per image, the share of wall time outside the
 * runtime's run() calls); one pipeline step against a bare `session.run` on the same inputs; and what a batch of
 * 2 and 4 images costs per image against 1.
 */
import * as ort from 'onnxruntime-node';
import { loadModel, type DiffusionModel, type LoadModelOptions } from '../../src/diffusion/model.js';
import { generate, generateBatch } from '../../src/diffusion/pipeline.js';
import type { GenerateParams, SchedulerName } from '../../src/diffusion/types.js';
import { median, peakRssMb, round, rssMb } from './stats.js';
import { unetCallTimer } from './unet-call.js';
import { unetFeeds, unetShapeOf } from './unet-feeds.js';

export interface ModelSectionInput {
  modelDir: string;
  /** Steps per whole image. Default 20. */
  steps?: number;
  /** Whole images at `steps` (the first one is a warm-up and not counted). Default 3. */
  images?: number;
  /** Rounds of the step comparison; each round runs `compareSteps` bare calls then a `compareSteps`-step job. Default 3. */
  compareRounds?: number;
  /** Default 10. */
  compareSteps?: number;
  /** Batch sizes (images per job) to cost per image. Default [1, 2, 4]. */
  batches?: number[];
  /** Steps per batch job. Default `steps`. */
  batchSteps?: number;
  /** Times each batch size is run (the median is kept). Default 3. */
  batchRepeats?: number;
  /** Classifier-free guidance scale; > 1 runs two UNet halves per step as members' jobs do. Default 7.5. */
  guidanceScale?: number;
  /** The scheduler every job uses. Default euler: one UNet call per step, so steps and calls agree. */
  scheduler?: SchedulerName;
  loadOptions?: Omit<LoadModelOptions, 'log'>;
}

export interface BatchTiming {
  count: number;
  totalMs: number;
  msPerImage: number;
  unetMsPerStepPerImage: number;
  /** msPerImage against a batch of 1, measured in the same way. */
  relativeToOne: number;
}

export interface ImageTiming {
  totalMs: number;
  runtimeMs: number;
  unetMs: number;
}

export interface ModelSectionResult {
  model: string;
  executionProvider: string;
  width: number;
  height: number;
  loadMs: number;
  rssAfterLoadMb: number;
  steps: number;
  guidanceScale: number;
  scheduler: SchedulerName;
  images: ImageTiming[];
  /** Median of the counted images. */
  unetMsPerStep: number;
  sPerImage: number;
  /** Median share of an image's wall time spent outside the runtime's run() calls, in %. */
  overheadPct: number;
  /** The smallest share among the images: on a busy machine, preemption inflates the median. */
  overheadBestPct: number;
  step: {
    /** Median interval between two progress callbacks of a job without previews: one full pipeline step. */
    pipelineMs: number;
    /** The same with a preview every step (what the bot asks for). */
    pipelineWithPreviewMs: number;
    /**
     * Median of bare `session.run(feeds)` calls on the same inputs (the runtime allocates the output). On webgpu, where
     * the output stays in a GPU buffer and `run()` returns once the work is queued, each call is timed up to a
     * read-back of its output (tools/bench/unet-call.ts).
     */
    bareRunMs: number;
    /** The same into a pre-allocated output tensor, as the pipeline calls it: the baseline the target is judged on. */
    bareRunPreallocMs: number;
    /** pipelineMs / bareRunPreallocMs − 1, in %. */
    costPct: number;
    samples: number;
  };
  /** One job of `count` images (params.count) per batch size. */
  batches: BatchTiming[];
  /** `count` jobs of one image each from different members sharing UNet calls (generateBatch). */
  jobBatches: BatchTiming[];
  peakRssMb: number;
}

/** The measurements; `log` gets one line per phase (stderr in the bench). */
export async function measureModel(input: ModelSectionInput, log: (line: string) => void = () => {}): Promise<ModelSectionResult> {
  const steps = input.steps ?? 20;
  const imageCount = input.images ?? 3;
  const guidanceScale = input.guidanceScale ?? 7.5;
  const scheduler = input.scheduler ?? 'euler';
  const compareRounds = input.compareRounds ?? 3;
  const compareSteps = input.compareSteps ?? 10;
  const batches = input.batches ?? [1, 2, 4];
  const batchSteps = input.batchSteps ?? steps;
  const batchRepeats = input.batchRepeats ?? 3;
  if (!Number.isInteger(imageCount) || imageCount < 2) throw new RangeError(`Expected \`images\` to be an integer of at least 2 (one warm-up), got \`${imageCount}\``);
  if (!Number.isInteger(compareSteps) || compareSteps < 3) throw new RangeError(`Expected \`compareSteps\` to be an integer of at least 3, got \`${compareSteps}\``);

  const t0 = performance.now();
  const model = await loadModel(input.modelDir, { ...input.loadOptions, log });
  const loadMs = performance.now() - t0;
  const rssAfterLoadMb = rssMb();
  log(`${model.info.name}: loaded in ${round(loadMs)} ms on ${model.executionProvider}`);
  try {
    const base: GenerateParams = { prompt: 'a red circle above a blue square', seed: 1, steps, guidanceScale, scheduler };

    // Whole images, as a member gets them (no progress callback: the worker's own cost of previews is in `step`).
    const images: ImageTiming[] = [];
    for (let i = 0; i < imageCount; i++) {
      const result = await generate(model, { ...base, seed: i + 1 });
      if (i > 0) images.push({ ...result.timings });
      log(`${model.info.name}: image ${i + 1}/${imageCount} in ${round(result.timings.totalMs)} ms${i === 0 ? ' (warm-up)' : ''}`);
    }
    // Euler (and DDIM) make one UNet call per step, so per call and per step agree.
    const unetMsPerStep = median(images.map((t) => t.unetMs / steps));
    const sPerImage = median(images.map((t) => t.totalMs)) / 1000;
    const overheads = images.map((t) => (1 - t.runtimeMs / t.totalMs) * 100);
    const overheadPct = median(overheads);
    const overheadBestPct = Math.min(...overheads);

    const step = await compareStep(model, { ...base, steps: compareSteps }, compareRounds, log);

    const timing = (count: number, totalMs: number, unetMs: number): BatchTiming => ({
      count,
      totalMs,
      msPerImage: totalMs / count,
      unetMsPerStepPerImage: unetMs / batchSteps / count,
      relativeToOne: NaN,
    });
    const relate = (list: BatchTiming[]) => {
      const one = list.find((b) => b.count === 1);
      for (const b of list) b.relativeToOne = one ? b.msPerImage / one.msPerImage : NaN;
      return list;
    };
    const batchResults: BatchTiming[] = [];
    const jobBatches: BatchTiming[] = [];
    // Sizes interleaved within each repeat, so that load from elsewhere falls on all of them; medians kept.
    const oneJob = new Map<number, { totalMs: number[]; unetMs: number[] }>(batches.map((c) => [c, { totalMs: [], unetMs: [] }]));
    const manyJobs = new Map<number, { totalMs: number[]; unetMs: number[] }>(batches.map((c) => [c, { totalMs: [], unetMs: [] }]));
    for (let r = 0; r < batchRepeats; r++) {
      for (const count of batches) {
        const result = await generate(model, { ...base, steps: batchSteps, count });
        oneJob.get(count)!.totalMs.push(result.timings.totalMs);
        oneJob.get(count)!.unetMs.push(result.timings.unetMs);
        const jobs = Array.from({ length: count }, (_, j) => ({ params: { ...base, steps: batchSteps, prompt: `${base.prompt} ${j}`, seed: 100 + j } }));
        const t1 = performance.now();
        const outcomes = await generateBatch(model, jobs);
        const wall = performance.now() - t1;
        const first = outcomes[0];
        if (!first.ok) throw first.error;
        manyJobs.get(count)!.totalMs.push(wall);
        manyJobs.get(count)!.unetMs.push(first.result.timings.unetMs);
      }
      log(`${model.info.name}: batches, repeat ${r + 1}/${batchRepeats}`);
    }
    for (const count of batches) {
      const a = oneJob.get(count)!;
      const b = manyJobs.get(count)!;
      batchResults.push(timing(count, median(a.totalMs), median(a.unetMs)));
      jobBatches.push(timing(count, median(b.totalMs), median(b.unetMs)));
    }
    relate(batchResults);
    relate(jobBatches);

    return {
      model: model.info.name,
      executionProvider: model.executionProvider,
      width: model.info.width,
      height: model.info.height,
      loadMs,
      rssAfterLoadMb,
      steps,
      guidanceScale,
      scheduler,
      images,
      unetMsPerStep,
      sPerImage,
      overheadPct,
      overheadBestPct,
      step,
      batches: batchResults,
      jobBatches,
      peakRssMb: peakRssMb(),
    };
  } finally {
    await model.release();
  }
}

/**
 * One pipeline step against one bare run() on the same inputs, interleaved round by round so that load from other
 * processes falls on both sides alike. A step is the interval between two progress callbacks (the first step,
 * which follows text encoding, is left out).
 */
async function compareStep(model: DiffusionModel, params: GenerateParams, rounds: number, log: (line: string) => void): Promise<ModelSectionResult['step']> {
  const doCfg = params.guidanceScale > 1 && !model.unet.timestepCond;
  const feeds = unetFeeds(model, unetShapeOf(model, doCfg ? 2 : 1));
  const bare: number[] = [];
  const barePrealloc: number[] = [];
  const plain: number[] = [];
  const withPreview: number[] = [];
  const intervals = async (previewEvery: number, into: number[]) => {
    let last = NaN;
    await generate(model, params, {
      previewEvery,
      onProgress: (progress) => {
        const now = performance.now();
        if (progress.step > 1) into.push(now - last);
        last = now;
      },
    });
  };
  const sample = feeds[model.unet.sample.name];
  const outData = model.unet.output.type === 'float16' ? new Uint16Array(sample.size) : new Float32Array(sample.size);
  const fetches = { [model.unet.output.name]: new ort.Tensor(model.unet.output.type as 'float32', outData as Float32Array, sample.dims) };
  // Into a host tensor the output is copied back before run() returns, on every provider.
  const timer = await unetCallTimer(model.unet.session, model.executionProvider === 'webgpu');
  try {
    await timer.callMs(feeds, 1); // warm-up
    await model.unet.session.run(feeds, fetches);
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < params.steps; i++) {
        bare.push(await timer.callMs(feeds, 1));
        const t1 = performance.now();
        await model.unet.session.run(feeds, fetches);
        barePrealloc.push(performance.now() - t1);
      }
      await intervals(0, plain);
      await intervals(1, withPreview);
      log(`${model.info.name}: step comparison round ${r + 1}/${rounds}`);
    }
  } finally {
    await timer.release();
  }
  const pipelineMs = median(plain);
  const bareRunPreallocMs = median(barePrealloc);
  return {
    pipelineMs,
    pipelineWithPreviewMs: median(withPreview),
    bareRunMs: median(bare),
    bareRunPreallocMs,
    costPct: (pipelineMs / bareRunPreallocMs - 1) * 100,
    samples: plain.length,
  };
}
