/**
 * The queue's side of one engine call: hand the jobs of a run to the engine, then wait for each job's outcome,
 * giving up on a call that does not stop soon after its abort (so a stuck engine cannot hold a lane forever).
 */
import type { BatchItem, GenerateResult, ImageEngine } from '../diffusion/types.js';

/** How one job's generation ended: made, failed, or still going `graceMs` after its abort. */
export type GenerationOutcome = { result: GenerateResult } | { error: unknown } | { abandoned: true };

/**
 * One shared run (`generateBatch`) when there are several items and the engine can batch, else one call per
 * item; one promise per item either way. A call that throws becomes a rejection of every item's promise.
 */
export function startGeneration(engine: ImageEngine, items: readonly BatchItem[]): Promise<GenerateResult>[] {
  try {
    if (items.length > 1 && engine.generateBatch !== undefined) {
      const promises = engine.generateBatch(items);
      if (promises.length !== items.length) {
        throw new Error(`Expected one promise per job from generateBatch (${items.length}), got ${promises.length}`);
      }
      return promises;
    }
    return items.map((item) => engine.generate(item.params, item.options));
  } catch (error) {
    return items.map(() => Promise.reject(error));
  }
}

/** The generation's outcome, or `abandoned` once it has gone on for `graceMs` after `signal` aborted. */
export function settleGeneration(
  generation: Promise<GenerateResult>,
  signal: AbortSignal,
  graceMs: number,
): Promise<GenerationOutcome> {
  const settled = generation.then(
    (result) => ({ result }),
    (error: unknown) => ({ error }),
  );
  return Promise.race([settled, abandonAfterAbort(signal, graceMs)]);
}

/** Resolves `graceMs` after the signal aborts; never, if it never does. */
function abandonAfterAbort(signal: AbortSignal, graceMs: number): Promise<{ abandoned: true }> {
  return new Promise((resolve) => {
    const start = () => setTimeout(() => resolve({ abandoned: true }), graceMs).unref();
    if (signal.aborted) start();
    else signal.addEventListener('abort', start, { once: true });
  });
}
