import { ConfigReader } from './config-reader.js';
import { f32, sqrtSigmaSqPlusOne, vCoefficients } from './float32.js';
import {
  exponentialSigmas,
  interpIndex,
  karrasSigmas,
  linspace,
  readTrainSchedule,
  sigmasFromAlphasCumprod,
  sigmaTimesteps,
  sigmaToT,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
  type TrainSchedule,
} from './schedule.js';
import { checkSameLength, checkStep, checkSteps, indexForTimestep, outBuffer, scaleBySigma } from './step-helpers.js';
import type { NoiseSource, Scheduler, SchedulerConfig, StepResult } from './types.js';

// Heun's 2nd-order method on the probability-flow ODE (Karras et al. 2022, "Elucidating the Design Space of
// Diffusion-Based Generative Models", Algorithm 1), as diffusers' HeunDiscreteScheduler: two model calls per step,
// so every timestep after the first appears twice in `timesteps`.

const OWNER = 'HeunDiscreteScheduler';

export class HeunDiscreteScheduler implements Scheduler {
  readonly order = 2;
  timesteps: Float64Array = new Float64Array(0);
  sigmas: Float64Array;

  private readonly schedule: TrainSchedule;
  private readonly predictionType: 'epsilon' | 'v_prediction' | 'sample';
  private readonly timestepSpacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private readonly sigmaSchedule: 'default' | 'karras' | 'exponential';
  /** Not among this class's own keys in diffusers, but a config carrying them (saved by Euler) is honoured there too. */
  private readonly sigmaMin: number | undefined;
  private readonly sigmaMax: number | undefined;
  private readonly clipSample: boolean;
  private readonly clipSampleRange: number;
  private stepIndex: number | undefined;
  private scaled: Float32Array | undefined;
  /** First-order state kept between the two calls of one Heun step. */
  private prevDerivative: Float32Array | undefined;
  private dt: number | undefined;
  private firstSample: Float32Array | undefined;

  constructor(config: SchedulerConfig) {
    const c = new ConfigReader(config, OWNER);
    // diffusers' Heun defaults differ from the others: beta 0.00085 … 0.012.
    this.schedule = readTrainSchedule(c, { betaStart: 0.00085, betaEnd: 0.012, zeroSnr: false });
    this.predictionType = c.oneOf('prediction_type', ['epsilon', 'v_prediction', 'sample'], 'epsilon');
    this.timestepSpacing = c.oneOf('timestep_spacing', TIMESTEP_SPACINGS, 'linspace');
    this.stepsOffset = c.integer('steps_offset', 0, 0);
    const karras = c.boolean('use_karras_sigmas', false);
    const exponential = c.boolean('use_exponential_sigmas', false);
    c.refuseIf('use_beta_sigmas', c.boolean('use_beta_sigmas', false), 'beta sigmas need scipy.stats.beta.ppf, which this port does not have');
    if (karras && exponential) throw new Error(`Only one of \`use_karras_sigmas\`, \`use_exponential_sigmas\` can be true in the ${OWNER} config`);
    this.sigmaSchedule = karras ? 'karras' : exponential ? 'exponential' : 'default';
    const positive = { test: (n: number) => n > 0, expected: 'a positive number' };
    this.sigmaMin = c.optionalNumber('sigma_min', positive);
    this.sigmaMax = c.optionalNumber('sigma_max', positive);
    this.clipSample = c.boolean('clip_sample', false);
    this.clipSampleRange = c.number('clip_sample_range', 1, positive);
    const train = sigmasFromAlphasCumprod(this.schedule.alphasCumprod).reverse();
    this.sigmas = Float64Array.from([...train, 0]);
  }

  get initNoiseSigma(): number {
    let max = 0;
    for (const s of this.sigmas) if (s > max) max = s;
    return this.timestepSpacing === 'leading' ? sqrtSigmaSqPlusOne(max) : max;
  }

