import { IMG2IMG_CASES } from './conformance-img2img-cases.js';
import type { LoopCase } from './conformance-loop.js';

/**
 * diffusers' own full-loop expectations (huggingface/diffusers, tests/schedulers/, CPU fp32), each with the test
 * file and test function it comes from. `sum` / `mean` are sum(|x|) and mean(|x|) of the final sample; the
 * tolerances are the test's own (`abs(result - expected) < tol`). Cases that draw noise use diffusers'
 * `torch.manual_seed(0)` generator, reproduced by ../diffusion/torch-generator.ts.
 *
 * Not listed: the thresholding loops (thresholding is refused, it needs per-image quantiles) and the
 * custom-timesteps / custom-sigmas loops (our contract takes a step count only).
 */
export interface ConformanceCase extends LoopCase {
  /** `file::test_function` in diffusers' tests/schedulers, or the run of diffusers' code that gave the numbers. */
  source: string;
  /** Expected sum(|x|); absent where the test checks only the mean. */
  sum?: number;
  mean: number;
  /** Default 1e-2 (diffusers' usual); img2img cases: see {@link tolerances}. */
  sumTolerance?: number;
  /** Default 1e-3 (diffusers' usual); img2img cases: see {@link tolerances}. */
  meanTolerance?: number;
  /** The timesteps diffusers' code ran (img2img cases): the loop's must equal them exactly. */
  timesteps?: readonly number[];
}

/**
 * The allowed |result − expected| for sum and mean. diffusers' tests state absolute tolerances, sized for their
 * 4-decimal numbers. The img2img numbers were recorded at full precision from a run of diffusers' code, and some
 * are tiny (a loop that ends at σ = 0 leaves ~1e-4), where 1e-2 would pass anything: they get 1e-4 of the value
 * (float32 round-off over these loops measured up to 4.1e-5 relative, PNDM at 25 steps) plus 1e-6.
 */
export function tolerances(c: ConformanceCase): { sum: number; mean: number } {
  if (c.strength !== undefined) {
    return { sum: c.sumTolerance ?? 1e-4 * Math.abs(c.sum ?? 0) + 1e-6, mean: c.meanTolerance ?? 1e-4 * Math.abs(c.mean) + 1e-6 };
  }
  return { sum: c.sumTolerance ?? 1e-2, mean: c.meanTolerance ?? 1e-3 };
}

