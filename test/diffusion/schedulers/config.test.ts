import { describe, expect, it } from 'vitest';
import { createScheduler } from '../../../src/diffusion/schedulers/index.js';
import { DDIMScheduler } from '../../../src/diffusion/schedulers/ddim.js';
import { EulerDiscreteScheduler } from '../../../src/diffusion/schedulers/euler-discrete.js';
import { SCHEDULER_NAMES } from '../../../src/diffusion/types.js';

// Scheduler configs as real model repositories ship them (diffusers' key names, _class_name and version included).
// Stable Diffusion 1.5 (runwayml/stable-diffusion-v1-5, scheduler/scheduler_config.json):
const SD15 = {
  _class_name: 'PNDMScheduler',
  _diffusers_version: '0.6.0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
  clip_sample: false,
};
// Stable Diffusion 2.1 (768, v-prediction):
const SD21 = {
  _class_name: 'DDIMScheduler',
  _diffusers_version: '0.8.0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  prediction_type: 'v_prediction',
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
};
// SD-Turbo / SDXL-Turbo style (Euler ancestral, trailing spacing):
const TURBO = {
  _class_name: 'EulerAncestralDiscreteScheduler',
  _diffusers_version: '0.24.0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  interpolation_type: 'linear',
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  sample_max_value: 1.0,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: 'trailing',
  trained_betas: null,
  use_karras_sigmas: false,
};
// An LCM distillation (LCMScheduler):
const LCM = {
  _class_name: 'LCMScheduler',
  _diffusers_version: '0.22.0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  clip_sample_range: 1.0,
  dynamic_thresholding_ratio: 0.995,
  num_train_timesteps: 1000,
  original_inference_steps: 50,
  prediction_type: 'epsilon',
  rescale_betas_zero_snr: false,
  sample_max_value: 1.0,
  set_alpha_to_one: true,
  steps_offset: 1,
  thresholding: false,
  timestep_scaling: 10.0,
  timestep_spacing: 'leading',
  trained_betas: null,
};