  setTimesteps(numInferenceSteps: number): void {
    const nTrain = this.schedule.numTrainTimesteps;
    checkSteps(OWNER, numInferenceSteps, nTrain);
    const n = numInferenceSteps;
    let timesteps = sigmaTimesteps(this.timestepSpacing, nTrain, n, this.stepsOffset);

    const trainSigmas = sigmasFromAlphasCumprod(this.schedule.alphasCumprod);
    const logSigmas = trainSigmas.map(Math.log);
    let sigmas: Float64Array = timesteps.map((t) => interpIndex(t, trainSigmas));
    if (this.sigmaSchedule !== 'default') {
      const sigmaMin = this.sigmaMin ?? sigmas[sigmas.length - 1];
      const sigmaMax = this.sigmaMax ?? sigmas[0];
      sigmas = this.sigmaSchedule === 'karras' ? karrasSigmas(sigmaMin, sigmaMax, n) : exponentialSigmas(sigmaMin, sigmaMax, n);
      timesteps = sigmas.map((s) => sigmaToT(s, logSigmas));
    }
    // σ_0, then every later sigma twice (the corrector call reuses it), then the final 0.
    const s32 = [...sigmas, 0].map(f32);
    const doubled = [s32[0]];
    for (let i = 1; i < s32.length - 1; i++) doubled.push(s32[i], s32[i]);
    doubled.push(s32[s32.length - 1]);
    this.sigmas = Float64Array.from(doubled);
    const t32 = [...timesteps].map(f32);
    const ts = [t32[0]];
    for (let i = 1; i < t32.length; i++) ts.push(t32[i], t32[i]);
    this.timesteps = Float64Array.from(ts);
    this.stepIndex = undefined;
    this.prevDerivative = undefined;
    this.dt = undefined;
    this.firstSample = undefined;
  }

  scaleModelInput(sample: Float32Array, timestep: number, into?: Float32Array): Float32Array {
    if (this.stepIndex === undefined) this.stepIndex = indexForTimestep(this.timesteps, timestep, OWNER);
    const out = scaleBySigma(OWNER, sample, this.sigmas[this.stepIndex], into, this.scaled);
    if (into === undefined) this.scaled = out;
    return out;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, _noise?: NoiseSource, out?: Float32Array): StepResult {
    checkStep(OWNER, this.timesteps.length > 0, modelOutput, sample);
    if (this.stepIndex === undefined) this.stepIndex = indexForTimestep(this.timesteps, timestep, OWNER);
    const index = this.stepIndex;
    if (index >= this.timesteps.length) throw new Error(`${OWNER}: step() called past the last timestep`);
    const firstOrder = this.dt === undefined;
    const sigma = firstOrder ? this.sigmas[index] : this.sigmas[index - 1];
    const sigmaNext = firstOrder ? this.sigmas[index + 1] : this.sigmas[index];
    const sigmaHat = sigma; // gamma = 0 in diffusers
    // The predictor's denoiser runs at σ̂, the corrector's at σ_next.
    const sigmaInput = firstOrder ? sigmaHat : sigmaNext;
    const { vScale, xDiv } = vCoefficients(sigmaInput);
    const range = this.clipSampleRange;
    const predOriginalSample = new Float32Array(sample.length);
    const prevSample = outBuffer(OWNER, out, sample, modelOutput);

    if (firstOrder) {
      const derivative = new Float32Array(sample.length);
      const dt = f32(sigmaNext - sigmaHat);
      for (let i = 0; i < sample.length; i++) {
        const x = sample[i];
        let x0 = this.denoised(x, modelOutput[i], sigmaInput, vScale, xDiv);
        if (this.clipSample) x0 = Math.min(Math.max(x0, -range), range);
        predOriginalSample[i] = x0;
        derivative[i] = f32(x - x0) / sigmaHat;
        prevSample[i] = x + f32(derivative[i] * dt);
      }
      this.prevDerivative = derivative;
      this.dt = dt;
      this.firstSample = Float32Array.from(sample);
    } else {
      const prevDerivative = this.prevDerivative as Float32Array;
      const from = this.firstSample as Float32Array;
      const dt = this.dt as number;
      for (let i = 0; i < sample.length; i++) {
        const x = sample[i];
        let x0 = this.denoised(x, modelOutput[i], sigmaInput, vScale, xDiv);
        if (this.clipSample) x0 = Math.min(Math.max(x0, -range), range);
        predOriginalSample[i] = x0;
        const derivative = f32(f32(x - x0) / sigmaNext);
        prevSample[i] = from[i] + f32(f32(f32(prevDerivative[i] + derivative) / 2) * dt);
      }
      this.prevDerivative = undefined;
      this.dt = undefined;
      this.firstSample = undefined;
    }
    this.stepIndex = index + 1;
    return { prevSample, predOriginalSample };
  }

  private denoised(x: number, m: number, sigma: number, vScale: number, xDiv: number): number {
    if (this.predictionType === 'epsilon') return f32(x - f32(sigma * m));
    if (this.predictionType === 'v_prediction') return f32(f32(m * vScale) + f32(x / xDiv));
    return m;
  }

  /** x0 + σ·noise at `timestep`. */
  addNoise(originalSample: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    checkSameLength(OWNER, originalSample, 'originalSample', noise, 'noise');
    const sigma = this.sigmas[indexForTimestep(this.timesteps, timestep, OWNER)];
    return originalSample.map((x, i) => x + f32(noise[i] * sigma));
  }
}
