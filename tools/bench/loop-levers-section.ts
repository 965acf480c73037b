/**
 * What the runtime's thread options do to the bot's main thread: the UNet runs in a worker thread (as in the bot)
 * with each variant's options while the main thread's event-loop delay is recorded. onnxruntime's pool threads
 * spin while they wait for work (its default); on a machine with few cores they compete with the event loop.
 */
import os from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { loadModel } from '../../src/diffusion/model.js';
import { median } from './stats.js';
import { unetFeeds, unetShapeOf } from './unet-feeds.js';
import { CURRENT_OPTIONS, SPINNING } from './levers-section.js';

export interface LoopLeversInput {
  modelDir: string;
  /** UNet calls per variant per round. Default 20. */
  calls?: number;
  /** Default 2. */
  rounds?: number;
}

export interface LoopLeverResult {
  name: string;
  /** Median ms per UNet call in the worker. */
  medianMs: number;
  minMs: number;
  /** Main-thread event-loop delay beyond the timer's 10 ms resolution while the worker ran (one window per round). */
  loopP50Ms: number;
  loopP99Ms: number;
  loopMaxMs: number;
}

/** The worker: plain JavaScript (no tsx), loads the session with the given options and runs the feeds `calls` times. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require(workerData.ortPath);
(async () => {
  const session = await ort.InferenceSession.create(workerData.file, workerData.options);
  const feeds = {};
  for (const [name, t] of Object.entries(workerData.feeds)) feeds[name] = new ort.Tensor(t.type, t.data, t.dims);
  await session.run(feeds);
  parentPort.postMessage({ type: 'ready' });
  parentPort.on('message', async (calls) => {
    const times = [];
    for (let i = 0; i < calls; i++) {
      const t0 = performance.now();
      await session.run(feeds);
      times.push(performance.now() - t0);
    }
    parentPort.postMessage({ type: 'times', times });
  });
})().catch((error) => parentPort.postMessage({ type: 'error', message: String(error && error.message || error) }));
`;

const RESOLUTION_MS = 10;

export function loopLeverVariants(cores: number): { name: string; options: ort.InferenceSession.SessionOptions }[] {
  return [
    { name: 'current', options: {} },
    { name: 'spinning (ort default)', options: { extra: SPINNING } },
    { name: 'intraOp=1', options: { intraOpNumThreads: 1 } },
    { name: `intraOp=${cores}`, options: { intraOpNumThreads: cores } },
    { name: `intraOp=${cores}, spinning (ort defaults)`, options: { intraOpNumThreads: cores, extra: SPINNING } },
  ];
}

export async function measureLoopLevers(input: LoopLeversInput, log: (line: string) => void = () => {}): Promise<{ model: string; results: LoopLeverResult[] }> {
  const calls = input.calls ?? 20;
  const rounds = input.rounds ?? 2;
  const model = await loadModel(input.modelDir, { log });
  const file = join(model.dir, 'unet', 'model.onnx');
  const feeds = unetFeeds(model, unetShapeOf(model, model.unet.timestepCond ? 1 : 2));
  await model.release();
  const plainFeeds = Object.fromEntries(Object.entries(feeds).map(([name, t]) => [name, { type: t.type, data: t.data, dims: t.dims }]));
  const { createRequire } = await import('node:module');
  const ortPath = createRequire(import.meta.url).resolve('onnxruntime-node');

  const variants = loopLeverVariants(os.availableParallelism());
  const workers = await Promise.all(
    variants.map(
      (variant) =>
        new Promise<Worker>((resolve, reject) => {
          const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { ortPath, file, options: { ...CURRENT_OPTIONS, ...variant.options }, feeds: plainFeeds } });
          worker.once('message', (m: { type: string; message?: string }) => (m.type === 'ready' ? resolve(worker) : reject(new Error(m.message))));
          worker.once('error', reject);
        }),
    ),
  );
  const times = variants.map(() => [] as number[]);
  const delay = (ns: number) => Math.max(0, ns / 1e6 - RESOLUTION_MS);
  // A fresh histogram per window: one disabled and enabled again would count the gap as a delay.
  const windows = variants.map(() => [] as { p50: number; p99: number; max: number }[]);
  try {
    for (let r = 0; r < rounds; r++) {
      for (let v = 0; v < variants.length; v++) {
        const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
        histogram.enable();
        const result = await new Promise<number[]>((resolve, reject) => {
          workers[v].once('message', (m: { type: string; times?: number[]; message?: string }) => (m.type === 'times' ? resolve(m.times!) : reject(new Error(m.message))));
          workers[v].postMessage(calls);
        });
        histogram.disable();
        windows[v].push({ p50: delay(histogram.percentile(50)), p99: delay(histogram.percentile(99)), max: delay(histogram.max) });
        times[v].push(...result);
      }
      log(`${model.info.name}: loop levers round ${r + 1}/${rounds}`);
    }
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  return {
    model: model.info.name,
    results: variants.map((variant, v) => ({
      name: variant.name,
      medianMs: median(times[v]),
      minMs: Math.min(...times[v]),
      // The median window's p50; the worst window's p99 and max.
      loopP50Ms: median(windows[v].map((w) => w.p50)),
      loopP99Ms: Math.max(...windows[v].map((w) => w.p99)),
      loopMaxMs: Math.max(...windows[v].map((w) => w.max)),
    })),
  };
}
