import { ConfigReader } from './config-reader.js';
import { f32 } from './float32.js';
import { integerTimesteps, readTrainSchedule, TIMESTEP_SPACINGS, type TimestepSpacing, type TrainSchedule } from './schedule.js';
import { checkSameLength, checkStep, checkSteps, drawNoise, outBuffer, reuse } from './step-helpers.js';
import type { LinearStep, NoiseSource, Scheduler, SchedulerConfig, StepResult } from './types.js';

// Denoising Diffusion Implicit Models (Song, Meng & Ermon 2021), eq. 12, as diffusers' DDIMScheduler.

const OWNER = 'DDIMScheduler';

export interface DdimOptions {
  /** η of eq. 16: 0 is deterministic DDIM, 1 is DDPM-like. Default 0 (diffusers' pipelines' default). */
  eta?: number;
}

export class DDIMScheduler implements Scheduler {
  readonly order = 1;
  readonly initNoiseSigma = 1;
  timesteps: Float64Array = new Float64Array(0);

  private readonly schedule: TrainSchedule;
  private readonly finalAlphaCumprod: number;
  private readonly predictionType: 'epsilon' | 'sample' | 'v_prediction';
  private readonly clipSample: boolean;
  private readonly clipSampleRange: number;
  private readonly timestepSpacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private readonly eta: number;
  private numInferenceSteps = 0;
  /** predOriginalSample and the η noise, reused from step to step (the contract: valid until the next step). */
  private x0: Float32Array | undefined;
  private noiseBuffer: Float32Array | undefined;

  constructor(config: SchedulerConfig, options: DdimOptions = {}) {
    const c = new ConfigReader(config, OWNER);
    this.schedule = readTrainSchedule(c);
    // set_alpha_to_one: the step past t = 0 lands on ᾱ = 1 (a clean sample) rather than on ᾱ_0.
    this.finalAlphaCumprod = c.boolean('set_alpha_to_one', true) ? 1 : this.schedule.alphasCumprod[0];
    this.predictionType = c.oneOf('prediction_type', ['epsilon', 'sample', 'v_prediction'], 'epsilon');
    c.refuseIf('thresholding', c.boolean('thresholding', false), 'dynamic thresholding is not implemented (it is for pixel-space models)');
    this.clipSample = c.boolean('clip_sample', true);
    this.clipSampleRange = c.number('clip_sample_range', 1, { test: (n) => n > 0, expected: 'a positive number' });
    this.timestepSpacing = c.oneOf('timestep_spacing', TIMESTEP_SPACINGS, 'leading');
    this.stepsOffset = c.integer('steps_offset', 0, 0);
    const eta = options.eta ?? 0;
    if (!Number.isFinite(eta) || eta < 0) throw new RangeError(`${OWNER}: expected \`eta\` to be a number ≥ 0, got \`${eta}\``);
    this.eta = eta;
  }

  setTimesteps(numInferenceSteps: number): void {
    checkSteps(OWNER, numInferenceSteps, this.schedule.numTrainTimesteps);
    this.numInferenceSteps = numInferenceSteps;
    this.timesteps = integerTimesteps(this.timestepSpacing, this.schedule.numTrainTimesteps, numInferenceSteps, this.stepsOffset);
  }

  scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise?: NoiseSource, out?: Float32Array): StepResult {
    checkStep(OWNER, this.numInferenceSteps > 0, modelOutput, sample);
    const { sqrtA, sqrtB, stdDevT, dirCoeff, sqrtAPrev } = this.stepScalars(timestep);
    const range = this.clipSampleRange;

    const prevSample = outBuffer(OWNER, out, sample, modelOutput);
    const predOriginalSample = reuse(this.x0, sample.length);
    this.x0 = predOriginalSample;
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i];
      const m = modelOutput[i];
      let x0: number;
      let eps: number;
      if (this.predictionType === 'epsilon') {
        x0 = f32(f32(x - f32(sqrtB * m)) / sqrtA);
        eps = m;
      } else if (this.predictionType === 'sample') {
        x0 = m;
        eps = f32(f32(x - f32(sqrtA * m)) / sqrtB);
      } else {
        x0 = f32(f32(sqrtA * x) - f32(sqrtB * m));
        eps = f32(f32(sqrtA * m) + f32(sqrtB * x));
      }
      if (this.clipSample) x0 = Math.min(Math.max(x0, -range), range);
      predOriginalSample[i] = x0;
      prevSample[i] = f32(sqrtAPrev * x0) + f32(dirCoeff * eps);
    }
    if (this.eta > 0) {
      const variance = drawNoise(OWNER, noise, (this.noiseBuffer = reuse(this.noiseBuffer, sample.length)));
      for (let i = 0; i < prevSample.length; i++) prevSample[i] += f32(stdDevT * variance[i]);
    }
    return { prevSample, predOriginalSample };
  }

  /** sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·noise (the forward process, DDPM eq. 4). */
  /** The coefficients of eq. 12 as a {@link LinearStep}: with η = 0 the step draws no noise. */
  linearStep(timestep: number): LinearStep | undefined {
    if (this.eta > 0) return undefined;
    if (this.numInferenceSteps <= 0) throw new Error(`${OWNER}: call setTimesteps before linearStep`);
    const { sqrtA, sqrtB, dirCoeff, sqrtAPrev } = this.stepScalars(timestep);
    const clip = this.clipSample ? this.clipSampleRange : undefined;
    // x0 and ε from x and m, as step()'s three branches; x_{t−1} = sqrt(ᾱ_prev)·x0 + dirCoeff·ε.
    if (this.predictionType === 'epsilon') {
      return { x0Sample: f32(1 / sqrtA), x0Output: f32(-sqrtB / sqrtA), clip, prevSample: 0, prevOutput: dirCoeff, prevX0: sqrtAPrev };
    }
    if (this.predictionType === 'sample') {
      return { x0Sample: 0, x0Output: 1, clip, prevSample: f32(dirCoeff / sqrtB), prevOutput: f32((-dirCoeff * sqrtA) / sqrtB), prevX0: sqrtAPrev };
    }
    return { x0Sample: sqrtA, x0Output: -sqrtB, clip, prevSample: f32(dirCoeff * sqrtB), prevOutput: f32(dirCoeff * sqrtA), prevX0: sqrtAPrev };
  }

  /** The scalars of one step at `timestep`, op by op in float32 as diffusers' DDIMScheduler.step. */
  private stepScalars(timestep: number): { sqrtA: number; sqrtB: number; stdDevT: number; dirCoeff: number; sqrtAPrev: number } {
    const ac = this.schedule.alphasCumprod;
    const t = this.trainIndex(timestep);
    // diffusers steps back by N // n whatever the spacing, so trailing and linspace schedules keep their quirk.
    const prevT = t - Math.floor(this.schedule.numTrainTimesteps / this.numInferenceSteps);
    const alphaProdT = ac[t];
    const alphaProdTPrev = prevT >= 0 ? ac[prevT] : this.finalAlphaCumprod;
    const betaProdT = f32(1 - alphaProdT);
    const sqrtA = f32(Math.sqrt(alphaProdT));
    const sqrtB = f32(Math.sqrt(betaProdT));

    // σ_t(η) of eq. 16, op by op in float32 as diffusers' _get_variance.
    const variance = f32(f32(f32(1 - alphaProdTPrev) / betaProdT) * f32(1 - f32(alphaProdT / alphaProdTPrev)));
    const stdDevT = f32(f32(this.eta) * f32(Math.sqrt(variance)));
    const dirCoeff = f32(Math.sqrt(f32(f32(1 - alphaProdTPrev) - f32(stdDevT * stdDevT))));
    const sqrtAPrev = f32(Math.sqrt(alphaProdTPrev));
    return { sqrtA, sqrtB, stdDevT, dirCoeff, sqrtAPrev };
  }

  addNoise(originalSample: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    checkSameLength(OWNER, originalSample, 'originalSample', noise, 'noise');
    const a = this.schedule.alphasCumprod[this.trainIndex(timestep)];
    const sa = f32(Math.sqrt(a));
    const sb = f32(Math.sqrt(f32(1 - a)));
    return originalSample.map((x, i) => f32(sa * x) + f32(sb * noise[i]));
  }

  private trainIndex(timestep: number): number {
    if (!Number.isInteger(timestep) || timestep < 0 || timestep >= this.schedule.numTrainTimesteps) {
      throw new RangeError(`${OWNER}: expected \`timestep\` to be an integer from 0 to ${this.schedule.numTrainTimesteps - 1}, got \`${timestep}\``);
    }
    return timestep;
  }
}
