import { ConfigReader } from './config-reader.js';
import { f32, sqrtSigmaSqPlusOne } from './float32.js';
import {
  arange,
  exponentialSigmas,
  interpIndex,
  karrasSigmas,
  linspace,
  readTrainSchedule,
  roundHalfEven,
  sigmasFromAlphasCumprod,
  sigmaToT,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
  type TrainSchedule,
} from './schedule.js';
import { checkSameLength, checkStep, checkSteps, drawNoise, outBuffer, reuse } from './step-helpers.js';
import type { NoiseSource, Scheduler, SchedulerConfig, StepResult } from './types.js';

// DPM-Solver++ multistep (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
// Models", Algorithm 2, orders 1–3, midpoint or Heun 2nd-order), with the older DPM-Solver and SDE variants, as
// diffusers' DPMSolverMultistepScheduler.

const OWNER = 'DPMSolverMultistepScheduler';

type AlgorithmType = 'dpmsolver++' | 'dpmsolver' | 'sde-dpmsolver++' | 'sde-dpmsolver';

export class DPMSolverMultistepScheduler implements Scheduler {
  readonly order = 1;
  readonly initNoiseSigma = 1;
  timesteps: Float64Array = new Float64Array(0);
  sigmas: Float64Array = new Float64Array(0);
  /** The SDE variants' noise, reused from step to step. */
  private noiseBuffer: Float32Array | undefined;

  private readonly schedule: TrainSchedule;
  private readonly solverOrder: number;
  private readonly predictionType: 'epsilon' | 'sample' | 'v_prediction';
  private readonly algorithmType: AlgorithmType;
  private readonly solverType: 'midpoint' | 'heun';
  private readonly lowerOrderFinal: boolean;
  private readonly eulerAtFinal: boolean;
  private readonly sigmaSchedule: 'default' | 'karras' | 'exponential' | 'lu';
  private readonly sigmaMin: number | undefined;
  private readonly sigmaMax: number | undefined;
  private readonly finalSigmasType: 'zero' | 'sigma_min';
  private readonly lambdaMinClipped: number;
  private readonly timestepSpacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private readonly betaSchedule: string;
  /** Converted model outputs (x0 for ++, ε otherwise) of the last `solverOrder` steps, oldest first (copies). */
  private modelOutputs: (Float32Array | undefined)[] = [];
  private lowerOrderNums = 0;
  private stepIndex: number | undefined;

  constructor(config: SchedulerConfig) {
    const c = new ConfigReader(config, OWNER);
    this.schedule = readTrainSchedule(c);
    if (c.boolean('rescale_betas_zero_snr', false)) {
      // Close to 0 without being 0, so the first sigma is not infinite (diffusers: fp16's smallest subnormal).
      this.schedule.alphasCumprod[this.schedule.numTrainTimesteps - 1] = 2 ** -24;
    }
    this.betaSchedule = c.oneOf('beta_schedule', ['linear', 'scaled_linear', 'squaredcos_cap_v2'], 'linear');
    this.solverOrder = c.integer('solver_order', 2, 1, 3);
    this.predictionType = c.oneOf('prediction_type', ['epsilon', 'sample', 'v_prediction'], 'epsilon');
    c.refuseIf('thresholding', c.boolean('thresholding', false), 'dynamic thresholding is not implemented (it is for pixel-space models)');
    // diffusers maps `deis` to dpmsolver++ and the UniPC/DEIS solver types to midpoint, so configs saved by those
    // schedulers load here too.
    const algorithm = c.oneOf('algorithm_type', ['dpmsolver++', 'dpmsolver', 'sde-dpmsolver++', 'sde-dpmsolver', 'deis'], 'dpmsolver++');
    this.algorithmType = algorithm === 'deis' ? 'dpmsolver++' : algorithm;
    const solver = c.oneOf('solver_type', ['midpoint', 'heun', 'logrho', 'bh1', 'bh2'], 'midpoint');
    this.solverType = solver === 'heun' ? 'heun' : 'midpoint';
    this.lowerOrderFinal = c.boolean('lower_order_final', true);
    this.eulerAtFinal = c.boolean('euler_at_final', false);
    const karras = c.boolean('use_karras_sigmas', false);
    const exponential = c.boolean('use_exponential_sigmas', false);
    const lu = c.boolean('use_lu_lambdas', false);
    c.refuseIf('use_beta_sigmas', c.boolean('use_beta_sigmas', false), 'beta sigmas need scipy.stats.beta.ppf, which this port does not have');
    c.refuseIf('use_flow_sigmas', c.boolean('use_flow_sigmas', false), 'flow-matching sigmas are for flow models, which this bot does not run');
    if (Number(karras) + Number(exponential) > 1) {
      throw new Error(`Only one of \`use_karras_sigmas\`, \`use_exponential_sigmas\` can be true in the ${OWNER} config`);
    }
    this.sigmaSchedule = karras ? 'karras' : lu ? 'lu' : exponential ? 'exponential' : 'default';
    const positive = { test: (n: number) => n > 0, expected: 'a positive number' };
    this.sigmaMin = c.optionalNumber('sigma_min', positive);
    this.sigmaMax = c.optionalNumber('sigma_max', positive);
    this.finalSigmasType = c.oneOf('final_sigmas_type', ['zero', 'sigma_min'], 'zero');
    if (this.finalSigmasType === 'zero' && (this.algorithmType === 'dpmsolver' || this.algorithmType === 'sde-dpmsolver')) {
      throw new Error(
        `\`final_sigmas_type\` = \`zero\` in the ${OWNER} config is not supported with \`algorithm_type\` = \`${this.algorithmType}\`: use \`sigma_min\``,
      );
    }
    if (this.algorithmType === 'sde-dpmsolver' && this.solverOrder === 3) {
      throw new Error(`\`solver_order\` = 3 in the ${OWNER} config is not supported with \`algorithm_type\` = \`sde-dpmsolver\``);
    }
    this.lambdaMinClipped = c.extendedNumber('lambda_min_clipped', -Infinity);
    if (config.variance_type != null) {
      c.oneOf('variance_type', ['learned', 'learned_range'], 'learned');
      c.refuseIf('variance_type', true, 'learned variances need a model that outputs twice the channels');
    }
    this.timestepSpacing = c.oneOf('timestep_spacing', TIMESTEP_SPACINGS, 'linspace');
    this.stepsOffset = c.integer('steps_offset', 0, 0);
  }

