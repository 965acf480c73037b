import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import type { GenerateOptions, GenerateParams, GenerateResult, ModelInfo, Sampler } from '../diffusion/types.js';
import { Rng } from '../diffusion/rng.js';

export interface StandInSamplerOptions {
  /** Wall time of one step. Default 5. */
  msPerStep?: number;
  /** Size when the params name none. Default 64 × 64. */
  width?: number;
  height?: number;
  /** Reported model name. Default `stand-in`. */
  model?: string;
  /** Called when a generation starts (tests record the order jobs ran in). */
  onGenerate?: (params: GenerateParams) => void;
  /** Return an error to make that generation fail after its first step (tests of the failure path). */
  failWith?: (params: GenerateParams) => Error | undefined;
}

/**
 * A fast fake Sampler for load tests and for the bot's end-to-end plumbing: it takes `msPerStep` per step,
 * reports progress with a small preview, stops at the next step when its signal aborts, and returns real PNGs
 * (a seeded gradient with noise, made with sharp) of the requested size. No model is loaded.
 */
export class StandInSampler implements Sampler {
  /** Generations started, for assertions. */
  generations = 0;
  private readonly msPerStep: number;
  private readonly width: number;
  private readonly height: number;

  constructor(private readonly options: StandInSamplerOptions = {}) {
    this.msPerStep = options.msPerStep ?? 5;
    this.width = options.width ?? 64;
    this.height = options.height ?? 64;
    if (!(this.msPerStep >= 0)) throw new RangeError(`Expected \`msPerStep\` ≥ 0, got \`${this.msPerStep}\``);
  }

  async info(): Promise<ModelInfo> {
    return {
      name: this.options.model ?? 'stand-in',
      width: this.width,
      height: this.height,
      latentFactor: 1,
      defaultScheduler: 'euler',
      maxTokens: 77,
    };
  }

  async generate(params: GenerateParams, options: GenerateOptions = {}): Promise<GenerateResult> {
    const started = performance.now();
    this.generations++;
    this.options.onGenerate?.(params);
    const { signal, onProgress } = options;
    const previewEvery = options.previewEvery ?? 1;
    const width = params.width ?? this.width;
    const height = params.height ?? this.height;
    signal?.throwIfAborted();
    for (let step = 1; step <= params.steps; step++) {
      // Yield even at 0 ms so an abort and other events get their turn between steps, as with the real pool.
      await sleep(this.msPerStep, undefined, { signal });
      if (step === 1) {
        const failure = this.options.failWith?.(params);
        if (failure !== undefined) throw failure;
      }
      const elapsedMs = performance.now() - started;
      if (previewEvery > 0 && step % previewEvery === 0) {
        onProgress?.({ step, totalSteps: params.steps, elapsedMs, preview: { width: 8, height: 8, rgb: pixels(params.seed, 8, 8) } });
      } else {
        onProgress?.({ step, totalSteps: params.steps, elapsedMs });
      }
    }
    const count = params.count ?? 1;
    const images: Uint8Array[] = [];
    for (let i = 0; i < count; i++) {
      const seed = (params.seed + i) >>> 0;
      const png = await sharp(Buffer.from(pixels(seed, width, height)), { raw: { width, height, channels: 3 } })
        .png()
        .toBuffer();
      images.push(new Uint8Array(png.buffer, png.byteOffset, png.byteLength));
    }
    const totalMs = performance.now() - started;
    return {
      images,
      width,
      height,
      seed: params.seed,
      steps: params.steps,
      guidanceScale: params.guidanceScale,
      scheduler: params.scheduler ?? 'euler',
      model: this.options.model ?? 'stand-in',
      truncated: false,
      timings: { totalMs, runtimeMs: 0, unetMs: 0 },
    };
  }

  async close(): Promise<void> {}
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
