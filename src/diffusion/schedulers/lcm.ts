import { ConfigReader } from './config-reader.js';
import { f32 } from './float32.js';
import { readTrainSchedule, type TrainSchedule } from './schedule.js';
import { checkSameLength, checkStep, drawNoise, indexForTimestep, outBuffer, reuse } from './step-helpers.js';
import type { NoiseSource, Scheduler, SchedulerConfig, StepResult } from './types.js';

// Latent Consistency Models (Luo et al. 2023, "LCM", Algorithm 3, multistep consistency sampling): each step
// jumps to the consistency function's x0 estimate, then re-noises to the next timestep, as diffusers' LCMScheduler.
// The guidance embedding (w − 1 → timestep_cond) is the pipeline's business, not the scheduler's.

const OWNER = 'LCMScheduler';
/** σ_data of the consistency-model boundary scalings (Song et al. 2023, "Consistency Models", appendix C). */
const SIGMA_DATA = 0.5;

export class LCMScheduler implements Scheduler {
  readonly order = 1;
  readonly initNoiseSigma = 1;
  timesteps: Float64Array = new Float64Array(0);
  /** predOriginalSample, reused from step to step (the contract: valid until the next step). */
  private x0Buffer: Float32Array | undefined;

  private readonly schedule: TrainSchedule;
  private readonly originalInferenceSteps: number;
  private readonly finalAlphaCumprod: number;
  private readonly predictionType: 'epsilon' | 'sample' | 'v_prediction';
  private readonly clipSample: boolean;
  private readonly clipSampleRange: number;
  private readonly timestepScaling: number;
  private stepIndex: number | undefined;

  constructor(config: SchedulerConfig) {
    const c = new ConfigReader(config, OWNER);
    // LCM's defaults are Stable Diffusion's schedule: scaled_linear 0.00085 … 0.012.
    this.schedule = readTrainSchedule(c, { betaStart: 0.00085, betaEnd: 0.012, betaSchedule: 'scaled_linear' });
    this.originalInferenceSteps = c.integer('original_inference_steps', 50, 1, this.schedule.numTrainTimesteps);
    this.finalAlphaCumprod = c.boolean('set_alpha_to_one', true) ? 1 : this.schedule.alphasCumprod[0];
    this.predictionType = c.oneOf('prediction_type', ['epsilon', 'sample', 'v_prediction'], 'epsilon');
    c.refuseIf('thresholding', c.boolean('thresholding', false), 'dynamic thresholding is not implemented (it is for pixel-space models)');
    this.clipSample = c.boolean('clip_sample', false);
    this.clipSampleRange = c.number('clip_sample_range', 1, { test: (n) => n > 0, expected: 'a positive number' });
    this.timestepScaling = c.number('timestep_scaling', 10);
    // LCM's schedule comes from original_inference_steps; diffusers reads timestep_spacing and steps_offset but
    // never uses them in set_timesteps, so they are accepted and ignored here too.
  }

  setTimesteps(numInferenceSteps: number): void {
    const original = this.originalInferenceSteps;
    if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1 || numInferenceSteps > original) {
      throw new RangeError(
        `${OWNER}: expected \`steps\` to be an integer from 1 to ${original} (original_inference_steps), got \`${numInferenceSteps}\``,
      );
    }
    // The distillation's own schedule: every k-th training timestep, k = N // original_inference_steps.
    const k = Math.floor(this.schedule.numTrainTimesteps / original);
    const origin = Array.from({ length: original }, (_, i) => (i + 1) * k - 1).reverse();
    // Evenly spaced picks from it (np.linspace(0, len, n, endpoint=False), floored).
    const n = numInferenceSteps;
    this.timesteps = Float64Array.from({ length: n }, (_, i) => origin[Math.floor(i * (origin.length / n))]);
    this.stepIndex = undefined;
  }

  scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise?: NoiseSource, out?: Float32Array): StepResult {
    checkStep(OWNER, this.timesteps.length > 0, modelOutput, sample);
    if (this.stepIndex === undefined) this.stepIndex = indexForTimestep(this.timesteps, timestep, OWNER);
    const index = this.stepIndex;
    if (index >= this.timesteps.length) throw new Error(`${OWNER}: step() called past the last timestep`);
    const ac = this.schedule.alphasCumprod;
    const prevTimestep = index + 1 < this.timesteps.length ? this.timesteps[index + 1] : timestep;
    const alphaProdT = ac[timestep];
    const alphaProdTPrev = prevTimestep >= 0 ? ac[prevTimestep] : this.finalAlphaCumprod;
    const sqrtA = f32(Math.sqrt(alphaProdT));
    const sqrtB = f32(Math.sqrt(f32(1 - alphaProdT)));
    // Boundary-condition scalings: c_skip → 1 and c_out → 0 as t → 0, so f(x, 0) = x.
    const scaled = f32(timestep * this.timestepScaling);
    const scaledSq = f32(scaled * scaled);
    const cSkip = f32(SIGMA_DATA ** 2 / f32(scaledSq + SIGMA_DATA ** 2));
    const cOut = f32(scaled / f32(Math.sqrt(f32(scaledSq + SIGMA_DATA ** 2))));
    const range = this.clipSampleRange;

    const denoised = (this.x0Buffer = reuse(this.x0Buffer, sample.length));
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i];
      const m = modelOutput[i];
      let x0 =
        this.predictionType === 'epsilon'
          ? f32(f32(x - f32(sqrtB * m)) / sqrtA)
          : this.predictionType === 'sample'
            ? m
            : f32(f32(sqrtA * x) - f32(sqrtB * m));
      if (this.clipSample) x0 = Math.min(Math.max(x0, -range), range);
      denoised[i] = f32(cOut * x0) + f32(cSkip * x);
    }
    const prevSample = outBuffer(OWNER, out, sample, modelOutput);
    if (index === this.timesteps.length - 1) {
      // The last step returns the estimate itself (in the caller's buffer: `denoised` is reused).
      prevSample.set(denoised);
    } else {
      // Re-noise the estimate to the next timestep: sqrt(ᾱ) x0 + sqrt(1 − ᾱ) z.
      drawNoise(OWNER, noise, prevSample);
      const sa = f32(Math.sqrt(alphaProdTPrev));
      const sb = f32(Math.sqrt(f32(1 - alphaProdTPrev)));
      for (let i = 0; i < prevSample.length; i++) prevSample[i] = f32(sa * denoised[i]) + f32(sb * prevSample[i]);
    }
    this.stepIndex = index + 1;
    return { prevSample, predOriginalSample: denoised };
  }

  /** sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·noise. */
  addNoise(originalSample: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    checkSameLength(OWNER, originalSample, 'originalSample', noise, 'noise');
    const a = this.schedule.alphasCumprod[timestep];
    if (a === undefined || !Number.isInteger(timestep)) throw new RangeError(`${OWNER}: no training timestep \`${timestep}\``);
    const sa = f32(Math.sqrt(a));
    const sb = f32(Math.sqrt(f32(1 - a)));
    return originalSample.map((x, i) => f32(sa * x) + f32(sb * noise[i]));
  }
}
