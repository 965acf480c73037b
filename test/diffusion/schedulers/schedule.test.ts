import { describe, expect, it } from 'vitest';
import { ConfigReader } from '../../../src/diffusion/schedulers/config-reader.js';
import {
  integerTimesteps,
  karrasSigmas,
  linspaceF32,
  readTrainSchedule,
  roundHalfEven,
  sigmasFromAlphasCumprod,
  sigmaToT,
} from '../../../src/diffusion/schedulers/schedule.js';

const read = (config: Record<string, unknown>) => readTrainSchedule(new ConfigReader(config, 'TestScheduler'));

describe('training schedules (betas → alphas_cumprod → sigmas)', () => {
  it('GIVEN linear betas THEN they run from beta_start to beta_end, float32-rounded', () => {
    const s = read({ num_train_timesteps: 1000, beta_start: 0.0001, beta_end: 0.02 });
    expect(s.betas).toHaveLength(1000);
    expect(s.betas[0]).toBe(Math.fround(0.0001));
    expect(s.betas[999]).toBe(Math.fround(0.02));
    for (const b of s.betas) expect(Math.fround(b)).toBe(b);
    for (let i = 1; i < 1000; i++) expect(s.betas[i]).toBeGreaterThan(s.betas[i - 1]);
  });

  it('GIVEN scaled_linear THEN betas are the squares of a linear ramp in sqrt(beta) (Stable Diffusion)', () => {
    const s = read({ beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012 });
    expect(s.betas[0]).toBeCloseTo(0.00085, 9);
    expect(s.betas[999]).toBeCloseTo(0.012, 8);
    const mid = Math.sqrt(s.betas[500]);
    expect(mid).toBeCloseTo(Math.sqrt(0.00085) + (500 / 999) * (Math.sqrt(0.012) - Math.sqrt(0.00085)), 6);
  });

  it('GIVEN squaredcos_cap_v2 THEN ᾱ follows the Glide cosine and betas stay ≤ 0.999', () => {
    const s = read({ beta_schedule: 'squaredcos_cap_v2' });
    const f = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    expect(s.alphasCumprod[499]).toBeCloseTo(f(500 / 1000) / f(0), 5);
    expect(Math.max(...s.betas)).toBeLessThanOrEqual(Math.fround(0.999));
  });

  it('GIVEN trained_betas THEN they override beta_schedule', () => {
    const s = read({ beta_schedule: 'scaled_linear', trained_betas: [0.1, 0.2, 0.3] });
    expect(Array.from(s.betas)).toEqual([0.1, 0.2, 0.3].map(Math.fround));
    expect(s.alphasCumprod[2]).toBeCloseTo(0.9 * 0.8 * 0.7, 6);
  });

  it('GIVEN rescale_betas_zero_snr THEN the last ᾱ is 0 and the first is unchanged (Lin et al. 2023)', () => {
    const plain = read({ beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012 });
    const zsnr = read({ beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012, rescale_betas_zero_snr: true });
    expect(zsnr.alphasCumprod[999]).toBeLessThan(1e-9);
    expect(zsnr.alphasCumprod[0]).toBeCloseTo(plain.alphasCumprod[0], 6);
  });

  it('GIVEN ᾱ THEN σ = sqrt((1 − ᾱ)/ᾱ) and σ→t inverts the interpolation', () => {
    const s = read({});
    const sigmas = sigmasFromAlphasCumprod(s.alphasCumprod);
    expect(sigmas[10]).toBeCloseTo(Math.sqrt((1 - s.alphasCumprod[10]) / s.alphasCumprod[10]), 6);
    const logSigmas = sigmas.map(Math.log);
    expect(sigmaToT(sigmas[321], logSigmas)).toBeCloseTo(321, 9);
    const between = Math.exp((logSigmas[100] + logSigmas[101]) / 2);
    expect(sigmaToT(between, logSigmas)).toBeCloseTo(100.5, 9);
    // Out of range clamps to the ends, as diffusers' _sigma_to_t.
    expect(sigmaToT(1e-9, logSigmas)).toBe(0);
    expect(sigmaToT(1e9, logSigmas)).toBe(999);
  });

  it('GIVEN Karras sigmas THEN they run from σ_max to σ_min with ρ = 7 spacing', () => {
    const k = karrasSigmas(0.03, 14.6, 10);
    expect(k[0]).toBeCloseTo(14.6, 10);
    expect(k[9]).toBeCloseTo(0.03, 12);
    const r = (x: number) => x ** (1 / 7);
    expect(r(k[3]) - r(k[4])).toBeCloseTo(r(k[6]) - r(k[7]), 12);
  });

  it('GIVEN torch.linspace in float32 THEN both halves meet their exact endpoints', () => {
    const l = linspaceF32(0.0001, 0.02, 5);
    expect(l[0]).toBe(Math.fround(0.0001));
    expect(l[4]).toBe(Math.fround(0.02));
    expect(linspaceF32(3, 3, 1)[0]).toBe(3);
  });
});

describe('integer timestep spacing (diffusers, Lin et al. 2023 Table 2)', () => {
  it('GIVEN leading with steps_offset 1 THEN DDIM-style timesteps are 801, 601, 401, 201, 1 (test_scheduler_ddim.py)', () => {
    expect(Array.from(integerTimesteps('leading', 1000, 5, 1))).toEqual([801, 601, 401, 201, 1]);
  });

  it('GIVEN trailing THEN the schedule starts at the last training step', () => {
    expect(Array.from(integerTimesteps('trailing', 1000, 4, 0))).toEqual([999, 749, 499, 249]);
    expect(Array.from(integerTimesteps('trailing', 1000, 3, 0))).toEqual([999, 666, 332]);
  });

  it('GIVEN linspace THEN both ends are included, rounded half to even as numpy', () => {
    expect(Array.from(integerTimesteps('linspace', 1000, 4, 0))).toEqual([999, 666, 333, 0]);
    expect(roundHalfEven(2.5)).toBe(2);
    expect(roundHalfEven(3.5)).toBe(4);
    expect(roundHalfEven(-0.4)).toBe(-0);
  });
});
