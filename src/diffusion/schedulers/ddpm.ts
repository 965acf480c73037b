import { ConfigReader } from './config-reader.js';
import { f32 } from './float32.js';
import { BETA_SCHEDULES, integerTimesteps, readTrainSchedule, TIMESTEP_SPACINGS, type TimestepSpacing, type TrainSchedule } from './schedule.js';
import { checkSameLength, checkStep, checkSteps, drawNoise, outBuffer, reuse } from './step-helpers.js';
import type { NoiseSource, Scheduler, SchedulerConfig, StepResult } from './types.js';

// Denoising Diffusion Probabilistic Models (Ho, Jain & Abbeel 2020), ancestral sampling with the posterior
// q(x_{t-1} | x_t, x_0) of eqs. 6–7, as diffusers' DDPMScheduler.

const OWNER = 'DDPMScheduler';

type VarianceType = 'fixed_small' | 'fixed_small_log' | 'fixed_large';

export class DDPMScheduler implements Scheduler {
  readonly order = 1;
  readonly initNoiseSigma = 1;
  timesteps: Float64Array = new Float64Array(0);
  /** predOriginalSample and drawn noise, reused from step to step (the contract: valid until the next step). */
  private x0Buffer: Float32Array | undefined;
  private noiseBuffer: Float32Array | undefined;

  private readonly schedule: TrainSchedule;
  private readonly varianceType: VarianceType;
  private readonly predictionType: 'epsilon' | 'sample' | 'v_prediction';
  private readonly clipSample: boolean;
  private readonly clipSampleRange: number;
  private readonly timestepSpacing: TimestepSpacing;
  private readonly stepsOffset: number;

  constructor(config: SchedulerConfig) {
    const c = new ConfigReader(config, OWNER);
    this.schedule = readTrainSchedule(c, { allowed: [...BETA_SCHEDULES, 'sigmoid'] });
    const varianceType = c.oneOf(
      'variance_type',
      ['fixed_small', 'fixed_small_log', 'fixed_large', 'fixed_large_log', 'learned', 'learned_range'],
      'fixed_small',
    );
    c.refuseIf(
      'variance_type',
      varianceType === 'learned' || varianceType === 'learned_range' || varianceType === 'fixed_large_log',
      'learned variances need a model that outputs twice the channels, and fixed_large_log gives NaN in diffusers',
    );
    this.varianceType = varianceType as VarianceType;
    this.predictionType = c.oneOf('prediction_type', ['epsilon', 'sample', 'v_prediction'], 'epsilon');
    c.refuseIf('thresholding', c.boolean('thresholding', false), 'dynamic thresholding is not implemented (it is for pixel-space models)');
    this.clipSample = c.boolean('clip_sample', true);
    this.clipSampleRange = c.number('clip_sample_range', 1, { test: (n) => n > 0, expected: 'a positive number' });
    this.timestepSpacing = c.oneOf('timestep_spacing', TIMESTEP_SPACINGS, 'leading');
    this.stepsOffset = c.integer('steps_offset', 0, 0);
  }

  setTimesteps(numInferenceSteps: number): void {
    checkSteps(OWNER, numInferenceSteps, this.schedule.numTrainTimesteps);
    this.timesteps = integerTimesteps(this.timestepSpacing, this.schedule.numTrainTimesteps, numInferenceSteps, this.stepsOffset);
  }

  scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise?: NoiseSource, out?: Float32Array): StepResult {
    checkStep(OWNER, this.timesteps.length > 0, modelOutput, sample);
    const index = this.timesteps.indexOf(timestep);
    if (index < 0) throw new Error(`${OWNER}: timestep \`${timestep}\` is not in the current schedule; pass one of \`scheduler.timesteps\``);
    const t = timestep;
    const prevT = index === this.timesteps.length - 1 ? -1 : this.timesteps[index + 1];
    const ac = this.schedule.alphasCumprod;
    const alphaProdT = ac[t];
    const alphaProdTPrev = prevT >= 0 ? ac[prevT] : 1;
    const betaProdT = f32(1 - alphaProdT);
    const betaProdTPrev = f32(1 - alphaProdTPrev);
    const currentAlphaT = f32(alphaProdT / alphaProdTPrev);
    const currentBetaT = f32(1 - currentAlphaT);
    const sqrtA = f32(Math.sqrt(alphaProdT));
    const sqrtB = f32(Math.sqrt(betaProdT));
    // Eq. 7: μ̃ = (sqrt(ᾱ_{t-1}) β_t / (1 − ᾱ_t)) x0 + (sqrt(α_t) (1 − ᾱ_{t-1}) / (1 − ᾱ_t)) x_t.
    const x0Coeff = f32(f32(f32(Math.sqrt(alphaProdTPrev)) * currentBetaT) / betaProdT);
    const xtCoeff = f32(f32(f32(Math.sqrt(currentAlphaT)) * betaProdTPrev) / betaProdT);
    const range = this.clipSampleRange;

    const prevSample = outBuffer(OWNER, out, sample, modelOutput);
    const predOriginalSample = (this.x0Buffer = reuse(this.x0Buffer, sample.length));
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
      predOriginalSample[i] = x0;
      prevSample[i] = f32(x0Coeff * x0) + f32(xtCoeff * x);
    }
    if (t > 0) {
      const z = drawNoise(OWNER, noise, (this.noiseBuffer = reuse(this.noiseBuffer, sample.length)));
      // β̃_t of eq. 7 (fixed_small), or β_t (fixed_large); clamped as diffusers does so log() stays finite.
      const posterior = Math.max(f32(f32(betaProdTPrev / betaProdT) * currentBetaT), 1e-20);
      const std =
        this.varianceType === 'fixed_large'
          ? f32(Math.sqrt(currentBetaT))
          : this.varianceType === 'fixed_small_log'
            ? f32(Math.exp(f32(0.5 * f32(Math.log(posterior)))))
            : f32(Math.sqrt(posterior));
      for (let i = 0; i < prevSample.length; i++) prevSample[i] += f32(std * z[i]);
    }
    return { prevSample, predOriginalSample };
  }

  /** sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·noise (eq. 4). */
  addNoise(originalSample: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    checkSameLength(OWNER, originalSample, 'originalSample', noise, 'noise');
    if (!Number.isInteger(timestep) || timestep < 0 || timestep >= this.schedule.numTrainTimesteps) {
      throw new RangeError(`${OWNER}: expected \`timestep\` to be an integer from 0 to ${this.schedule.numTrainTimesteps - 1}, got \`${timestep}\``);
    }
    const a = this.schedule.alphasCumprod[timestep];
    const sa = f32(Math.sqrt(a));
    const sb = f32(Math.sqrt(f32(1 - a)));
    return originalSample.map((x, i) => f32(sa * x) + f32(sb * noise[i]));
  }
}