describe('scheduler configs', () => {
  it.each(SCHEDULER_NAMES)('GIVEN any real model config THEN the %s scheduler builds from it (other keys ignored)', (name) => {
    for (const config of [SD15, SD21, TURBO, LCM]) {
      const s = createScheduler(name, config);
      s.setTimesteps(4);
      expect(s.timesteps.length).toBeGreaterThanOrEqual(4);
      expect(s.initNoiseSigma).toBeGreaterThan(0);
    }
  });

  it('GIVEN SD 1.5 with skip_prk_steps THEN PNDM visits 981, 961, 961, 941 … 1 (51 model calls for 50 steps)', () => {
    const s = createScheduler('pndm', SD15);
    s.setTimesteps(50);
    expect(s.timesteps).toHaveLength(51);
    expect(Array.from(s.timesteps.subarray(0, 4))).toEqual([981, 961, 961, 941]);
    expect(s.timesteps.at(-1)).toBe(1);
  });

  it('GIVEN PNDM with PRK warm-up and steps_offset 1 THEN its timesteps are diffusers\' (test_scheduler_pndm.py::test_steps_offset)', () => {
    const s = createScheduler('pndm', { num_train_timesteps: 1000, beta_start: 0.0001, beta_end: 0.02, steps_offset: 1 });
    s.setTimesteps(10);
    expect(Array.from(s.timesteps)).toEqual([901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, 601, 501, 401, 301, 201, 101, 1]);
  });

  it('GIVEN the turbo config THEN Euler ancestral starts at t = 999 with σ_max as the initial noise scale', () => {
    const s = createScheduler('euler_a', TURBO);
    s.setTimesteps(1);
    expect(Array.from(s.timesteps)).toEqual([999]);
    expect(s.initNoiseSigma).toBeGreaterThan(14);
    expect(s.initNoiseSigma).toBeLessThan(15);
  });

  it('GIVEN an LCM config THEN 4 steps pick 999, 759, 499, 259 from the 50-step distillation schedule', () => {
    const s = createScheduler('lcm', LCM);
    s.setTimesteps(4);
    expect(Array.from(s.timesteps)).toEqual([999, 759, 499, 259]);
    expect(() => s.setTimesteps(51)).toThrow(/`steps` to be an integer from 1 to 50 \(original_inference_steps\), got `51`/);
  });

  it('GIVEN Heun THEN every timestep after the first is visited twice (two model calls per step)', () => {
    const s = createScheduler('heun', SD15);
    s.setTimesteps(5);
    expect(s.order).toBe(2);
    expect(s.timesteps).toHaveLength(9);
    expect(s.timesteps[1]).toBe(s.timesteps[2]);
  });

  it('GIVEN DPM-Solver++ with Karras sigmas THEN timesteps are whole and descending', () => {
    const s = createScheduler('dpmpp_2m', { ...SD15, use_karras_sigmas: true });
    s.setTimesteps(20);
    expect(s.timesteps).toHaveLength(20);
    for (let i = 0; i < 20; i++) expect(Number.isInteger(s.timesteps[i])).toBe(true);
    for (let i = 1; i < 20; i++) expect(s.timesteps[i]).toBeLessThanOrEqual(s.timesteps[i - 1]);
    expect(s.timesteps[0]).toBe(999);
  });

  describe('Euler sigma options', () => {
    const euler = (extra: Record<string, unknown>, steps = 10) => {
      const s = new EulerDiscreteScheduler({ ...SD15, ...extra });
      s.setTimesteps(steps);
      return s;
    };
    const ratios = (sigmas: Float64Array) => Array.from(sigmas.subarray(1, sigmas.length - 1), (v, i) => v / sigmas[i]);

    it('GIVEN rescale_betas_zero_snr THEN the first sigma is that of ᾱ = 2^-24, about 4096', () => {
      const s = euler({ rescale_betas_zero_snr: true, timestep_spacing: 'trailing' });
      expect(s.initNoiseSigma).toBeCloseTo(Math.sqrt((1 - 2 ** -24) / 2 ** -24), 0);
    });

    it('GIVEN final_sigmas_type sigma_min THEN the schedule ends at σ_min, not 0', () => {
      expect(euler({}).sigmas.at(-1)).toBe(0);
      expect(euler({ final_sigmas_type: 'sigma_min' }).sigmas.at(-1)).toBeGreaterThan(0.02);
    });

    it('GIVEN exponential sigmas or log_linear interpolation THEN sigmas fall by a constant ratio', () => {
      for (const extra of [{ use_exponential_sigmas: true }, { interpolation_type: 'log_linear' }]) {
        const r = ratios(euler(extra).sigmas);
        for (const x of r) expect(x).toBeCloseTo(r[0], 5);
      }
    });

    it('GIVEN leading spacing THEN init noise is sqrt(σ_max² + 1) and steps_offset shifts the timesteps', () => {
      const s = euler({ timestep_spacing: 'leading' }, 4);
      expect(Array.from(s.timesteps)).toEqual([751, 501, 251, 1]);
      expect(s.initNoiseSigma).toBeCloseTo(Math.sqrt(s.sigmas[0] ** 2 + 1), 5);
    });

    it('GIVEN continuous timesteps with v-prediction THEN timesteps are 0.25·log σ (EDM-style)', () => {
      const s = euler({ timestep_type: 'continuous', prediction_type: 'v_prediction' });
      s.timesteps.forEach((t, i) => expect(t).toBeCloseTo(0.25 * Math.log(s.sigmas[i]), 5));
    });

    it('GIVEN both karras and exponential sigmas THEN it refuses', () => {
      expect(() => euler({ use_karras_sigmas: true, use_exponential_sigmas: true })).toThrow(/Only one of `use_karras_sigmas`, `use_exponential_sigmas`/);
    });
  });

  it.each([
    ['euler', { beta_schedule: 'cubic' }, /Expected `beta_schedule` in the EulerDiscreteScheduler config to be one of `linear`, `scaled_linear`, `squaredcos_cap_v2`, got `cubic`/],
    ['ddim', { num_train_timesteps: 'many' }, /Expected `num_train_timesteps` in the DDIMScheduler config to be an integer ≥ 2, got `many`/],
    ['ddim', { prediction_type: 'flow' }, /`prediction_type`.*got `flow`/],
    ['dpmpp_2m', { solver_order: 4 }, /`solver_order`.*an integer from 1 to 3, got `4`/],
    ['dpmpp_2m', { algorithm_type: 'dpmsolver', final_sigmas_type: 'zero' }, /`final_sigmas_type` = `zero`.*not supported with `algorithm_type` = `dpmsolver`/],
    ['euler', { timestep_spacing: 'evenly' }, /`timestep_spacing`.*got `evenly`/],
    ['euler', { use_karras_sigmas: 'yes' }, /`use_karras_sigmas`.*true or false, got `yes`/],
    ['euler', { use_beta_sigmas: true }, /`use_beta_sigmas` = `true`.*not supported/],
    ['ddpm', { variance_type: 'learned_range' }, /`variance_type` = `learned_range`.*not supported/],
    ['ddim', { thresholding: true }, /`thresholding` = `true`.*not supported: dynamic thresholding is not implemented/],
    ['euler', { trained_betas: [0.1, 'x'] }, /`trained_betas`.*non-empty array of finite numbers/],
  ] as const)('GIVEN a bad %s config %j THEN the error names the key', (name, config, message) => {
    expect(() => createScheduler(name, config)).toThrow(message);
  });

  it('GIVEN a config that is not an object THEN it is refused', () => {
    expect(() => createScheduler('euler', [] as unknown as Record<string, unknown>)).toThrow(/to be a JSON object, got `\[\]`/);
  });

  it('GIVEN lambda_min_clipped as "-inf" (as Python writes −inf through other tools) THEN it is −∞', () => {
    const a = createScheduler('dpmpp_2m', { lambda_min_clipped: '-inf' });
    const b = createScheduler('dpmpp_2m', {});
    a.setTimesteps(10);
    b.setTimesteps(10);
    expect(Array.from(a.timesteps)).toEqual(Array.from(b.timesteps));
    const clipped = createScheduler('dpmpp_2m', { beta_schedule: 'squaredcos_cap_v2', lambda_min_clipped: -5.1 });
    clipped.setTimesteps(10);
    expect(clipped.timesteps[0]).toBeLessThan(999);
  });

  it('GIVEN DDIM eta options THEN a negative eta is refused', () => {
    expect(() => new DDIMScheduler({}, { eta: -1 })).toThrow(/`eta` to be a number ≥ 0, got `-1`/);
  });

  it('GIVEN steps outside 1..num_train_timesteps THEN setTimesteps refuses with the range', () => {
    const s = createScheduler('ddim', { num_train_timesteps: 100 });
    expect(() => s.setTimesteps(101)).toThrow(/DDIMScheduler: expected `steps` to be an integer from 1 to 100 \(num_train_timesteps\), got `101`/);
    expect(() => s.setTimesteps(2.5)).toThrow(/got `2.5`/);
  });
});
