import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { Identifiers, UserError } from '../../errors.js';
import type { BatchItem, GenerateParams, GenerateResult, ModelInfo, ImageEngine } from '../types.js';
import { Rng } from '../rng.js';
import { infotext, PARAMETERS_KEYWORD } from '../../image/infotext.js';
import { withPngText } from '../../image/png-text.js';
import { initImagePixels } from '../../image/init-image.js';
import { DEFAULT_STRENGTH, loopSteps } from '../check-inputs.js';

export interface StandInEngineOptions {
  /** Wall time of one step of a one-image run. Default 5. */
  msPerStep?: number;
  /**
   * What each further image of a shared run adds to a step, as a share of `msPerStep`: a run of k images takes
   * (1 + (k − 1) × batchCost) × msPerStep per step. 0 is a free batch (an idle accelerator), 1 no gain at all.
   * Default 0.5.
   */
  batchCost?: number;
  /** Size when the params name none. Default 64 × 64. */
  width?: number;
  height?: number;
  /** Reported model name. Default `stand-in`. */
  model?: string;
  /** Called when a generation starts, once per job (tests record the order jobs ran in). */
  onGenerate?: (params: GenerateParams) => void;
  /** Return an error to make that job fail after its first step (tests of the failure path); its run goes on. */
  failWith?: (params: GenerateParams) => Error | undefined;
  /** Return an error to make a whole run fail after its first step, every job of it (a worker that died). */
  failRun?: (params: GenerateParams[]) => Error | undefined;
}

interface Live {
  item: BatchItem;
  resolve: (result: GenerateResult) => void;
  reject: (error: Error) => void;
  settled: boolean;
}

/**
 * A fast fake ImageEngine for load tests and for the bot's end-to-end plumbing: it takes `msPerStep` per step,
 * reports progress with a small preview, answers an aborted job at once (its run stops at the next step when
 * nothing else is left in it), and returns real PNGs (a seeded gradient with noise, made with sharp) of the
 * requested size (img2img: the start picture, mixed with that gradient by `strength`, so a test can tell which
 * picture a job started from). No model is loaded. `generateBatch` runs jobs together with the cost model of `batchCost`, so
 * queue tests can see what batching gains without a model.
 */
export class StandInEngine implements ImageEngine {
  /** Jobs started, for assertions. */
  generations = 0;
  /** Jobs in each run, in the order the runs started (1 for each plain `generate`); the latest 10 000 runs. */
  readonly runs: number[] = [];
  private readonly msPerStep: number;
  private readonly batchCost: number;
  private readonly width: number;
  private readonly height: number;

  constructor(private readonly options: StandInEngineOptions = {}) {
    this.msPerStep = options.msPerStep ?? 5;
    this.batchCost = options.batchCost ?? 0.5;
    this.width = options.width ?? 64;
    this.height = options.height ?? 64;
    if (!(this.msPerStep >= 0)) throw new RangeError(`Expected \`msPerStep\` ≥ 0, got \`${this.msPerStep}\``);
    if (!(this.batchCost >= 0)) throw new RangeError(`Expected \`batchCost\` ≥ 0, got \`${this.batchCost}\``);
  }

  async info(): Promise<ModelInfo> {
    return {
      name: this.options.model ?? 'stand-in',
      width: this.width,
      height: this.height,
      latentFactor: 1,
      defaultScheduler: 'euler',
      maxTokens: 77,
      img2img: true,
    };
  }

  generate(params: GenerateParams, options: BatchItem['options'] = {}): Promise<GenerateResult> {
    return this.generateBatch([{ params, options }])[0];
  }

