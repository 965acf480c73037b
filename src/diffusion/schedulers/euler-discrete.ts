import { ConfigReader } from './config-reader.js';
import { f32, sqrtSigmaSqPlusOne, vCoefficients } from './float32.js';
import {
  exponentialSigmas,
  interpIndex,
  karrasSigmas,
  linspace,
  linspaceF32,
  readTrainSchedule,
  sigmasFromAlphasCumprod,
  sigmaTimesteps,
  sigmaToT,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
  type TrainSchedule,
} from './schedule.js';
import { checkSameLength, checkStep, checkSteps, indexForTimestep, outBuffer, reuse, scaleBySigma } from './step-helpers.js';
import type { LinearStep, NoiseSource, Scheduler, SchedulerConfig, StepResult } from './types.js';

// Euler method on the probability-flow ODE in sigma (Karras et al. 2022, "Elucidating the Design Space of
// Diffusion-Based Generative Models", Algorithm 2 without churn), as diffusers' EulerDiscreteScheduler.

const OWNER = 'EulerDiscreteScheduler';

export type PredictionType = 'epsilon' | 'v_prediction' | 'sample' | 'original_sample';

export class EulerDiscreteScheduler implements Scheduler {
  readonly order = 1;
  timesteps: Float64Array = new Float64Array(0);
  /** σ per entry of `timesteps`, plus the final sigma (0 or σ_min). */
  sigmas: Float64Array;

  private readonly schedule: TrainSchedule;
  private readonly predictionType: PredictionType;
  private readonly timestepSpacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private readonly interpolationType: 'linear' | 'log_linear';
  private readonly sigmaSchedule: 'default' | 'karras' | 'exponential';
  private readonly sigmaMin: number | undefined;
  private readonly sigmaMax: number | undefined;
  private readonly continuousV: boolean;
  private readonly finalSigmasType: 'zero' | 'sigma_min';
  /** σ of every training timestep, ascending (fixed once the schedule is read). */
  private readonly trainSigmas: Float64Array;
  private stepIndex: number | undefined;
  private scaled: Float32Array | undefined;
  /** predOriginalSample, reused from step to step (the contract: valid until the next step). */
  private denoised: Float32Array | undefined;

  constructor(config: SchedulerConfig) {
    const c = new ConfigReader(config, OWNER);
    this.schedule = readTrainSchedule(c);
    if (c.boolean('rescale_betas_zero_snr', false)) {
      // Close to 0 without being 0, so the first sigma is not infinite (diffusers: fp16's smallest subnormal).
      this.schedule.alphasCumprod[this.schedule.numTrainTimesteps - 1] = 2 ** -24;
    }
    this.predictionType = c.oneOf('prediction_type', ['epsilon', 'v_prediction', 'sample', 'original_sample'], 'epsilon');
    this.timestepSpacing = c.oneOf('timestep_spacing', TIMESTEP_SPACINGS, 'linspace');
    this.stepsOffset = c.integer('steps_offset', 0, 0);
    this.interpolationType = c.oneOf('interpolation_type', ['linear', 'log_linear'], 'linear');
    const karras = c.boolean('use_karras_sigmas', false);
    const exponential = c.boolean('use_exponential_sigmas', false);
    const beta = c.boolean('use_beta_sigmas', false);
    c.refuseIf('use_beta_sigmas', beta, 'beta sigmas need scipy.stats.beta.ppf, which this port does not have');
    if (Number(karras) + Number(exponential) > 1) {
      throw new Error(`Only one of \`use_karras_sigmas\`, \`use_exponential_sigmas\` can be true in the ${OWNER} config`);
    }
    this.sigmaSchedule = karras ? 'karras' : exponential ? 'exponential' : 'default';
    const positive = { test: (n: number) => n > 0, expected: 'a positive number' };
    this.sigmaMin = c.optionalNumber('sigma_min', positive);
    this.sigmaMax = c.optionalNumber('sigma_max', positive);
    const timestepType = c.oneOf('timestep_type', ['discrete', 'continuous'], 'discrete');
    this.continuousV = timestepType === 'continuous' && this.predictionType === 'v_prediction';
    this.finalSigmasType = c.oneOf('final_sigmas_type', ['zero', 'sigma_min'], 'zero');

    // Before setTimesteps: the full training schedule, as diffusers' constructor leaves it.
    this.trainSigmas = sigmasFromAlphasCumprod(this.schedule.alphasCumprod);
    this.sigmas = new Float64Array(this.trainSigmas.length + 1);
    this.sigmas.set(this.trainSigmas);
    this.sigmas.subarray(0, this.trainSigmas.length).reverse();
  }

  get initNoiseSigma(): number {
    let max = 0;
    for (const s of this.sigmas) if (s > max) max = s;
    return this.timestepSpacing === 'linspace' || this.timestepSpacing === 'trailing' ? max : sqrtSigmaSqPlusOne(max);
  }

