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
import { checkSameLength, checkStep, checkSteps, indexForTimestep, outBuffer, reuse, scaleBySigma } from './step-helpers.js';
import type { NoiseSource, Scheduler, SchedulerConfig, StepResult } from './types.js';

// Linear multistep (Adams–Bashforth with coefficients integrated over sigma) on the probability-flow ODE, as
// k-diffusion's sample_lms (Karras et al. 2022 framing) and diffusers' LMSDiscreteScheduler, order 4.

const OWNER = 'LMSDiscreteScheduler';
const LMS_ORDER = 4;

export class LMSDiscreteScheduler implements Scheduler {
  readonly order = 1;
  timesteps: Float64Array = new Float64Array(0);
  /** predOriginalSample and the weighted sum, reused from step to step (predOriginalSample: valid until the next step). */
  private x0Buffer: Float32Array | undefined;
  private accBuffer: Float32Array | undefined;
  sigmas: Float64Array;

  private readonly schedule: TrainSchedule;
  private readonly predictionType: 'epsilon' | 'v_prediction' | 'sample';
  private readonly timestepSpacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private readonly sigmaSchedule: 'default' | 'karras' | 'exponential';
  /** Not among this class's own keys in diffusers, but a config carrying them (saved by Euler) is honoured there too. */
  private readonly sigmaMin: number | undefined;
  private readonly sigmaMax: number | undefined;
  private stepIndex: number | undefined;
  /** Past ODE derivatives (copies), newest last, at most LMS_ORDER. */
  private derivatives: Float32Array[] = [];
  private scaled: Float32Array | undefined;

  constructor(config: SchedulerConfig) {
    const c = new ConfigReader(config, OWNER);
    this.schedule = readTrainSchedule(c, { zeroSnr: false });
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
    if (this.sigmaSchedule === 'karras') {
      // LMS's own _convert_to_karras ignores sigma_min/sigma_max from the config (diffusers).
      sigmas = karrasSigmas(sigmas[sigmas.length - 1], sigmas[0], n);
      timesteps = sigmas.map((s) => sigmaToT(s, logSigmas));
    } else if (this.sigmaSchedule === 'exponential') {
      sigmas = exponentialSigmas(this.sigmaMin ?? sigmas[sigmas.length - 1], this.sigmaMax ?? sigmas[0], n);
      timesteps = sigmas.map((s) => sigmaToT(s, logSigmas));
    }
    this.sigmas = Float64Array.from([...sigmas, 0], f32);
    this.timesteps = timesteps.map(f32);
    this.stepIndex = undefined;
    this.derivatives = [];
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
    const sigma = this.sigmas[index];
    const { vScale, xDiv } = vCoefficients(sigma);
    const predOriginalSample = (this.x0Buffer = reuse(this.x0Buffer, sample.length));
    // The history keeps LMS_ORDER derivatives: the oldest one's buffer takes the new one (a ring, no allocation).
    const derivative = reuse(this.derivatives.length >= LMS_ORDER ? this.derivatives.shift() : undefined, sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i];
      const m = modelOutput[i];
      const x0 =
        this.predictionType === 'epsilon' ? f32(x - f32(sigma * m)) : this.predictionType === 'v_prediction' ? f32(f32(m * vScale) + f32(x / xDiv)) : m;
      predOriginalSample[i] = x0;
      derivative[i] = f32(x - x0) / sigma;
    }
    this.derivatives.push(derivative);

    // The coefficients use the full order's Lagrange basis even when fewer derivatives are stored yet (a start
    // mid-schedule); diffusers' zip() then pairs only as many as there are.
    const order = Math.min(index + 1, LMS_ORDER);
    const terms = Math.min(order, this.derivatives.length);
    const acc = (this.accBuffer = reuse(this.accBuffer, sample.length));
    for (let k = 0; k < terms; k++) {
      const coeff = f32(this.lmsCoefficient(order, index, k));
      const d = this.derivatives[this.derivatives.length - 1 - k];
      for (let i = 0; i < acc.length; i++) acc[i] = k === 0 ? f32(coeff * d[i]) : acc[i] + f32(coeff * d[i]);
    }
    const prevSample = outBuffer(OWNER, out, sample, modelOutput);
    for (let i = 0; i < prevSample.length; i++) prevSample[i] = sample[i] + acc[i];
    this.stepIndex = index + 1;
    return { prevSample, predOriginalSample };
  }

  /**
   * ∫ from σ_t to σ_{t+1} of the Lagrange basis polynomial for the derivative `current` steps back. diffusers
   * integrates it with scipy's quad; the integrand is a polynomial of degree < 4, which 4-point Gauss–Legendre
   * integrates exactly.
   */
  private lmsCoefficient(order: number, t: number, current: number): number {
    const s = this.sigmas;
    const basis = (tau: number): number => {
      let prod = 1;
      for (let k = 0; k < order; k++) {
        if (k === current) continue;
        prod *= (tau - s[t - k]) / (s[t - current] - s[t - k]);
      }
      return prod;
    };
    const a = s[t];
    const b = s[t + 1];
    const mid = (a + b) / 2;
    const half = (b - a) / 2;
    let sum = 0;
    for (let i = 0; i < GAUSS_NODES.length; i++) sum += GAUSS_WEIGHTS[i] * basis(mid + half * GAUSS_NODES[i]);
    return sum * half;
  }

  /** x0 + σ·noise at `timestep`. */
  addNoise(originalSample: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    checkSameLength(OWNER, originalSample, 'originalSample', noise, 'noise');
    const sigma = this.sigmas[indexForTimestep(this.timesteps, timestep, OWNER)];
    return originalSample.map((x, i) => x + f32(noise[i] * sigma));
  }
}

// 4-point Gauss–Legendre on [−1, 1] (Abramowitz & Stegun, Table 25.4).
const GAUSS_NODES = [-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526];
const GAUSS_WEIGHTS = [0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538];