  setTimesteps(numInferenceSteps: number): void {
    const nTrain = this.schedule.numTrainTimesteps;
    checkSteps(OWNER, numInferenceSteps, nTrain);
    const n = numInferenceSteps;
    const ac = this.schedule.alphasCumprod;
    // Clip the schedule where λ(t) = log α_t − log σ_t falls below lambda_min_clipped (searchsorted on ascending λ).
    let clippedIdx = 0;
    for (let t = nTrain - 1; t >= 0; t--) {
      const lambda = Math.log(f32(Math.sqrt(ac[t]))) - Math.log(f32(Math.sqrt(f32(1 - ac[t]))));
      if (f32(lambda) < this.lambdaMinClipped) clippedIdx++;
      else break;
    }
    const lastTimestep = nTrain - clippedIdx;
    let timesteps: Float64Array;
    if (this.timestepSpacing === 'linspace') {
      timesteps = linspace(0, lastTimestep - 1, n + 1).map(roundHalfEven).reverse().subarray(0, n);
    } else if (this.timestepSpacing === 'leading') {
      const ratio = Math.floor(lastTimestep / (n + 1));
      timesteps = Float64Array.from({ length: n }, (_, i) => (n - i) * ratio + this.stepsOffset);
    } else {
      timesteps = arange(lastTimestep, 0, -nTrain / n).map((v) => roundHalfEven(v) - 1);
    }

    const trainSigmas = sigmasFromAlphasCumprod(ac);
    const logSigmas = trainSigmas.map(Math.log);
    const roundT = this.betaSchedule !== 'squaredcos_cap_v2';
    let sigmas: Float64Array;
    if (this.sigmaSchedule === 'karras' || this.sigmaSchedule === 'exponential') {
      const sigmaMin = this.sigmaMin ?? trainSigmas[0];
      const sigmaMax = this.sigmaMax ?? trainSigmas[nTrain - 1];
      sigmas = this.sigmaSchedule === 'karras' ? karrasSigmas(sigmaMin, sigmaMax, n) : exponentialSigmas(sigmaMin, sigmaMax, n);
      timesteps = sigmas.map((s) => sigmaToT(s, logSigmas));
      // diffusers rounds Karras timesteps (except for the cosine schedule) but not exponential ones.
      if (this.sigmaSchedule === 'karras' && roundT) timesteps = timesteps.map(roundHalfEven);
    } else if (this.sigmaSchedule === 'lu') {
      // Lu et al.'s uniform-λ schedule: log σ evenly spaced between its ends.
      const lambdaMax = logSigmas[nTrain - 1];
      const lambdaMin = logSigmas[0];
      sigmas = linspace(0, 1, n).map((r) => Math.exp(lambdaMax + r * (lambdaMin - lambdaMax)));
      timesteps = sigmas.map((s) => sigmaToT(s, logSigmas));
      if (roundT) timesteps = timesteps.map(roundHalfEven);
    } else {
      sigmas = timesteps.map((t) => interpIndex(t, trainSigmas));
    }
    const sigmaLast = this.finalSigmasType === 'sigma_min' ? trainSigmas[0] : 0;
    this.sigmas = Float64Array.from([...sigmas, sigmaLast], f32);
    // Timesteps are int64 in diffusers: astype truncates toward zero.
    this.timesteps = timesteps.map(Math.trunc);
    this.modelOutputs = new Array<Float32Array | undefined>(this.solverOrder).fill(undefined);
    this.lowerOrderNums = 0;
    this.stepIndex = undefined;
  }

  scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise?: NoiseSource, out?: Float32Array): StepResult {
    checkStep(OWNER, this.timesteps.length > 0, modelOutput, sample);
    if (this.stepIndex === undefined) this.stepIndex = this.indexForTimestep(timestep);
    const index = this.stepIndex;
    const len = this.timesteps.length;
    if (index >= len) throw new Error(`${OWNER}: step() called past the last timestep`);
    const lowerOrderFinal =
      index === len - 1 && (this.eulerAtFinal || (this.lowerOrderFinal && len < 15) || this.finalSigmasType === 'zero');
    const lowerOrderSecond = index === len - 2 && this.lowerOrderFinal && len < 15;

    const { converted, x0 } = this.convertModelOutput(modelOutput, sample, index);
    this.modelOutputs.shift();
    this.modelOutputs.push(converted);

    const sde = this.algorithmType === 'sde-dpmsolver++' || this.algorithmType === 'sde-dpmsolver';
    const z = sde ? drawNoise(OWNER, noise, (this.noiseBuffer = reuse(this.noiseBuffer, sample.length))) : undefined;
    const dest = outBuffer(OWNER, out, sample, modelOutput);
    let prevSample: Float32Array;
    if (this.solverOrder === 1 || this.lowerOrderNums < 1 || lowerOrderFinal) {
      prevSample = this.firstOrderUpdate(converted, sample, index, z, dest);
    } else if (this.solverOrder === 2 || this.lowerOrderNums < 2 || lowerOrderSecond) {
      prevSample = this.secondOrderUpdate(sample, index, z, dest);
    } else {
      prevSample = this.thirdOrderUpdate(sample, index, z, dest);
    }
    if (this.lowerOrderNums < this.solverOrder) this.lowerOrderNums++;
    this.stepIndex = index + 1;
    return { prevSample, predOriginalSample: x0 };
  }

  /** diffusers' DPM index_for_timestep: the second of duplicates, and the last index when absent. */
  private indexForTimestep(timestep: number): number {
    const matches: number[] = [];
    this.timesteps.forEach((t, i) => {
      if (t === timestep) matches.push(i);
    });
    if (matches.length === 0) return this.timesteps.length - 1;
    return matches.length > 1 ? matches[1] : matches[0];
  }

  /** α_t = 1 / sqrt(σ² + 1), σ_t = σ·α_t (variance-preserving scalings of the VE sigma), in float32. */
  private alphaSigma(sigma: number): [number, number] {
    const alpha = f32(1 / sqrtSigmaSqPlusOne(sigma));
    return [alpha, f32(sigma * alpha)];
  }

  /** λ = log α_t − log σ_t, the half log-SNR DPM-Solver steps in. */
  private lambda(sigma: number): number {
    const [alpha, sigmaT] = this.alphaSigma(sigma);
    return f32(f32(Math.log(alpha)) - f32(Math.log(sigmaT)));
  }

  private convertModelOutput(modelOutput: Float32Array, sample: Float32Array, index: number): { converted: Float32Array; x0: Float32Array } {
    const [alphaT, sigmaT] = this.alphaSigma(this.sigmas[index]);
    const x0 = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i];
      const m = modelOutput[i];
      x0[i] =
        this.predictionType === 'epsilon'
          ? f32(x - f32(sigmaT * m)) / alphaT
          : this.predictionType === 'sample'
            ? m
            : f32(alphaT * x) - f32(sigmaT * m);
    }
    if (this.algorithmType === 'dpmsolver++' || this.algorithmType === 'sde-dpmsolver++') return { converted: x0, x0 };
    const eps = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i];
      const m = modelOutput[i];
      eps[i] =
        this.predictionType === 'epsilon'
          ? m
          : this.predictionType === 'sample'
            ? f32(x - f32(alphaT * m)) / sigmaT
            : f32(alphaT * m) + f32(sigmaT * x);
    }
    return { converted: eps, x0 };
  }

  /*
   * The updates below are x_t = A·x + B·D0 + C·D1 + E·D2 + F·z. Each coefficient is rounded to float32 where torch
   * rounds its 0-d tensors; signs are folded into them, which float arithmetic leaves exact.
   */

  private firstOrderUpdate(m0: Float32Array, sample: Float32Array, index: number, z: Float32Array | undefined, dest: Float32Array): Float32Array {
    const [alphaT, sigmaT] = this.alphaSigma(this.sigmas[index + 1]);
    const [alphaS, sigmaS] = this.alphaSigma(this.sigmas[index]);
    const h = f32(this.lambda(this.sigmas[index + 1]) - this.lambda(this.sigmas[index]));
    let a: number;
    let b: number;
    let c = 0;
    switch (this.algorithmType) {
      case 'dpmsolver++':
        a = f32(sigmaT / sigmaS);
        b = -f32(alphaT * f32(f32(Math.exp(-h)) - 1));
        break;
      case 'dpmsolver':
        a = f32(alphaT / alphaS);
        b = -f32(sigmaT * f32(f32(Math.exp(h)) - 1));
        break;
      case 'sde-dpmsolver++': {
        const e2 = f32(Math.exp(-2 * h));
        a = f32(f32(sigmaT / sigmaS) * f32(Math.exp(-h)));
        b = f32(alphaT * f32(1 - e2));
        c = f32(sigmaT * f32(Math.sqrt(f32(1 - e2))));
        break;
      }
      case 'sde-dpmsolver':
        a = f32(alphaT / alphaS);
        b = -f32(2 * f32(sigmaT * f32(f32(Math.exp(h)) - 1)));
        c = f32(sigmaT * f32(Math.sqrt(f32(f32(Math.exp(2 * h)) - 1))));
        break;
    }
    // At σ_t = 0 (final_sigmas_type zero) a is 0 and h is +∞: x_t is exactly the x0 estimate.
    const out = dest;
    for (let i = 0; i < out.length; i++) {
      const x = f32(a * sample[i]) + f32(b * m0[i]);
      out[i] = z ? f32(x) + f32(c * z[i]) : x;
    }
    return out;
  }

  private secondOrderUpdate(sample: Float32Array, index: number, z: Float32Array | undefined, dest: Float32Array): Float32Array {
    const s = this.sigmas;
    const [alphaT, sigmaT] = this.alphaSigma(s[index + 1]);
    const [alphaS0, sigmaS0] = this.alphaSigma(s[index]);
    const lambdaT = this.lambda(s[index + 1]);
    const lambdaS0 = this.lambda(s[index]);
    const lambdaS1 = this.lambda(s[index - 1]);
    const m0 = this.modelOutputs[this.solverOrder - 1] as Float32Array;
    const m1 = this.modelOutputs[this.solverOrder - 2] as Float32Array;
    const h = f32(lambdaT - lambdaS0);
    const r0 = f32(f32(lambdaS0 - lambdaS1) / h);
    const invR0 = f32(1 / r0);
    const emh1 = f32(f32(Math.exp(-h)) - 1); // e^{−h} − 1
    const eph1 = f32(f32(Math.exp(h)) - 1); // e^{h} − 1
    let a: number;
    let b: number;
    let c: number;
    let d = 0;
    const midpoint = this.solverType === 'midpoint';
    switch (this.algorithmType) {
      case 'dpmsolver++': {
        const k = f32(alphaT * emh1);
        a = f32(sigmaT / sigmaS0);
        b = -k;
        c = midpoint ? -f32(0.5 * k) : f32(alphaT * f32(f32(emh1 / h) + 1));
        break;
      }
      case 'dpmsolver': {
        const k = f32(sigmaT * eph1);
        a = f32(alphaT / alphaS0);
        b = -k;
        c = midpoint ? -f32(0.5 * k) : -f32(sigmaT * f32(f32(eph1 / h) - 1));
        break;
      }
      case 'sde-dpmsolver++': {
        const e2 = f32(1 - f32(Math.exp(-2 * h)));
        a = f32(f32(sigmaT / sigmaS0) * f32(Math.exp(-h)));
        b = f32(alphaT * e2);
        c = midpoint ? f32(0.5 * b) : f32(alphaT * f32(f32(e2 / f32(-2 * h)) + 1));
        d = f32(sigmaT * f32(Math.sqrt(e2)));
        break;
      }
      case 'sde-dpmsolver': {
        const k = f32(sigmaT * eph1);
        a = f32(alphaT / alphaS0);
        b = -f32(2 * k);
        c = midpoint ? -k : -f32(2 * f32(sigmaT * f32(f32(eph1 / h) - 1)));
        d = f32(sigmaT * f32(Math.sqrt(f32(f32(Math.exp(2 * h)) - 1))));
        break;
      }
    }
    const out = dest;
    for (let i = 0; i < out.length; i++) {
      const d1 = f32(invR0 * f32(m0[i] - m1[i]));
      const x = f32(f32(f32(a * sample[i]) + f32(b * m0[i])) + f32(c * d1));
      out[i] = z ? x + f32(d * z[i]) : x;
    }
    return out;
  }

  private thirdOrderUpdate(sample: Float32Array, index: number, z: Float32Array | undefined, dest: Float32Array): Float32Array {
    const s = this.sigmas;
    const [alphaT, sigmaT] = this.alphaSigma(s[index + 1]);
    const [alphaS0, sigmaS0] = this.alphaSigma(s[index]);
    const lambdaT = this.lambda(s[index + 1]);
    const lambdaS0 = this.lambda(s[index]);
    const lambdaS1 = this.lambda(s[index - 1]);
    const lambdaS2 = this.lambda(s[index - 2]);
    const [m2, m1, m0] = this.modelOutputs as Float32Array[];
    const h = f32(lambdaT - lambdaS0);
    const r0 = f32(f32(lambdaS0 - lambdaS1) / h);
    const r1 = f32(f32(lambdaS1 - lambdaS2) / h);
    const invR0 = f32(1 / r0);
    const invR1 = f32(1 / r1);
    const r01 = f32(r0 + r1);
    const w = f32(r0 / r01);
    const invR01 = f32(1 / r01);
    const hh = f32(h * h);
    let a: number;
    let b: number;
    let c: number;
    let e: number;
    let f = 0;
    if (this.algorithmType === 'dpmsolver++') {
      const emh1 = f32(f32(Math.exp(-h)) - 1);
      a = f32(sigmaT / sigmaS0);
      b = -f32(alphaT * emh1);
      c = f32(alphaT * f32(f32(emh1 / h) + 1));
      e = -f32(alphaT * f32(f32(f32(emh1 + h) / hh) - 0.5));
    } else if (this.algorithmType === 'dpmsolver') {
      const eph1 = f32(f32(Math.exp(h)) - 1);
      a = f32(alphaT / alphaS0);
      b = -f32(sigmaT * eph1);
      c = -f32(sigmaT * f32(f32(eph1 / h) - 1));
      e = -f32(sigmaT * f32(f32(f32(eph1 - h) / hh) - 0.5));
    } else {
      // sde-dpmsolver++ (sde-dpmsolver has no third order; the constructor refuses it).
      const e2 = f32(1 - f32(Math.exp(-2 * h)));
      const h2 = f32(2 * h);
      a = f32(f32(sigmaT / sigmaS0) * f32(Math.exp(-h)));
      b = f32(alphaT * e2);
      c = f32(alphaT * f32(f32(e2 / f32(-2 * h)) + 1));
      e = f32(alphaT * f32(f32(f32(e2 - h2) / f32(h2 * h2)) - 0.5));
      f = f32(sigmaT * f32(Math.sqrt(e2)));
    }
    const out = dest;
    for (let i = 0; i < out.length; i++) {
      const d10 = f32(invR0 * f32(m0[i] - m1[i]));
      const d11 = f32(invR1 * f32(m1[i] - m2[i]));
      const diff = f32(d10 - d11);
      const d1 = f32(d10 + f32(w * diff));
      const d2 = f32(invR01 * diff);
      const x = f32(f32(f32(f32(a * sample[i]) + f32(b * m0[i])) + f32(c * d1)) + f32(e * d2));
      out[i] = z ? x + f32(f * z[i]) : x;
    }
    return out;
  }

  /** α_t·x0 + σ_t·noise at `timestep` (diffusers' add_noise here uses the VP scalings of the step's sigma). */
  addNoise(originalSample: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    checkSameLength(OWNER, originalSample, 'originalSample', noise, 'noise');
    const [alphaT, sigmaT] = this.alphaSigma(this.sigmas[this.indexForTimestep(timestep)]);
    return originalSample.map((x, i) => f32(alphaT * x) + f32(sigmaT * noise[i]));
  }
}
