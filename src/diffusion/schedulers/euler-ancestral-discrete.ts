import { ConfigReader } from './config-reader.js';
import { f32, sqrtSigmaSqPlusOne, vCoefficients } from './float32.js';
import {
  interpIndex,
  linspace,
  readTrainSchedule,
  sigmasFromAlphasCumprod,
  sigmaTimesteps,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
  type TrainSchedule,
} from './schedule.js';
import { checkSameLength, checkStep, checkSteps, drawNoise, indexForTimestep, outBuffer, reuse, scaleBySigma } from './step-helpers.js';
import type { NoiseSource, Scheduler, SchedulerConfig, StepResult } from './types.js';

// Euler ancestral sampling (k-diffusion's sample_euler_ancestral, after Karras et al. 2022 and Song et al. 2021's
// reverse SDE): an Euler step down to σ_down, then fresh noise of σ_up, as diffusers' EulerAncestralDiscreteScheduler.

const OWNER = 'EulerAncestralDiscreteScheduler';

export class EulerAncestralDiscreteScheduler implements Scheduler {
  readonly order = 1;
  timesteps: Float64Array = new Float64Array(0);
  /** predOriginalSample, reused from step to step (the contract: valid until the next step). */
  private x0Buffer: Float32Array | undefined;
  sigmas: Float64Array;

  private readonly schedule: TrainSchedule;
  private readonly predictionType: 'epsilon' | 'v_prediction';
  private readonly timestepSpacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private stepIndex: number | undefined;
  private scaled: Float32Array | undefined;

  constructor(config: SchedulerConfig) {
    const c = new ConfigReader(config, OWNER);
    this.schedule = readTrainSchedule(c);
    if (c.boolean('rescale_betas_zero_snr', false)) {
      // Close to 0 without being 0, so the first sigma is not infinite (diffusers: fp16's smallest subnormal).
      this.schedule.alphasCumprod[this.schedule.numTrainTimesteps - 1] = 2 ** -24;
    }
    // diffusers raises NotImplementedError for `sample`; refuse it here, at load time, instead of mid-loop.
    this.predictionType = c.oneOf('prediction_type', ['epsilon', 'v_prediction'], 'epsilon');
    this.timestepSpacing = c.oneOf('timestep_spacing', TIMESTEP_SPACINGS, 'linspace');
    this.stepsOffset = c.integer('steps_offset', 0, 0);
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
    const timesteps = sigmaTimesteps(this.timestepSpacing, nTrain, n, this.stepsOffset);
    const trainSigmas = sigmasFromAlphasCumprod(this.schedule.alphasCumprod);
    this.sigmas = Float64Array.from([...timesteps.map((t) => interpIndex(t, trainSigmas)), 0], f32);
    this.timesteps = timesteps.map(f32);
    this.stepIndex = undefined;
  }

  scaleModelInput(sample: Float32Array, timestep: number, into?: Float32Array): Float32Array {
    if (this.stepIndex === undefined) this.stepIndex = indexForTimestep(this.timesteps, timestep, OWNER);
    const out = scaleBySigma(OWNER, sample, this.sigmas[this.stepIndex], into, this.scaled);
    if (into === undefined) this.scaled = out;
    return out;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise?: NoiseSource, out?: Float32Array): StepResult {
    checkStep(OWNER, this.timesteps.length > 0, modelOutput, sample);
    if (this.stepIndex === undefined) this.stepIndex = indexForTimestep(this.timesteps, timestep, OWNER);
    const index = this.stepIndex;
    if (index >= this.timesteps.length) throw new Error(`${OWNER}: step() called past the last timestep`);
    const sigmaFrom = this.sigmas[index];
    const sigmaTo = this.sigmas[index + 1];
    const from2 = f32(sigmaFrom * sigmaFrom);
    const to2 = f32(sigmaTo * sigmaTo);
    const sigmaUp = f32(Math.sqrt(f32(f32(to2 * f32(from2 - to2)) / from2)));
    const sigmaDown = f32(Math.sqrt(f32(to2 - f32(sigmaUp * sigmaUp))));
    const dt = f32(sigmaDown - sigmaFrom);
    const { vScale, xDiv } = vCoefficients(sigmaFrom);
    const predOriginalSample = (this.x0Buffer = reuse(this.x0Buffer, sample.length));
    // diffusers draws the noise even on the last step (σ_up = 0 there): draw it too, so seeded streams stay aligned.
    const prevSample = drawNoise(OWNER, noise, outBuffer(OWNER, out, sample, modelOutput));
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i];
      const m = modelOutput[i];
      const x0 = this.predictionType === 'epsilon' ? f32(x - f32(sigmaFrom * m)) : f32(f32(m * vScale) + f32(x / xDiv));
      predOriginalSample[i] = x0;
      const derivative = f32(f32(x - x0) / sigmaFrom);
      prevSample[i] = f32(x + f32(derivative * dt)) + f32(prevSample[i] * sigmaUp);
    }
    this.stepIndex = index + 1;
    return { prevSample, predOriginalSample };
  }

  /** x0 + σ·noise at `timestep`. */
  addNoise(originalSample: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    checkSameLength(OWNER, originalSample, 'originalSample', noise, 'noise');
    const sigma = this.sigmas[indexForTimestep(this.timesteps, timestep, OWNER)];
    return originalSample.map((x, i) => x + f32(noise[i] * sigma));
  }
}
