/**
 * The runtime levers of issue 6, tried on one model's UNet: the same guided-step inputs through sessions made with
 * different options, interleaved round by round so that other load on the machine falls on every variant alike.
 */
import os from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { loadModel } from '../../src/diffusion/model.js';
import { DEFAULT_SESSION_OPTIONS } from '../../src/diffusion/session-options.js';
import { fromHalf, toHalf } from '../../src/diffusion/tensor.js';
import { median } from './stats.js';
import { unetFeeds, unetShapeOf } from './unet-feeds.js';

export interface LeverVariant {
  name: string;
  /** Laid over the options imagine's loader uses today (cpu, graphOptimizationLevel 'all', runtime's threads). */
  options: ort.InferenceSession.SessionOptions;
  /** Run into a pre-allocated output tensor (`run(feeds, fetches)`) instead of letting the runtime allocate one. */
  preallocatedOutput?: boolean;
  /** Another UNet file with the same interface (the int8 rewrite of quantize_dynamic.py): a lossy lever. */
  file?: string;
}

export interface LeversInput {
  modelDir: string;
  /** Calls per variant per round. Default 8. */
  calls?: number;
  /** Default 3. */
  rounds?: number;
  /** Images per step (2 UNet rows each with guidance). Default 1. */
  images?: number;
  /** Which variants to run (names from {@link leverVariants}); default all. */
  only?: string[];
  /** Rewritten UNet files to time beside the model's own (name → file), e.g. int8 from quantize_dynamic.py. */
  files?: Record<string, string>;
}

export interface LeverResult {
  name: string;
  createMs: number;
  medianMs: number;
  /** The fastest call: what the variant costs when nothing else wants the cores. */
  minMs: number;
  /** medianMs against the loader's current options, in %: negative is faster. */
  vsCurrentPct: number;
  calls: number;
  /** Largest |difference| of the UNet's output from the current options' on the same inputs: 0 = unchanged pixels. */
  maxAbsDiff: number;
}

/** The loader's options today (src/diffusion/session-options.ts), the baseline every lever is compared with. */
export const CURRENT_OPTIONS: ort.InferenceSession.SessionOptions = { ...DEFAULT_SESSION_OPTIONS, executionProviders: ['cpu'] };

/** onnxruntime's own default: pool threads spin while waiting for work (the loader turns it off). */
export const SPINNING = { session: { intra_op: { allow_spinning: '1' }, inter_op: { allow_spinning: '1' } } };

/** Variants for a UNet whose symbolic dimensions are `symbolic` (name → the value the bench runs at). */
export function leverVariants(cores: number, symbolic: Record<string, number>): LeverVariant[] {
  const variants: LeverVariant[] = [
    { name: 'current', options: {} },
    { name: 'intraOp=1', options: { intraOpNumThreads: 1 } },
    { name: `intraOp=${cores}`, options: { intraOpNumThreads: cores } },
    { name: 'spinning (ort default)', options: { extra: SPINNING } },
    { name: 'graph basic', options: { graphOptimizationLevel: 'basic' } },
    { name: 'graph extended', options: { graphOptimizationLevel: 'extended' } },
    { name: 'graph disabled', options: { graphOptimizationLevel: 'disabled' } },
    // 'layout' stops after the layout transformers (NCHWc blocked Conv on x86); 'all' adds the rest. 'extended'
    // against 'all' is what the blocked layout is worth.
    { name: 'graph layout', options: { graphOptimizationLevel: 'layout' } },
    // Intra-op work split: onnxruntime hands each thread blocks of this many iterations, then smaller ones.
    { name: 'dynamic_block_base=4', options: { extra: { session: { ...DEFAULT_SESSION_OPTIONS.extra.session, dynamic_block_base: '4' } } } },
    { name: 'memPattern off', options: { enableMemPattern: false } },
    { name: 'cpuMemArena off', options: { enableCpuMemArena: false } },
    { name: 'parallel, interOp=2', options: { executionMode: 'parallel', interOpNumThreads: 2 } },
    { name: 'preallocated output', options: {}, preallocatedOutput: true },
  ];
  if (Object.keys(symbolic).length > 0) {
    variants.push({ name: 'freeDimensionOverrides', options: { freeDimensionOverrides: symbolic } });
  }
  return variants;
}

