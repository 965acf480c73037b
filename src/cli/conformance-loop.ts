import { noiseInitLatents, startTimesteps } from '../diffusion/img2img.js';
import { createScheduler } from '../diffusion/schedulers/index.js';
import type { NoiseSource, SchedulerConfig } from '../diffusion/schedulers/types.js';
import { SCHEDULER_NAMES, type SchedulerName } from '../diffusion/types.js';

/**
 * diffusers' scheduler "full loop" protocol (tests/schedulers/test_schedulers.py), so our schedulers can be checked
 * against the numbers in diffusers' own tests: a deterministic 4×3×8×8 sample, a dummy model
 * `sample · t / (t + 1)`, and `sum(|x|)`, `mean(|x|)` of the result.
 */

const BATCH = 4;
const CHANNELS = 3;
const SIZE = 8;
const NUM_ELEMS = BATCH * CHANNELS * SIZE * SIZE;

/** One full-loop run. */
export interface LoopCase {
  scheduler: SchedulerName;
  /** scheduler_config.json keys, as the diffusers test's get_scheduler_config(**overrides) builds them. */
  config: SchedulerConfig;
  /** num_inference_steps. */
  steps: number;
  /**
   * diffusers' `t_start` of test_full_loop_with_noise: noise `dummy_sample_deter` with `dummy_noise_deter` to
   * `timesteps[start · order]` and loop from there. Omitted: the whole schedule from pure `dummy_sample_deter`.
   */
  start?: number;
  /**
   * img2img, as the pipeline starts it (diffusion/img2img.ts, the functions pipeline.ts calls): the schedule from
   * `startTimesteps(scheduler, steps, strength)`, and `dummy_sample_deter` (the "encoded picture", not scaled by
   * init_noise_sigma) noised with `dummy_noise_deter` to its first timestep by `noiseInitLatents`. Not with `start`.
   */
  strength?: number;
  /** Seed of the noise source for stochastic steps (a torch.manual_seed-compatible generator). Default 0. */
  seed?: number;
}

export interface LoopResult {
  sum: number;
  mean: number;
  /** The timesteps the loop ran, in order. */
  timesteps: Float64Array;
}

/**
 * `dummy_sample_deter` (flip: `dummy_noise_deter`): arange(768) reshaped to (3, 8, 8, 4), divided by 768 and
 * permuted to (4, 3, 8, 8), flattened in NCHW order, so element [b, c, h, w] = (256c + 32h + 4w + b) / 768.
 */
export function dummyDeter(flip = false): Float32Array {
  const out = new Float32Array(NUM_ELEMS);
  for (let b = 0; b < BATCH; b++) {
    for (let c = 0; c < CHANNELS; c++) {
      for (let h = 0; h < SIZE; h++) {
        for (let w = 0; w < SIZE; w++) {
          const k = 256 * c + 32 * h + 4 * w + b;
          out[((b * CHANNELS + c) * SIZE + h) * SIZE + w] = (flip ? NUM_ELEMS - 1 - k : k) / NUM_ELEMS;
        }
      }
    }
  }
  return out;
}

/** diffusers' dummy model: `sample · t / (t + 1)`, in float32 as torch computes it. */
export function dummyModel(sample: Float32Array, t: number): Float32Array {
  const tf = Math.fround(t);
  const denom = Math.fround(tf + 1);
  return sample.map((x) => Math.fround(x * tf) / denom);
}

/** Check a case's fields (it may come from the command line), with one clear message per problem. */
export function parseLoopCase(value: unknown): LoopCase {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`Expected the case to be a JSON object, got \`${JSON.stringify(value)}\``);
  }
  const v = value as Record<string, unknown>;
  if (typeof v.scheduler !== 'string' || !(SCHEDULER_NAMES as readonly string[]).includes(v.scheduler)) {
    throw new Error(`Expected \`scheduler\` to be one of ${SCHEDULER_NAMES.join(', ')}, got \`${String(v.scheduler)}\``);
  }
  const config = v.config ?? {};
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new Error(`Expected \`config\` to be a JSON object of scheduler_config.json keys, got \`${JSON.stringify(config)}\``);
  }
  if (typeof v.steps !== 'number' || !Number.isInteger(v.steps) || v.steps < 1 || v.steps > 1000) {
    throw new Error(`Expected \`steps\` to be an integer from 1 to 1000, got \`${String(v.steps)}\``);
  }
  if (v.start !== undefined && (typeof v.start !== 'number' || !Number.isInteger(v.start) || v.start < 0 || v.start >= v.steps)) {
    throw new Error(`Expected \`start\` to be an integer from 0 to ${v.steps - 1}, got \`${String(v.start)}\``);
  }
  if (v.strength !== undefined && (typeof v.strength !== 'number' || !(v.strength > 0 && v.strength <= 1) || v.start !== undefined)) {
    throw new Error(`Expected \`strength\` to be a number above 0 and at most 1, and no \`start\` beside it, got \`${String(v.strength)}\``);
  }
  if (v.seed !== undefined && (typeof v.seed !== 'number' || !Number.isInteger(v.seed) || v.seed < 0 || v.seed > 0xffffffff)) {
    throw new Error(`Expected \`seed\` to be an integer from 0 to 4294967295, got \`${String(v.seed)}\``);
  }
  return {
    scheduler: v.scheduler as SchedulerName,
    config: config as SchedulerConfig,
    steps: v.steps,
    ...(v.start !== undefined ? { start: v.start as number } : {}),
    ...(v.strength !== undefined ? { strength: v.strength as number } : {}),
    ...(v.seed !== undefined ? { seed: v.seed as number } : {}),
  };
}

/**
 * Run diffusers' full loop: set_timesteps(steps); sample = dummy_sample_deter · init_noise_sigma (noised to the
 * start timestep when `start` is given; img2img's start when `strength` is); per timestep scale_model_input →
 * model → step, where, as in the tests, the scaled sample is what `step` receives. Returns sum and mean of
 * |sample| and the timesteps run.
 */
export function runLoop(loopCase: LoopCase, noise?: NoiseSource): LoopResult {
  const scheduler = createScheduler(loopCase.scheduler, loopCase.config);
  scheduler.setTimesteps(loopCase.steps);
  let sample: Float32Array = dummyDeter().map((x) => x * scheduler.initNoiseSigma);
  let timesteps: Float64Array = scheduler.timesteps;
  if (loopCase.strength !== undefined) {
    const start = startTimesteps(scheduler, loopCase.steps, loopCase.strength);
    if (start.loopSteps < 1) throw new Error(`Expected \`steps\` × \`strength\` to leave at least one step, got ${loopCase.steps} × ${loopCase.strength}`);
    timesteps = start.timesteps;
    sample = noiseInitLatents(scheduler, dummyDeter(), dummyDeter(true), timesteps[0]);
  } else if (loopCase.start !== undefined) {
    if (scheduler.addNoise === undefined) throw new Error(`The ${loopCase.scheduler} scheduler cannot start mid-schedule (no addNoise)`);
    timesteps = timesteps.subarray(loopCase.start * scheduler.order);
    sample = scheduler.addNoise(sample, dummyDeter(true), timesteps[0]);
  }
  for (const t of timesteps) {
    sample = scheduler.scaleModelInput(sample, t);
    const modelOutput = dummyModel(sample, t);
    sample = scheduler.step(modelOutput, t, sample, noise).prevSample;
  }
  let sum = 0;
  for (const x of sample) sum += Math.abs(x);
  return { sum, mean: sum / sample.length, timesteps };
}
