import { ConfigReader } from './config-reader.js';
import { f32 } from './float32.js';
import { arange, linspace, readTrainSchedule, roundHalfEven, TIMESTEP_SPACINGS, type TimestepSpacing, type TrainSchedule } from './schedule.js';
import { checkSameLength, checkStep, checkSteps, outBuffer } from './step-helpers.js';
import type { NoiseSource, Scheduler, SchedulerConfig, StepResult } from './types.js';

// Pseudo Numerical Methods for Diffusion Models (Liu et al. 2022, "PNDM"): pseudo Runge–Kutta (PRK) warm-up steps,
// then pseudo linear multistep (PLMS, 4th-order Adams–Bashforth), as diffusers' PNDMScheduler.

const OWNER = 'PNDMScheduler';
const PNDM_ORDER = 4;

export class PNDMScheduler implements Scheduler {
  /** As diffusers: 1, although PRK runs four model calls per warm-up step (they are in `timesteps`). */
  readonly order = 1;
  readonly initNoiseSigma = 1;
  timesteps: Float64Array = new Float64Array(0);

  private readonly schedule: TrainSchedule;
  private readonly finalAlphaCumprod: number;
  private readonly skipPrkSteps: boolean;
  private readonly predictionType: 'epsilon' | 'v_prediction';
  private readonly timestepSpacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private numInferenceSteps = 0;
  private prkTimesteps = new Float64Array(0);
  private counter = 0;
  /** Past model outputs (copies), newest last; at most four are used. */
  private ets: Float32Array[] = [];
  /** Runge–Kutta accumulator of 1/6, 1/3, 1/3, 1/6-weighted model outputs. */
  private curModelOutput: Float32Array | undefined;
  private curSample: Float32Array | undefined;

  constructor(config: SchedulerConfig) {
    const c = new ConfigReader(config, OWNER);
    this.schedule = readTrainSchedule(c, { zeroSnr: false });
    this.skipPrkSteps = c.boolean('skip_prk_steps', false);
    this.finalAlphaCumprod = c.boolean('set_alpha_to_one', false) ? 1 : this.schedule.alphasCumprod[0];
    this.predictionType = c.oneOf('prediction_type', ['epsilon', 'v_prediction'], 'epsilon');
    this.timestepSpacing = c.oneOf('timestep_spacing', TIMESTEP_SPACINGS, 'leading');
    this.stepsOffset = c.integer('steps_offset', 0, 0);
  }

  setTimesteps(numInferenceSteps: number): void {
    const nTrain = this.schedule.numTrainTimesteps;
    checkSteps(OWNER, numInferenceSteps, nTrain);
    const n = numInferenceSteps;
    this.numInferenceSteps = n;
    // Ascending here; PRK and PLMS lists below reverse them.
    let base: Float64Array;
    if (this.timestepSpacing === 'linspace') base = linspace(0, nTrain - 1, n).map(roundHalfEven);
    else if (this.timestepSpacing === 'leading') {
      const ratio = Math.floor(nTrain / n);
      base = Float64Array.from({ length: n }, (_, i) => i * ratio + this.stepsOffset);
    } else base = arange(nTrain, 0, -nTrain / n).map((v) => roundHalfEven(v) - 1).reverse();
    if (base.length < PNDM_ORDER && !this.skipPrkSteps) {
      throw new RangeError(`${OWNER}: with PRK warm-up, expected \`steps\` to be at least ${PNDM_ORDER}, got \`${n}\``);
    }

    let prk: number[] = [];
    let plms: number[];
    if (this.skipPrkSteps) {
      // diffusers repeats the second-to-last timestep: the first PLMS step is a two-call Heun-like warm-up.
      const b = [...base];
      plms = [...b.slice(0, -1), ...b.slice(-2, -1), ...b.slice(-1)].reverse();
    } else {
      // The last four timesteps, each paired with its half-step: [t, t + h] for h = N // n // 2.
      const half = Math.floor(Math.floor(nTrain / n) / 2);
      const pairs: number[] = [];
      for (const t of base.slice(-PNDM_ORDER)) pairs.push(t, t + half);
      // prk_timesteps[:-1].repeat(2)[1:-1], reversed.
      const rep: number[] = [];
      for (const t of pairs.slice(0, -1)) rep.push(t, t);
      prk = rep.slice(1, -1).reverse();
      plms = [...base.slice(0, -3)].reverse();
    }
    this.prkTimesteps = Float64Array.from(prk);
    this.timesteps = Float64Array.from([...prk, ...plms]);
    this.counter = 0;
    this.ets = [];
    this.curModelOutput = undefined;
    this.curSample = undefined;
  }

  scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, _noise?: NoiseSource, out?: Float32Array): StepResult {
    checkStep(OWNER, this.numInferenceSteps > 0, modelOutput, sample);
    const dest = outBuffer(OWNER, out, sample, modelOutput);
    if (this.counter < this.prkTimesteps.length && !this.skipPrkSteps) return this.stepPrk(modelOutput, timestep, sample, dest);
    return this.stepPlms(modelOutput, timestep, sample, dest);
  }

  private stepPrk(modelOutput: Float32Array, timestep: number, sample: Float32Array, dest: Float32Array): StepResult {
    const ratio = Math.floor(this.schedule.numTrainTimesteps / this.numInferenceSteps);
    const diffToPrev = this.counter % 2 ? 0 : Math.floor(ratio / 2);
    const prevTimestep = timestep - diffToPrev;
    const t = this.prkTimesteps[Math.floor(this.counter / 4) * 4];
    const phase = this.counter % 4;
    let effective: ArrayLike<number> = modelOutput;
    // Runge–Kutta weights 1/6, 1/3, 1/3, 1/6, as float32 scalars the way torch applies Python floats.
    const sixth = f32(1 / 6);
    const third = f32(1 / 3);
    if (phase === 0) {
      this.curModelOutput = Float32Array.from(modelOutput, (m) => sixth * m);
      this.ets.push(Float32Array.from(modelOutput));
      this.curSample = Float32Array.from(sample);
    } else if (phase === 1 || phase === 2) {
      const acc = this.curModelOutput as Float32Array;
      for (let i = 0; i < acc.length; i++) acc[i] += f32(third * modelOutput[i]);
    } else {
      const acc = this.curModelOutput as Float32Array;
      effective = acc.map((a, i) => a + f32(sixth * modelOutput[i]));
      this.curModelOutput = undefined;
    }
    const from = this.curSample ?? sample;
    const prevSample = this.prevSample(from, t, prevTimestep, effective, dest);
    this.counter++;
    return { prevSample, predOriginalSample: this.x0Estimate(from, t, effective) };
  }

  private stepPlms(modelOutput: Float32Array, timestep: number, sample: Float32Array, dest: Float32Array): StepResult {
    if (!this.skipPrkSteps && this.ets.length < 3) {
      throw new Error(`${OWNER}: PLMS needs three past model outputs from the PRK steps; run the whole schedule in order`);
    }
    const ratio = Math.floor(this.schedule.numTrainTimesteps / this.numInferenceSteps);
    let t = timestep;
    let prevTimestep = t - ratio;
    if (this.counter !== 1) {
      this.ets = this.ets.slice(-3);
      this.ets.push(Float32Array.from(modelOutput));
    } else {
      prevTimestep = t;
      t = t + ratio;
    }
    const e = this.ets;
    const n = e.length;
    let effective: ArrayLike<number>;
    let from = sample;
    // Adams–Bashforth combinations of the past outputs, op by op in float32 as torch evaluates them.
    if (n === 1 && this.counter === 0) {
      effective = modelOutput;
      this.curSample = Float32Array.from(sample);
    } else if (n === 1 && this.counter === 1) {
      effective = modelOutput.map((m, i) => f32(m + e[0][i]) / 2);
      from = this.curSample as Float32Array;
      this.curSample = undefined;
    } else if (n === 2) {
      effective = Float32Array.from(e[1], (m1, i) => f32(f32(3 * m1) - e[0][i]) / 2);
    } else if (n === 3) {
      effective = Float32Array.from(e[2], (m1, i) => f32(f32(f32(23 * m1) - f32(16 * e[1][i])) + f32(5 * e[0][i])) / 12);
    } else {
      const w = f32(1 / 24);
      effective = Float32Array.from(
        e[3],
        (m1, i) => w * f32(f32(f32(f32(55 * m1) - f32(59 * e[2][i])) + f32(37 * e[1][i])) - f32(9 * e[0][i])),
      );
    }
    const prevSample = this.prevSample(from, t, prevTimestep, effective, dest);
    this.counter++;
    return { prevSample, predOriginalSample: this.x0Estimate(from, t, effective) };
  }

  /**
   * x0 = (x_t − sqrt(1 − ᾱ_t)·ε) / sqrt(ᾱ_t) for previews. diffusers' PNDM returns no such estimate; the step
   * itself does not use it.
   */
  private x0Estimate(sample: Float32Array, t: number, modelOutput: ArrayLike<number>): Float32Array {
    const alphaProdT = this.schedule.alphasCumprod[t];
    const sqrtA = Math.sqrt(alphaProdT);
    const sqrtB = Math.sqrt(1 - alphaProdT);
    const v = this.predictionType === 'v_prediction';
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      out[i] = v ? sqrtA * sample[i] - sqrtB * modelOutput[i] : (sample[i] - sqrtB * modelOutput[i]) / sqrtA;
    }
    return out;
  }

  /** PNDM eq. 9 (the "transfer" φ from x_t to x_{t−δ} given ε). */
  private prevSample(sample: Float32Array, t: number, prevT: number, modelOutput: ArrayLike<number>, out: Float32Array): Float32Array {
    const ac = this.schedule.alphasCumprod;
    const alphaProdT = ac[t];
    const alphaProdTPrev = prevT >= 0 ? ac[prevT] : this.finalAlphaCumprod;
    const betaProdT = f32(1 - alphaProdT);
    const betaProdTPrev = f32(1 - alphaProdTPrev);
    const sampleCoeff = f32(Math.sqrt(f32(alphaProdTPrev / alphaProdT)));
    const denom = f32(f32(alphaProdT * f32(Math.sqrt(betaProdTPrev))) + f32(Math.sqrt(f32(f32(alphaProdT * betaProdT) * alphaProdTPrev))));
    const diff = f32(alphaProdTPrev - alphaProdT);
    const sqrtA = f32(Math.sqrt(alphaProdT));
    const sqrtB = f32(Math.sqrt(betaProdT));
    const v = this.predictionType === 'v_prediction';
    for (let i = 0; i < sample.length; i++) {
      const eps = v ? f32(f32(sqrtA * modelOutput[i]) + f32(sqrtB * sample[i])) : modelOutput[i];
      out[i] = f32(sampleCoeff * sample[i]) - f32(f32(diff * eps) / denom);
    }
    return out;
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