  setTimesteps(numInferenceSteps: number): void {
    const nTrain = this.schedule.numTrainTimesteps;
    checkSteps(OWNER, numInferenceSteps, nTrain);
    const n = numInferenceSteps;
    let timesteps = sigmaTimesteps(this.timestepSpacing, nTrain, n, this.stepsOffset);

    const { trainSigmas } = this;
    let sigmas: Float64Array;
    if (this.interpolationType === 'linear') {
      sigmas = timesteps.map((t) => interpIndex(t, trainSigmas));
    } else {
      // torch.linspace(log σ_max, log σ_min, n + 1).exp(): one more sigma than timesteps, as diffusers has it.
      sigmas = linspaceF32(Math.log(trainSigmas[nTrain - 1]), Math.log(trainSigmas[0]), n + 1).map((x) => f32(Math.exp(x)));
    }
    if (this.sigmaSchedule !== 'default') {
      const sigmaMin = this.sigmaMin ?? sigmas[sigmas.length - 1];
      const sigmaMax = this.sigmaMax ?? sigmas[0];
      sigmas = this.sigmaSchedule === 'karras' ? karrasSigmas(sigmaMin, sigmaMax, n) : exponentialSigmas(sigmaMin, sigmaMax, n);
      const logSigmas = trainSigmas.map(Math.log);
      timesteps = sigmas.map((s) => sigmaToT(s, logSigmas));
    }
    const sigmaLast = this.finalSigmasType === 'zero' ? 0 : trainSigmas[0];
    this.sigmas = Float64Array.from([...sigmas, sigmaLast], f32);
    this.timesteps = this.continuousV
      ? Float64Array.from(this.sigmas.subarray(0, this.sigmas.length - 1), (s) => f32(0.25 * Math.log(s)))
      : timesteps.map(f32);
    this.stepIndex = undefined;
  }

  /** x / sqrt(σ² + 1): the UNet was trained on unit-variance inputs. Returns a buffer owned by the scheduler. */
  scaleModelInput(sample: Float32Array, timestep: number, into?: Float32Array): Float32Array {
    if (this.stepIndex === undefined) this.stepIndex = indexForTimestep(this.timesteps, timestep, OWNER);
    const out = scaleBySigma(OWNER, sample, this.sigmas[this.stepIndex], into, this.scaled);
    if (into === undefined) this.scaled = out;
    return out;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, _noise?: NoiseSource, out?: Float32Array): StepResult {
    checkStep(OWNER, this.timesteps.length > 0, modelOutput, sample);
    if (this.stepIndex === undefined) this.stepIndex = indexForTimestep(this.timesteps, timestep, OWNER);
    if (this.stepIndex >= this.timesteps.length) throw new Error(`${OWNER}: step() called past the last timestep`);
    const sigma = this.sigmas[this.stepIndex];
    // diffusers' s_churn defaults to 0, so gamma = 0 and sigmaHat = sigma; no pipeline of ours asks for churn.
    const sigmaHat = sigma;
    const dt = f32(this.sigmas[this.stepIndex + 1] - sigmaHat);
    const prevSample = outBuffer(OWNER, out, sample, modelOutput);
    const predOriginalSample = reuse(this.denoised, sample.length);
    this.denoised = predOriginalSample;
    // One loop per prediction type, so the per-element loop has no branch (the math is the same as one loop's).
    if (this.predictionType === 'epsilon') {
      for (let i = 0; i < sample.length; i++) {
        const x = sample[i];
        const denoised = f32(x - f32(sigmaHat * modelOutput[i]));
        predOriginalSample[i] = denoised;
        prevSample[i] = x + f32(f32(f32(x - denoised) / sigmaHat) * dt);
      }
    } else if (this.predictionType === 'v_prediction') {
      const { vScale, xDiv } = vCoefficients(sigma);
      for (let i = 0; i < sample.length; i++) {
        const x = sample[i];
        const denoised = f32(f32(modelOutput[i] * vScale) + f32(x / xDiv));
        predOriginalSample[i] = denoised;
        prevSample[i] = x + f32(f32(f32(x - denoised) / sigmaHat) * dt);
      }
    } else {
      for (let i = 0; i < sample.length; i++) {
        const x = sample[i];
        const denoised = modelOutput[i];
        predOriginalSample[i] = denoised;
        prevSample[i] = x + f32(f32(f32(x - denoised) / sigmaHat) * dt);
      }
    }
    this.stepIndex++;
    return { prevSample, predOriginalSample };
  }

  /**
   * step() as a {@link LinearStep}: x0 from the prediction type's formula, then x_{t−1} = x + (x − x0)/σ·dt =
   * (1 + dt/σ)·x − (dt/σ)·x0. Advances as step() does.
   */
  linearStep(timestep: number): LinearStep {
    if (this.timesteps.length === 0) throw new Error(`${OWNER}: call setTimesteps before linearStep`);
    if (this.stepIndex === undefined) this.stepIndex = indexForTimestep(this.timesteps, timestep, OWNER);
    if (this.stepIndex >= this.timesteps.length) throw new Error(`${OWNER}: linearStep() called past the last timestep`);
    const sigma = this.sigmas[this.stepIndex];
    const dt = f32(this.sigmas[this.stepIndex + 1] - sigma);
    const k = f32(dt / sigma);
    let x0Sample = 0;
    let x0Output = 1;
    if (this.predictionType === 'epsilon') {
      x0Sample = 1;
      x0Output = -sigma;
    } else if (this.predictionType === 'v_prediction') {
      const { vScale, xDiv } = vCoefficients(sigma);
      x0Sample = f32(1 / xDiv);
      x0Output = vScale;
    }
    this.stepIndex++;
    return { x0Sample, x0Output, prevSample: f32(1 + k), prevOutput: 0, prevX0: -k };
  }

  /** x0 + σ·noise at `timestep` (diffusers' add_noise for the Euler family). */
  addNoise(originalSample: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    checkSameLength(OWNER, originalSample, 'originalSample', noise, 'noise');
    const sigma = this.sigmas[indexForTimestep(this.timesteps, timestep, OWNER)];
    return originalSample.map((x, i) => x + f32(noise[i] * sigma));
  }
}
