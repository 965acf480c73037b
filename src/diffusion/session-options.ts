/**
 * The onnxruntime session options imagine's loader starts from (callers' `sessionOptions` are merged over them),
 * each kept because `npm run bench` measured it; see bench/README.md for the tables.
 */
import type * as ort from 'onnxruntime-node';

export const DEFAULT_SESSION_OPTIONS = {
  graphOptimizationLevel: 'all',
  logSeverityLevel: 3,
  // onnxruntime's pool threads spin while they wait for work. A bot shares its machine (its own event loop, other
  // processes): spinning threads take the CPU from both. On the 2-core bench box under load, without spinning a
  // UNet call in a worker went from 568 to 207 ms (median, sd-bench) and 15.5 to 7.9 ms (shapes-arch), and the
  // main thread's event-loop delay p99 from 94 to 32 ms and 51 to 16 ms. Passing `extra` replaces this.
  extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
} as const satisfies Omit<ort.InferenceSession.SessionOptions, 'executionProviders'>;
