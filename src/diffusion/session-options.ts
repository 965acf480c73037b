/**
 * The onnxruntime session options imagine's loader starts from (callers' `intraOpNumThreads` and `sessionOptions`
 * are merged over them), each kept because `npm run bench` measured it; bench/README.md has the tables.
 */
import os from 'node:os';
import type * as ort from 'onnxruntime-node';

const cores = os.availableParallelism();

export const DEFAULT_SESSION_OPTIONS = {
  graphOptimizationLevel: 'all',
  logSeverityLevel: 3,
  // onnxruntime's pool threads spin while they wait for work. A bot shares its machine (its own event loop, other
  // processes): spinning threads take the CPU from both. On the 2-core bench box, without spinning a UNet call in
  // a worker went from 283 to 203 ms (median, sd-bench) and 9.2 to 5.7 ms (imagine-shapes, 200 calls each).
  // Passing `extra` replaces this.
  extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  // On a small machine, leave one core to the bot's event loop (and the rest of the box): on 2 cores, one intra-op
  // thread made the median UNet call faster, not slower (sd-bench 204 → 177 ms, imagine-shapes 5.7 → 4.6 ms) and
  // the bot's defer p99 lower (27 → 17 ms). Larger machines keep onnxruntime's choice (the physical cores).
  ...(cores <= 4 ? { intraOpNumThreads: Math.max(1, cores - 1) } : {}),
} as const satisfies Omit<ort.InferenceSession.SessionOptions, 'executionProviders'>;