// Base configs of each test file's get_scheduler_config().
const EULER_FAMILY = { num_train_timesteps: 1100, beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear' };
const DDIM = { num_train_timesteps: 1000, beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear', clip_sample: true };
const DDPM = { ...DDIM, variance_type: 'fixed_small' };
const PNDM = { num_train_timesteps: 1000, beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear' };
// lambda_min_clipped −inf and variance_type None are the defaults, so they are left out (JSON has no −inf).
const DPM = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  solver_order: 2,
  prediction_type: 'epsilon',
  thresholding: false,
  sample_max_value: 1.0,
  algorithm_type: 'dpmsolver++',
  solver_type: 'midpoint',
  lower_order_final: false,
  euler_at_final: false,
  final_sigmas_type: 'sigma_min',
};
const LCM = { num_train_timesteps: 1000, beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', prediction_type: 'epsilon' };

const TEST_CASES: readonly ConformanceCase[] = [
  // Euler discrete.
  { source: 'test_scheduler_euler.py::test_full_loop_no_noise', scheduler: 'euler', config: EULER_FAMILY, steps: 10, sum: 10.0807, mean: 0.0131 },
  {
    source: 'test_scheduler_euler.py::test_full_loop_with_v_prediction',
    scheduler: 'euler',
    config: { ...EULER_FAMILY, prediction_type: 'v_prediction' },
    steps: 10,
    sum: 0.0002,
    mean: 2.2676e-6,
  },
  {
    source: 'test_scheduler_euler.py::test_full_loop_device_karras_sigmas',
    scheduler: 'euler',
    config: { ...EULER_FAMILY, use_karras_sigmas: true },
    steps: 10,
    sum: 124.52299499511719,
    mean: 0.16213932633399963,
  },
  { source: 'test_scheduler_euler.py::test_full_loop_with_noise', scheduler: 'euler', config: EULER_FAMILY, steps: 10, start: 8, sum: 57062.9297, mean: 74.3007 },

  // Euler ancestral (noise from torch.manual_seed(0)).
  { source: 'test_scheduler_euler_ancestral.py::test_full_loop_no_noise', scheduler: 'euler_a', config: EULER_FAMILY, steps: 10, seed: 0, sum: 152.3192, mean: 0.1983 },
  {
    source: 'test_scheduler_euler_ancestral.py::test_full_loop_with_v_prediction',
    scheduler: 'euler_a',
    config: { ...EULER_FAMILY, prediction_type: 'v_prediction' },
    steps: 10,
    seed: 0,
    sum: 108.4439,
    mean: 0.1412,
  },
  {
    source: 'test_scheduler_euler_ancestral.py::test_full_loop_with_noise',
    scheduler: 'euler_a',
    config: EULER_FAMILY,
    steps: 10,
    start: 8,
    seed: 0,
    sum: 56163.0508,
    mean: 73.129,
  },

  // Heun discrete.
  { source: 'test_scheduler_heun.py::test_full_loop_no_noise', scheduler: 'heun', config: EULER_FAMILY, steps: 10, sum: 0.1233, mean: 0.0002 },
  {
    source: 'test_scheduler_heun.py::test_full_loop_with_v_prediction',
    scheduler: 'heun',
    config: { ...EULER_FAMILY, prediction_type: 'v_prediction' },
    steps: 10,
    sum: 4.6934e-7,
    mean: 6.1112e-10,
  },
  {
    source: 'test_scheduler_heun.py::test_full_loop_device_karras_sigmas',
    scheduler: 'heun',
    config: { ...EULER_FAMILY, use_karras_sigmas: true },
    steps: 10,
    sum: 0.00015,
    mean: 1.9869554535034695e-7,
    meanTolerance: 1e-2,
  },
  { source: 'test_scheduler_heun.py::test_full_loop_with_noise', scheduler: 'heun', config: EULER_FAMILY, steps: 10, start: 8, sum: 75074.8906, mean: 97.7538 },

  // LMS discrete.
  { source: 'test_scheduler_lms.py::test_full_loop_no_noise', scheduler: 'lms', config: EULER_FAMILY, steps: 10, sum: 1006.388, mean: 1.31 },
  {
    source: 'test_scheduler_lms.py::test_full_loop_with_v_prediction',
    scheduler: 'lms',
    config: { ...EULER_FAMILY, prediction_type: 'v_prediction' },
    steps: 10,
    sum: 0.0017,
    mean: 2.2676e-6,
  },
  {
    source: 'test_scheduler_lms.py::test_full_loop_device_karras_sigmas',
    scheduler: 'lms',
    config: { ...EULER_FAMILY, use_karras_sigmas: true },
    steps: 10,
    sum: 3812.9927,
    mean: 4.9648,
    sumTolerance: 2e-2,
  },
  { source: 'test_scheduler_lms.py::test_full_loop_with_noise', scheduler: 'lms', config: EULER_FAMILY, steps: 10, start: 8, sum: 27663.6895, mean: 36.0204 },

  // DDIM (eta 0).
  { source: 'test_scheduler_ddim.py::test_full_loop_no_noise', scheduler: 'ddim', config: DDIM, steps: 10, sum: 172.0067, mean: 0.223967 },
  {
    source: 'test_scheduler_ddim.py::test_full_loop_with_v_prediction',
    scheduler: 'ddim',
    config: { ...DDIM, prediction_type: 'v_prediction' },
    steps: 10,
    sum: 52.5302,
    mean: 0.0684,
  },
  {
    source: 'test_scheduler_ddim.py::test_full_loop_with_set_alpha_to_one',
    scheduler: 'ddim',
    config: { ...DDIM, set_alpha_to_one: true, beta_start: 0.01 },
    steps: 10,
    sum: 149.8295,
    mean: 0.1951,
  },
  {
    source: 'test_scheduler_ddim.py::test_full_loop_with_no_set_alpha_to_one',
    scheduler: 'ddim',
    config: { ...DDIM, set_alpha_to_one: false, beta_start: 0.01 },
    steps: 10,
    sum: 149.0784,
    mean: 0.1941,
  },
  { source: 'test_scheduler_ddim.py::test_full_loop_with_noise', scheduler: 'ddim', config: DDIM, steps: 10, start: 8, sum: 354.5418, mean: 0.4616 },

  // DDPM: the tests walk all 1000 training timesteps, which is set_timesteps(1000) with leading spacing.
  { source: 'test_scheduler_ddpm.py::test_full_loop_no_noise', scheduler: 'ddpm', config: DDPM, steps: 1000, seed: 0, sum: 258.9606, mean: 0.3372 },
  {
    source: 'test_scheduler_ddpm.py::test_full_loop_with_v_prediction',
    scheduler: 'ddpm',
    config: { ...DDPM, prediction_type: 'v_prediction' },
    steps: 1000,
    seed: 0,
    sum: 202.0296,
    mean: 0.2631,
  },
  { source: 'test_scheduler_ddpm.py::test_full_loop_with_noise', scheduler: 'ddpm', config: DDPM, steps: 1000, start: 998, seed: 0, sum: 387.9466, mean: 0.5051 },

  // PNDM (PRK warm-up, then PLMS).
  { source: 'test_scheduler_pndm.py::test_full_loop_no_noise', scheduler: 'pndm', config: PNDM, steps: 10, sum: 198.1318, mean: 0.258 },
  {
    source: 'test_scheduler_pndm.py::test_full_loop_with_v_prediction',
    scheduler: 'pndm',
    config: { ...PNDM, prediction_type: 'v_prediction' },
    steps: 10,
    sum: 67.3986,
    mean: 0.0878,
  },
  {
    source: 'test_scheduler_pndm.py::test_full_loop_with_set_alpha_to_one',
    scheduler: 'pndm',
    config: { ...PNDM, set_alpha_to_one: true, beta_start: 0.01 },
    steps: 10,
    sum: 230.0399,
    mean: 0.2995,
  },
  {
    source: 'test_scheduler_pndm.py::test_full_loop_with_no_set_alpha_to_one',
    scheduler: 'pndm',
    config: { ...PNDM, set_alpha_to_one: false, beta_start: 0.01 },
    steps: 10,
    sum: 186.9482,
    mean: 0.2434,
  },

  // DPM-Solver++ multistep.
  { source: 'test_scheduler_dpm_multi.py::test_full_loop_no_noise', scheduler: 'dpmpp_2m', config: DPM, steps: 10, mean: 0.3301 },
  {
    source: 'test_scheduler_dpm_multi.py::test_full_loop_with_v_prediction',
    scheduler: 'dpmpp_2m',
    config: { ...DPM, prediction_type: 'v_prediction' },
    steps: 10,
    mean: 0.2251,
  },
  {
    source: 'test_scheduler_dpm_multi.py::test_full_loop_with_karras_and_v_prediction',
    scheduler: 'dpmpp_2m',
    config: { ...DPM, prediction_type: 'v_prediction', use_karras_sigmas: true },
    steps: 10,
    mean: 0.2096,
  },
  {
    source: 'test_scheduler_dpm_multi.py::test_full_loop_with_lu_and_v_prediction',
    scheduler: 'dpmpp_2m',
    config: { ...DPM, prediction_type: 'v_prediction', use_lu_lambdas: true },
    steps: 10,
    mean: 0.1554,
  },
  { source: 'test_scheduler_dpm_multi.py::test_full_loop_with_noise', scheduler: 'dpmpp_2m', config: DPM, steps: 10, start: 5, sum: 318.4111, mean: 0.4146 },

  // LCM.
  {
    source: 'test_scheduler_lcm.py::test_full_loop_onestep',
    scheduler: 'lcm',
    config: LCM,
    steps: 1,
    seed: 0,
    sum: 18.7097,
    mean: 0.0244,
    sumTolerance: 1e-3,
  },
  {
    source: 'test_scheduler_lcm.py::test_full_loop_multistep',
    scheduler: 'lcm',
    config: LCM,
    steps: 10,
    seed: 0,
    sum: 197.7616,
    mean: 0.2575,
    sumTolerance: 1e-3,
  },
];

/** diffusers' test loops, then the img2img starts (conformance-img2img-cases.ts, made by running diffusers' code). */
export const CONFORMANCE_CASES: readonly ConformanceCase[] = [...TEST_CASES, ...IMG2IMG_CASES];

/** Whether a result is within the case's tolerances and, where the case records them, ran the same timesteps. */
export function matches(c: ConformanceCase, result: { sum: number; mean: number; timesteps?: ArrayLike<number> }): boolean {
  const tol = tolerances(c);
  const sumOk = c.sum === undefined || Math.abs(result.sum - c.sum) < tol.sum;
  const timestepsOk = c.timesteps === undefined || (result.timesteps !== undefined && sameTimesteps(c.timesteps, result.timesteps));
  return sumOk && timestepsOk && Math.abs(result.mean - c.mean) < tol.mean;
}

/** Exact equality: diffusers' float32 timesteps and ours are the same doubles, or the start is not the same. */
export function sameTimesteps(expected: readonly number[], actual: ArrayLike<number>): boolean {
  return expected.length === actual.length && expected.every((t, i) => t === actual[i]);
}
