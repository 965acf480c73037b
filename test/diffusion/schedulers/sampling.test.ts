import { describe, expect, it } from 'vitest';
import { Rng } from '../../../src/diffusion/rng.js';
import { DDIMScheduler } from '../../../src/diffusion/schedulers/ddim.js';
import { createScheduler, schedulerNameFromClass } from '../../../src/diffusion/schedulers/index.js';
import type { NoiseSource, Scheduler, SchedulerConfig } from '../../../src/diffusion/schedulers/types.js';
import { SCHEDULER_NAMES, type SchedulerName } from '../../../src/diffusion/types.js';

const SD = { num_train_timesteps: 1000, beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear' };
const N = 4 * 8 * 8;

/** A fixed "clean image" the oracle models know. */
const x0 = Float32Array.from({ length: N }, (_, i) => Math.sin(i * 0.37) * 0.8);

/**
 * The denoising loop as a pipeline writes it (diffusers' pipeline_stable_diffusion): the model sees the scaled
 * input, step() gets the unscaled latents.
 */
function sample(scheduler: Scheduler, steps: number, model: (input: Float32Array, t: number) => Float32Array, noise?: NoiseSource, seed = 1): Float32Array {
  scheduler.setTimesteps(steps);
  const start = new Float32Array(N);
  new Rng(seed).fillNormal(start);
  let latents: Float32Array = start.map((v) => v * scheduler.initNoiseSigma);
  for (const t of scheduler.timesteps) {
    const input = scheduler.scaleModelInput(latents, t);
    const out = model(input, t);
    latents = scheduler.step(out, t, latents, noise).prevSample;
  }
  return latents;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('createScheduler and schedulerNameFromClass', () => {
  it.each([
    ['PNDMScheduler', 'pndm'],
    ['EulerDiscreteScheduler', 'euler'],
    ['LCMScheduler', 'lcm'],
    ['DPMSolverMultistepScheduler', 'dpmpp_2m'],
    ['DDIMScheduler', 'ddim'],
    ['DDPMScheduler', 'ddpm'],
    ['EulerAncestralDiscreteScheduler', 'euler_a'],
    ['HeunDiscreteScheduler', 'heun'],
    ['LMSDiscreteScheduler', 'lms'],
  ])('GIVEN _class_name %s THEN the name is %s', (className, name) => {
    expect(schedulerNameFromClass(className)).toBe(name);
  });

  it('GIVEN a class we do not have THEN undefined, and an unknown name THEN a clear error', () => {
    expect(schedulerNameFromClass('UniPCMultistepScheduler')).toBeUndefined();
    expect(schedulerNameFromClass('toString')).toBeUndefined();
    expect(() => createScheduler('unipc' as SchedulerName, {})).toThrow(/Expected a scheduler name, one of ddpm, .* got `unipc`/);
  });
});

describe('sampling with an oracle model', () => {
  // A model that predicts the clean sample exactly (prediction_type "sample"): every sampler must end on it,
  // whichever way it walks (ODE, multistep, ancestral; the last step adds no noise).
  const predictsX0 = () => x0;

  it.each(SCHEDULER_NAMES.filter((n) => n !== 'pndm' && n !== 'euler_a'))('GIVEN %s and a model that predicts x0 THEN the loop ends at x0', (name) => {
    const config: SchedulerConfig = { ...SD, prediction_type: 'sample', set_alpha_to_one: true, clip_sample: false };
    const result = sample(createScheduler(name, config), 8, predictsX0, new Rng(7));
    expect(maxAbsDiff(result, x0)).toBeLessThan(1e-4);
  });

  // ᾱ of the same scaled_linear schedule, computed independently here, so ε-oracles know their noise level from t.
  const betas = Array.from({ length: 1000 }, (_, i) => (Math.sqrt(0.00085) + (i / 999) * (Math.sqrt(0.012) - Math.sqrt(0.00085))) ** 2);
  const alphaBar: number[] = [];
  betas.reduce((acc, b, i) => (alphaBar[i] = acc * (1 - b)), 1);

  it('GIVEN Euler ancestral (ε or v only) and an ε-oracle THEN the loop ends at x0 though it adds noise on the way', () => {
    // The model sees x/sqrt(σ² + 1) at a fractional t; σ(t) interpolates the training sigmas, as the scheduler does.
    const sigmaAt = (t: number) => {
      const sig = (i: number) => Math.sqrt((1 - alphaBar[i]) / alphaBar[i]);
      const lo = Math.floor(t);
      return lo >= 999 ? sig(999) : sig(lo) + (t - lo) * (sig(lo + 1) - sig(lo));
    };
    const epsOracle = (input: Float32Array, t: number) => {
      const sigma = sigmaAt(t);
      return input.map((u, i) => (u * Math.sqrt(sigma * sigma + 1) - x0[i]) / sigma);
    };
    const result = sample(createScheduler('euler_a', SD), 8, epsOracle, new Rng(7));
    expect(maxAbsDiff(result, x0)).toBeLessThan(1e-3);
  });

  it('GIVEN PNDM (ε only) and an ε-oracle THEN PLMS keeps the trajectory and ends at x0', () => {
    // ε-oracle for a VP model: ε = (x_t − sqrt(ᾱ_t) x0) / sqrt(1 − ᾱ_t).
    const epsOracle = (input: Float32Array, t: number) => {
      const a = alphaBar[t];
      return input.map((x, i) => (x - Math.sqrt(a) * x0[i]) / Math.sqrt(1 - a));
    };
    for (const skip of [false, true]) {
      const result = sample(createScheduler('pndm', { ...SD, set_alpha_to_one: true, skip_prk_steps: skip }), 10, epsOracle);
      expect(maxAbsDiff(result, x0)).toBeLessThan(1e-3);
    }
  });
});

describe('noise, state and buffers', () => {
  const halfModel = (input: Float32Array) => input.map((v) => v * 0.5);

  it.each(['euler_a', 'ddpm', 'lcm'] as const)('GIVEN the stochastic %s THEN it refuses to step without a NoiseSource', (name) => {
    const s = createScheduler(name, SD);
    s.setTimesteps(4);
    const x = new Float32Array(N).fill(0.5);
    const t = s.timesteps[0];
    expect(() => s.step(halfModel(s.scaleModelInput(x, t)), t, x)).toThrow(/this step draws noise; pass the seeded NoiseSource/);
  });

  it.each(['euler_a', 'ddpm', 'lcm'] as const)('GIVEN %s THEN the same seed gives the same result and another seed a different one', (name) => {
    const run = (seed: number) => sample(createScheduler(name, SD), 6, halfModel, new Rng(seed));
    const a = run(11);
    expect(Array.from(run(11))).toEqual(Array.from(a));
    expect(maxAbsDiff(run(12), a)).toBeGreaterThan(1e-3);
  });

  it('GIVEN DDIM with eta > 0 THEN it draws noise (and is deterministic per seed); eta 0 does not', () => {
    const stochastic = () => new DDIMScheduler(SD, { eta: 1 });
    const a = sample(stochastic(), 6, halfModel, new Rng(3));
    expect(Array.from(sample(stochastic(), 6, halfModel, new Rng(3)))).toEqual(Array.from(a));
    expect(maxAbsDiff(sample(stochastic(), 6, halfModel, new Rng(4)), a)).toBeGreaterThan(1e-3);
    const s = new DDIMScheduler(SD, { eta: 1 });
    s.setTimesteps(6);
    const x = new Float32Array(N).fill(0.1);
    expect(() => s.step(x, s.timesteps[0], x)).toThrow(/NoiseSource/);
    expect(() => sample(createScheduler('ddim', SD), 6, halfModel)).not.toThrow();
  });

  it.each(SCHEDULER_NAMES)('GIVEN %s THEN step and scaleModelInput leave their inputs untouched and fill predOriginalSample', (name) => {
    const s = createScheduler(name, SD);
    s.setTimesteps(5);
    const latents = Float32Array.from({ length: N }, (_, i) => Math.cos(i));
    const before = Float32Array.from(latents);
    const noise = new Rng(5);
    for (const t of s.timesteps) {
      const input = s.scaleModelInput(latents, t);
      expect(Array.from(latents)).toEqual(Array.from(before));
      const out = halfModel(input);
      const outCopy = Float32Array.from(out);
      const result = s.step(out, t, latents, noise);
      expect(Array.from(out)).toEqual(Array.from(outCopy));
      expect(Array.from(latents)).toEqual(Array.from(before));
      expect(result.prevSample).not.toBe(latents);
      expect(result.predOriginalSample).toHaveLength(N);
      for (const v of result.prevSample) expect(Number.isFinite(v)).toBe(true);
    }
  });

  it.each(['dpmpp_2m', 'lms', 'pndm', 'heun'] as const)('GIVEN the multistep %s THEN its history holds copies, not the caller\'s buffers', (name) => {
    // Run twice: once handing over fresh arrays, once reusing (and scribbling over) one output buffer.
    const run = (reuse: boolean) => {
      const s = createScheduler(name, SD);
      s.setTimesteps(6);
      let latents: Float32Array = Float32Array.from({ length: N }, (_, i) => Math.sin(i));
      const shared = new Float32Array(N);
      for (const t of s.timesteps) {
        const input = s.scaleModelInput(latents, t);
        const out = reuse ? shared : new Float32Array(N);
        for (let i = 0; i < N; i++) out[i] = input[i] * 0.3;
        latents = s.step(out, t, latents).prevSample;
        if (reuse) shared.fill(123);
      }
      return latents;
    };
    expect(Array.from(run(true))).toEqual(Array.from(run(false)));
  });

  it.each(SCHEDULER_NAMES)('GIVEN %s and two buffers passed as `out` in turn THEN prevSample is `out` and every value is as without it', (name) => {
    // The pipeline's loop: x_{t-1} goes into the buffer that is not the current sample, the two swap every step,
    // and the spare one is scribbled over in between to show the scheduler keeps nothing of it.
    const run = (withOut: boolean) => {
      const s = createScheduler(name, SD);
      s.setTimesteps(6);
      const noise = new Rng(7);
      let latents: Float32Array = Float32Array.from({ length: N }, (_, i) => Math.sin(i) * s.initNoiseSigma);
      let spare: Float32Array = new Float32Array(N);
      const estimates: number[][] = [];
      for (const t of s.timesteps) {
        const input = s.scaleModelInput(latents, t);
        const result = withOut ? s.step(halfModel(input), t, latents, noise, spare) : s.step(halfModel(input), t, latents, noise);
        if (withOut) {
          expect(result.prevSample).toBe(spare);
          spare = latents;
          spare.fill(-123);
        }
        latents = result.prevSample;
        estimates.push(Array.from(result.predOriginalSample ?? []));
      }
      return { latents: Array.from(latents), estimates };
    };
    expect(run(true)).toEqual(run(false));
  });

  it.each(SCHEDULER_NAMES)('GIVEN %s and a buffer passed as scaleModelInput\'s `into` THEN it returns `into` or `sample`, with the same values as without', (name) => {
    const a = createScheduler(name, SD);
    const b = createScheduler(name, SD);
    a.setTimesteps(5);
    b.setTimesteps(5);
    const latents = Float32Array.from({ length: N }, (_, i) => Math.cos(i) * a.initNoiseSigma);
    const into = new Float32Array(N).fill(-7);
    const t = a.timesteps[0];
    const scaled = a.scaleModelInput(latents, t, into);
    expect(scaled === into || scaled === latents).toBe(true);
    expect(Array.from(scaled)).toEqual(Array.from(b.scaleModelInput(latents, t)));
  });

  it('GIVEN `out` that is the sample or of the wrong length THEN step refuses it', () => {
    const s = createScheduler('euler', SD);
    s.setTimesteps(4);
    const latents = new Float32Array(N).fill(0.5);
    const t = s.timesteps[0];
    expect(() => s.step(halfModel(latents), t, latents, undefined, latents)).toThrow(/`out` to be a buffer of its own/);
    expect(() => s.step(halfModel(latents), t, latents, undefined, latents.subarray(0, N))).toThrow(/`out` to be a buffer of its own/);
    expect(() => s.step(halfModel(latents), t, latents, undefined, new Float32Array(N - 1))).toThrow(/`out` to have the length of `sample` \(256\), got 255/);
  });

  it('GIVEN setTimesteps again THEN a scheduler starts over (no history from the last run)', () => {
    const s = createScheduler('dpmpp_2m', SD);
    const a = sample(s, 6, halfModel);
    const b = sample(s, 6, halfModel);
    expect(Array.from(b)).toEqual(Array.from(a));
  });

  it('GIVEN step before setTimesteps, a foreign timestep, or mismatched lengths THEN clear errors', () => {
    const s = createScheduler('euler', SD);
    const x = new Float32Array(N);
    expect(() => s.step(x, 999, x)).toThrow(/call setTimesteps\(steps\) before step\(\)/);
    s.setTimesteps(4);
    expect(() => s.step(x, 123.5, x)).toThrow(/timestep `123.5` is not in the current schedule/);
    expect(() => s.step(new Float32Array(3), s.timesteps[0], x)).toThrow(/same length, got 3 and 256/);
    const ddim = createScheduler('ddim', SD);
    ddim.setTimesteps(4);
    expect(() => ddim.step(x, 1000, x)).toThrow(/`timestep` to be an integer from 0 to 999, got `1000`/);
  });

  it('GIVEN addNoise THEN Euler adds σ·noise and DDIM mixes sqrt(ᾱ)·x0 + sqrt(1 − ᾱ)·noise', () => {
    const euler = createScheduler('euler', SD);
    euler.setTimesteps(10);
    const ones = new Float32Array(N).fill(1);
    const zeros = new Float32Array(N);
    const noisy = euler.addNoise!(zeros, ones, euler.timesteps[0]);
    expect(noisy[0]).toBeCloseTo(euler.initNoiseSigma, 4);
    const ddim = createScheduler('ddim', SD);
    ddim.setTimesteps(10);
    const mixed = ddim.addNoise!(ones, zeros, 1);
    expect(mixed[0]).toBeGreaterThan(0.99);
    expect(mixed[0]).toBeLessThan(1);
    expect(() => ddim.addNoise!(ones, new Float32Array(2), 1)).toThrow(/same length/);
  });
});
