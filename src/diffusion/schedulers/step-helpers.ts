import { sqrtSigmaSqPlusOne } from './float32.js';
import type { NoiseSource } from './types.js';

/** Small checks and lookups every scheduler's step needs; the step math itself stays in each algorithm's file. */

/**
 * Where `timestep` sits in `timesteps` (diffusers' `index_for_timestep`): the second match when it occurs twice, so
 * a schedule that repeats its first timestep (Heun) does not skip a sigma. Throws when absent.
 */
export function indexForTimestep(timesteps: Float64Array, timestep: number, owner: string): number {
  let first = -1;
  for (let i = 0; i < timesteps.length; i++) {
    if (timesteps[i] === timestep) {
      if (first >= 0) return i;
      first = i;
    }
  }
  if (first < 0) {
    throw new Error(`${owner}: timestep \`${timestep}\` is not in the current schedule; pass one of \`scheduler.timesteps\``);
  }
  return first;
}

/** Refuse a step before setTimesteps, or past the schedule's end, or with mismatched array lengths. */
export function checkStep(owner: string, ready: boolean, modelOutput: Float32Array, sample: Float32Array): void {
  if (!ready) throw new Error(`${owner}: call setTimesteps(steps) before step()`);
  if (modelOutput.length !== sample.length) {
    throw new Error(
      `${owner}: expected \`modelOutput\` and \`sample\` to have the same length, got ${modelOutput.length} and ${sample.length}`,
    );
  }
}

export function checkSteps(owner: string, numInferenceSteps: number, max: number): void {
  if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1 || numInferenceSteps > max) {
    throw new RangeError(
      `${owner}: expected \`steps\` to be an integer from 1 to ${max} (num_train_timesteps), got \`${numInferenceSteps}\``,
    );
  }
}

/** A buffer of `length`, reusing `current` when it fits. */
export function reuse(current: Float32Array | undefined, length: number): Float32Array {
  return current !== undefined && current.length === length ? current : new Float32Array(length);
}

/** Refuse arrays of different lengths, naming both. */
export function checkSameLength(owner: string, a: Float32Array, aName: string, b: Float32Array, bName: string): void {
  if (a.length !== b.length) {
    throw new Error(`${owner}: expected \`${aName}\` and \`${bName}\` to have the same length, got ${a.length} and ${b.length}`);
  }
}

/** Draw standard normal noise for a stochastic step; stochastic schedulers refuse to run without a seeded source. */
export function drawNoise(owner: string, noise: NoiseSource | undefined, out: Float32Array): Float32Array {
  if (noise === undefined) throw new Error(`${owner}: this step draws noise; pass the seeded NoiseSource to step()`);
  noise.fillNormal(out);
  return out;
}

/**
 * The buffer a step writes x_{t−1} into: the caller's `out` (checked: right length, not an input), else a fresh one.
 */
export function outBuffer(owner: string, out: Float32Array | undefined, sample: Float32Array, modelOutput: Float32Array): Float32Array {
  if (out === undefined) return new Float32Array(sample.length);
  if (out.length !== sample.length) {
    throw new Error(`${owner}: expected \`out\` to have the length of \`sample\` (${sample.length}), got ${out.length}`);
  }
  if (overlaps(out, sample) || overlaps(out, modelOutput)) {
    throw new Error(`${owner}: expected \`out\` to be a buffer of its own, not \`sample\` or \`modelOutput\``);
  }
  return out;
}

function overlaps(a: Float32Array, b: Float32Array): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

/**
 * k-diffusion's input scaling, x / √(σ² + 1), shared by the Euler family. Writes into `into` when given, else into
 * `spare` (the scheduler's own buffer from the last call) unless that is `sample` itself, else a new array; never
 * into `sample`, since the pipeline steps from the unscaled latents. The caller keeps the result as its next spare
 * when it passed no `into`.
 */
export function scaleBySigma(
  owner: string,
  sample: Float32Array,
  sigma: number,
  into: Float32Array | undefined,
  spare: Float32Array | undefined,
): Float32Array {
  let out: Float32Array;
  if (into !== undefined) {
    checkSameLength(owner, into, 'into', sample, 'sample');
    out = into;
  } else {
    out = spare !== sample ? reuse(spare, sample.length) : new Float32Array(sample.length);
  }
  const scale = sqrtSigmaSqPlusOne(sigma);
  for (let i = 0; i < sample.length; i++) out[i] = sample[i] / scale;
  return out;
}
