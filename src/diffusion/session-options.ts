/**
 * The onnxruntime session options imagine's loader starts from (callers' `intraOpNumThreads` and `sessionOptions`
 * are merged over them), each kept because `npm run bench` measured it; tools/bench/README.md has the tables.
 */
import type * as ort from 'onnxruntime-node';

export const DEFAULT_SESSION_OPTIONS = {
  graphOptimizationLevel: 'all',
  logSeverityLevel: 3,
  // onnxruntime's pool threads spin while they wait for work. A bot shares its machine (its own event loop, other
  // processes): spinning threads take the CPU from both. On the 2-core bench box, without spinning a UNet call in
  // a worker went from 283 to 203 ms (median, sd-bench) and 9.2 to 5.7 ms (imagine-shapes, 200 calls each).
  // Passing `extra` replaces this.
  extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  // Thread count: onnxruntime's own choice (the physical cores). An earlier rule of cores − 1 on small machines was
  // measured while a training job held one of the 2 cores; on the same box at rest (bench of 2026-11-27 11:49) two
  // non-spinning threads made sd-bench's UNet call 180 → 104 ms and imagine-shapes' 4.83 → 4.59 ms, with the main
  // thread's event-loop p99 at 0.29 ms and 2.72 ms: far inside the bot's 20 ms budget.
} as const satisfies Omit<ort.InferenceSession.SessionOptions, 'executionProviders'>;