  generateBatch(items: readonly BatchItem[]): Promise<GenerateResult>[] {
    const live: Live[] = [];
    const promises = items.map(
      (item) =>
        new Promise<GenerateResult>((resolve, reject) => live.push({ item, resolve, reject, settled: false })),
    );
    this.run(live).catch((error: unknown) => {
      for (const job of live) {
        if (job.settled) continue;
        job.settled = true;
        job.reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
    return promises;
  }

  async close(): Promise<void> {}

  private async run(jobs: Live[]): Promise<void> {
    const started = performance.now();
    const settle = (job: Live, outcome: { result: GenerateResult } | { error: Error }) => {
      if (job.settled) return;
      job.settled = true;
      if ('result' in outcome) job.resolve(outcome.result);
      else job.reject(outcome.error);
    };
    const cancelled = () => new UserError(Identifiers.Cancelled, 'The job was cancelled');
    const first = jobs[0].item.params;
    const key = (p: GenerateParams) => `${p.steps}|${p.scheduler ?? ''}|${p.width ?? this.width}x${p.height ?? this.height}`;
    if (jobs.some((job) => key(job.item.params) !== key(first))) {
      // As the pipeline: a mix is the caller's bug, and every job of the run hears of it.
      const error = new Error(`Expected jobs in one batch to share steps, scheduler and size, got ${jobs.map((j) => key(j.item.params)).join(', ')}`);
      for (const job of jobs) settle(job, { error });
      return;
    }
    this.runs.push(jobs.length);
    if (this.runs.length > 10_000) this.runs.splice(0, this.runs.length - 10_000);
    for (const job of jobs) {
      this.generations++;
      this.options.onGenerate?.(job.item.params);
      const signal = job.item.options?.signal;
      if (signal?.aborted) settle(job, { error: cancelled() });
      else signal?.addEventListener('abort', () => settle(job, { error: cancelled() }), { once: true });
    }
    const images = jobs.reduce((sum, job) => sum + (job.item.params.count ?? 1), 0);
    // The run's cost is fixed when it starts: like the worker pool, an aborted job's rows are computed until the end.
    const stepMs = this.msPerStep * (1 + (images - 1) * this.batchCost);
    // img2img runs its share of the schedule, as the pipeline does.
    const steps = loopSteps(first);
    const width = first.width ?? this.width;
    const height = first.height ?? this.height;
    const open = () => jobs.filter((job) => !job.settled);

    for (let step = 1; step <= steps && open().length > 0; step++) {
      // Yield even at 0 ms so an abort and other events get their turn between steps, as with the real pool.
      await sleep(stepMs);
      if (step === 1) {
        const failure = this.options.failRun?.(jobs.map((job) => job.item.params));
        if (failure !== undefined) {
          for (const job of jobs) settle(job, { error: failure });
          return;
        }
        for (const job of open()) {
          const error = this.options.failWith?.(job.item.params);
          if (error !== undefined) settle(job, { error });
        }
      }
      const elapsedMs = performance.now() - started;
      for (const job of open()) {
        const { params, options = {} } = job.item;
        const previewEvery = options.previewEvery ?? 1;
        if (previewEvery > 0 && step % previewEvery === 0) {
          options.onProgress?.({ step, totalSteps: steps, elapsedMs, preview: { width: 8, height: 8, rgb: pixels(params.seed, 8, 8) } });
        } else {
          options.onProgress?.({ step, totalSteps: steps, elapsedMs });
        }
      }
    }
    for (const job of open()) {
      const { params } = job.item;
      const count = params.count ?? 1;
      const strength = params.initImage === undefined ? undefined : (params.strength ?? DEFAULT_STRENGTH);
      let start: Float32Array | undefined;
      try {
        if (params.initImage !== undefined) start = await initImagePixels(params.initImage, width, height);
      } catch (error) {
        settle(job, { error: error as Error });
        continue;
      }
      const pngs: Uint8Array[] = [];
      for (let i = 0; i < count; i++) {
        const seed = (params.seed + i) >>> 0;
        const rgb = start === undefined ? pixels(seed, width, height) : mixed(start, pixels(seed, width, height), strength!);
        const png = await sharp(Buffer.from(rgb), { raw: { width, height, channels: 3 } })
          .png()
          .toBuffer();
        const text = infotext({
          prompt: params.prompt,
          negativePrompt: params.negativePrompt,
          steps: params.steps,
          scheduler: params.scheduler ?? 'euler',
          guidanceScale: params.guidanceScale,
          seed,
          width,
          height,
          model: this.options.model ?? 'stand-in',
          ...(strength !== undefined ? { strength } : {}),
        });
        pngs.push(withPngText(new Uint8Array(png.buffer, png.byteOffset, png.byteLength), { [PARAMETERS_KEYWORD]: text }));
      }
      settle(job, {
        result: {
          images: pngs,
          width,
          height,
          seed: params.seed,
          steps: params.steps,
          guidanceScale: params.guidanceScale,
          scheduler: params.scheduler ?? 'euler',
          model: this.options.model ?? 'stand-in',
          truncated: false,
          ...(strength !== undefined ? { strength } : {}),
          timings: { totalMs: performance.now() - started, runtimeMs: 0, unetMs: 0 },
        },
      });
    }
  }
}

/** A seeded gradient with a little noise: different seeds give visibly different images. */
function pixels(seed: number, width: number, height: number): Uint8Array {
  const rng = new Rng(seed >>> 0);
  const base = [rng.nextUint32() & 255, rng.nextUint32() & 255, rng.nextUint32() & 255];
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      const noise = rng.nextUint32() & 15;
      rgb[o] = (base[0] + (x * 255) / Math.max(width - 1, 1) + noise) & 255;
      rgb[o + 1] = (base[1] + (y * 255) / Math.max(height - 1, 1) + noise) & 255;
      rgb[o + 2] = (base[2] + noise) & 255;
    }
  }
  return rgb;
}

/** img2img's stand-in: (1 − strength) × the start picture (planar, in [-1, 1]) + strength × the seeded gradient. */
function mixed(start: Float32Array, noise: Uint8Array, strength: number): Uint8Array {
  const plane = noise.length / 3;
  const rgb = new Uint8Array(noise.length);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      const picture = ((start[c * plane + p] + 1) / 2) * 255;
      rgb[p * 3 + c] = Math.round((1 - strength) * picture + strength * noise[p * 3 + c]);
    }
  }
  return rgb;
}