function rotate<T>(list: readonly T[], by: number): T[] {
  const k = by % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

/** Measure every variant; the first is the loader's current options. */
export async function measureLevers(input: LeversInput, log: (line: string) => void = () => {}): Promise<{ model: string; batch: number; results: LeverResult[] }> {
  const calls = input.calls ?? 8;
  const rounds = input.rounds ?? 3;
  const images = input.images ?? 1;
  const model = await loadModel(input.modelDir, { log });
  const file = join(model.dir, 'unet', 'model.onnx');
  const shape = unetShapeOf(model, model.unet.timestepCond ? images : 2 * images);
  const feeds = unetFeeds(model, shape);
  const { unet } = model;
  // The names of the UNet's symbolic dimensions, bound to the values this bench feeds.
  const symbolic: Record<string, number> = {};
  const bind = (dims: readonly (number | string)[], values: number[]) =>
    dims.forEach((d, i) => {
      if (typeof d === 'string' && d !== '') symbolic[d] = values[i];
    });
  bind(unet.sample.shape, [shape.batch, shape.channels, shape.height, shape.width]);
  bind(unet.encoderHiddenStates.shape, [shape.batch, shape.sequence, shape.hidden]);
  const variants = leverVariants(os.availableParallelism(), symbolic).filter((v) => !input.only || input.only.includes(v.name) || v.name === 'current');
  for (const [name, other] of Object.entries(input.files ?? {})) variants.push({ name, options: {}, file: other });
  await model.release();

  const sessions: { variant: LeverVariant; session: ort.InferenceSession; feeds: Record<string, ort.Tensor>; createMs: number; times: number[]; fetches?: Record<string, ort.Tensor>; maxAbsDiff: number }[] = [];
  let reference: Float32Array | undefined;
  try {
    for (const variant of variants) {
      const t0 = performance.now();
      const session = await ort.InferenceSession.create(variant.file ?? file, { ...CURRENT_OPTIONS, ...variant.options });
      const createMs = performance.now() - t0;
      // A float16 rewrite (to_fp16.py) takes the same inputs in float16.
      const variantFeeds = Object.fromEntries(
        Object.entries(feeds).map(([name, t]) => {
          const spec = session.inputMetadata.find((m) => m.name === name);
          const half = spec?.isTensor && spec.type === 'float16' && t.type === 'float32';
          return [name, half ? new ort.Tensor('float16', toHalf(t.data as Float32Array, new Uint16Array(t.size)), t.dims) : t];
        }),
      );
      const outSpec = session.outputMetadata[0];
      const outName = session.outputNames[0];
      const dims = [shape.batch, shape.channels, shape.height, shape.width];
      const size = dims.reduce((a, b) => a * b, 1);
      const fetches = variant.preallocatedOutput
        ? {
            [outName]:
              outSpec.isTensor && outSpec.type === 'float16'
                ? new ort.Tensor('float16', new Uint16Array(size), dims)
                : new ort.Tensor('float32', new Float32Array(size), dims),
          }
        : undefined;
      // Warm-up (first-run allocations), and the output held against the current options' one.
      const outputs = await (fetches ? session.run(variantFeeds, fetches) : session.run(variantFeeds));
      const raw = outputs[outName];
      const output = raw.type === 'float16' ? fromHalf(raw.data as Uint16Array, new Float32Array(raw.size)) : Float32Array.from(raw.data as Float32Array);
      reference ??= output;
      const maxAbsDiff = output.reduce((m, v, i) => Math.max(m, Math.abs(v - reference![i])), 0);
      sessions.push({ variant, session, feeds: variantFeeds, createMs, times: [], fetches, maxAbsDiff });
    }
    for (let r = 0; r < rounds; r++) {
      // A different order each round, so no variant always follows the same neighbour (caches, thread wake-ups).
      for (const entry of rotate(sessions, r)) {
        for (let i = 0; i < calls; i++) {
          const t0 = performance.now();
          await (entry.fetches ? entry.session.run(entry.feeds, entry.fetches) : entry.session.run(entry.feeds));
          entry.times.push(performance.now() - t0);
        }
      }
      log(`${model.info.name}: levers round ${r + 1}/${rounds}`);
    }
  } finally {
    await Promise.all(sessions.map((s) => s.session.release()));
  }
  const current = median(sessions[0].times);
  return {
    model: model.info.name,
    batch: shape.batch,
    results: sessions.map((s) => ({
      name: s.variant.name,
      createMs: s.createMs,
      medianMs: median(s.times),
      minMs: Math.min(...s.times),
      vsCurrentPct: (median(s.times) / current - 1) * 100,
      calls: s.times.length,
      maxAbsDiff: s.maxAbsDiff,
    })),
  };
}

/** Bare runs of the UNet with `threads` intra-op threads: the runtime's side of the PyTorch comparison. */
export async function measureBareUnet(modelDir: string, threads: number, calls: number, images = 1): Promise<number[]> {
  const model = await loadModel(modelDir, { intraOpNumThreads: threads, log: () => {} });
  try {
    const feeds = unetFeeds(model, unetShapeOf(model, model.unet.timestepCond ? images : 2 * images));
    await model.unet.session.run(feeds);
    const times: number[] = [];
    for (let i = 0; i < calls; i++) {
      const t0 = performance.now();
      await model.unet.session.run(feeds);
      times.push(performance.now() - t0);
    }
    return times;
  } finally {
    await model.release();
  }
}

export interface Fp16Result {
  /** Latent cells per side the two UNets ran at. */
  cells: number;
  float32Ms: number;
  float16Ms: number;
  /** float16Ms / float32Ms − 1, in %. */
  costPct: number;
  calls: number;
}

/**
 * fp16 weights on the cpu provider: the same small UNet exported in float32 (sd-tiny) and with float16 weights and
 * interface (sd-tiny-fp16, a Cast after each weight, as the provider has few float16 kernels), run at `cells` ×
 * `cells` latents, interleaved.
 */
export async function measureFp16(float32Dir: string, float16Dir: string, cells: number, calls: number, rounds: number): Promise<Fp16Result> {
  const models = [await loadModel(float32Dir, { log: () => {} }), await loadModel(float16Dir, { log: () => {} })];
  try {
    const feeds = models.map((model) => unetFeeds(model, { ...unetShapeOf(model, 2), height: cells, width: cells }));
    const times: number[][] = [[], []];
    for (let m = 0; m < 2; m++) await models[m].unet.session.run(feeds[m]);
    for (let r = 0; r < rounds; r++) {
      for (let m = 0; m < 2; m++) {
        for (let i = 0; i < calls; i++) {
          const t0 = performance.now();
          await models[m].unet.session.run(feeds[m]);
          times[m].push(performance.now() - t0);
        }
      }
    }
    const float32Ms = median(times[0]);
    const float16Ms = median(times[1]);
    return { cells, float32Ms, float16Ms, costPct: (float16Ms / float32Ms - 1) * 100, calls: times[0].length };
  } finally {
    await Promise.all(models.map((m) => m.release()));
  }
}

export interface CachedStartupResult {
  model: string;
  /** loadModel without the optimised-graph cache: every part optimised (what every start did before). */
  coldMs: number;
  /** loadModel with the cache filled: the optimised graphs opened with optimisation off. */
  warmMs: number;
  /** The first load into an empty cache: optimising and writing the graphs. */
  firstFillMs: number;
  /** warmMs / coldMs − 1, in %. */
  savedPct: number;
  loads: number;
}

/**
 * Model start-up with and without the optimised-graph cache (src/diffusion/optimized-cache.ts): whole `loadModel`
 * calls in this process, cold and warm interleaved, after one load that fills a fresh cache (and pays the process's
 * one-time costs, so neither side carries them).
 */
export async function measureCachedStartup(modelDir: string, rounds: number): Promise<CachedStartupResult> {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const cacheDir = mkdtempSync(join(os.tmpdir(), 'imagine-bench-ort-cache-'));
  const log = () => {};
  const timeLoad = async (cache: boolean) => {
    const t0 = performance.now();
    const model = await loadModel(modelDir, { log, optimizedModelCacheDir: cache ? cacheDir : undefined });
    const ms = performance.now() - t0;
    await model.release();
    return { ms, name: model.info.name };
  };
  try {
    const first = await timeLoad(true);
    const cold: number[] = [];
    const warm: number[] = [];
    for (let r = 0; r < rounds; r++) {
      if (r % 2 === 0) {
        cold.push((await timeLoad(false)).ms);
        warm.push((await timeLoad(true)).ms);
      } else {
        warm.push((await timeLoad(true)).ms);
        cold.push((await timeLoad(false)).ms);
      }
    }
    const coldMs = median(cold);
    const warmMs = median(warm);
    return { model: first.name, coldMs, warmMs, firstFillMs: first.ms, savedPct: (warmMs / coldMs - 1) * 100, loads: rounds };
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
}
