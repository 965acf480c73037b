import type { ConfigReader } from './config-reader.js';

/**
 * Training noise schedules are data: betas → alphas → alphas_cumprod → sigmas, computed as diffusers computes them
 * (torch float32 tensors), so that the per-file step math sees the same numbers to the last float32 digit.
 * Values are kept in Float64Arrays holding float32-rounded numbers.
 */

const f32 = Math.fround;

export const BETA_SCHEDULES = ['linear', 'scaled_linear', 'squaredcos_cap_v2'] as const;
export type BetaSchedule = (typeof BETA_SCHEDULES)[number] | 'sigmoid';

export interface TrainSchedule {
  numTrainTimesteps: number;
  betas: Float64Array;
  alphas: Float64Array;
  /** ᾱ_t, cumulative product of alphas. */
  alphasCumprod: Float64Array;
}

export interface ScheduleDefaults {
  betaStart?: number;
  betaEnd?: number;
  betaSchedule?: BetaSchedule;
  /** Beta schedules this scheduler accepts (diffusers: DDPM also has `sigmoid`). */
  allowed?: readonly BetaSchedule[];
  /** Whether `rescale_betas_zero_snr` exists for this scheduler (diffusers: all but PNDM, LMS). */
  zeroSnr?: boolean;
}

/** Computed schedules by their keys (never handed out: callers get copies). */
const SCHEDULES = new Map<string, TrainSchedule>();

/**
 * Read num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas and rescale_betas_zero_snr and build
 * the training schedule, with diffusers' defaults unless the scheduler's own differ.
 */
export function readTrainSchedule(config: ConfigReader, defaults: ScheduleDefaults = {}): TrainSchedule {
  const numTrainTimesteps = config.integer('num_train_timesteps', 1000, 2);
  const betaStart = config.number('beta_start', defaults.betaStart ?? 0.0001);
  const betaEnd = config.number('beta_end', defaults.betaEnd ?? 0.02);
  const betaSchedule = config.oneOf('beta_schedule', defaults.allowed ?? BETA_SCHEDULES, defaults.betaSchedule ?? 'linear');
  const trainedBetas = config.optionalNumberArray('trained_betas');
  const zeroSnr = (defaults.zeroSnr ?? true) && config.boolean('rescale_betas_zero_snr', false);

  // Every job builds its scheduler afresh; the computed schedule is the same for the same keys, so it is kept
  // (a few configs per process) and each scheduler gets its own copies, free to change them.
  const key = trainedBetas === undefined ? `${numTrainTimesteps} ${betaStart} ${betaEnd} ${betaSchedule} ${zeroSnr}` : undefined;
  const known = key === undefined ? undefined : SCHEDULES.get(key);
  if (known !== undefined) {
    return { numTrainTimesteps, betas: known.betas.slice(), alphas: known.alphas.slice(), alphasCumprod: known.alphasCumprod.slice() };
  }

  let betas: Float64Array;
  if (trainedBetas !== undefined) {
    betas = Float64Array.from(trainedBetas, f32);
  } else if (betaSchedule === 'linear') {
    betas = linspaceF32(betaStart, betaEnd, numTrainTimesteps);
  } else if (betaSchedule === 'scaled_linear') {
    // "very specific to the latent diffusion model" (diffusers): linear in sqrt(beta).
    betas = linspaceF32(Math.sqrt(betaStart), Math.sqrt(betaEnd), numTrainTimesteps).map((b) => f32(b * b));
  } else if (betaSchedule === 'squaredcos_cap_v2') {
    betas = betasForAlphaBar(numTrainTimesteps);
  } else {
    // sigmoid (DDPM only): torch.sigmoid(linspace(-6, 6)) * (end - start) + start.
    betas = linspaceF32(-6, 6, numTrainTimesteps).map((x) => f32(f32(f32(1 / (1 + Math.exp(-x))) * f32(betaEnd - betaStart)) + betaStart));
  }
  if (zeroSnr) betas = rescaleZeroTerminalSnr(betas);

  const alphas = betas.map((b) => f32(1 - b));
  const alphasCumprod = cumprodF32(alphas);
  if (key !== undefined && SCHEDULES.size < 16) SCHEDULES.set(key, { numTrainTimesteps, betas: betas.slice(), alphas: alphas.slice(), alphasCumprod: alphasCumprod.slice() });
  return { numTrainTimesteps, betas, alphas, alphasCumprod };
}

/** torch.linspace(start, end, steps, dtype=float32): the first half counts up from start, the second down from end. */
export function linspaceF32(start: number, end: number, steps: number): Float64Array {
  const out = new Float64Array(steps);
  if (steps === 1) {
    out[0] = f32(start);
    return out;
  }
  // As ATen's CPU kernel: start, end and step are float32, each product and sum rounds to float32.
  const s = f32(start);
  const e = f32(end);
  const step = f32(f32(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) {
    out[i] = i < half ? f32(s + f32(step * i)) : f32(e - f32(step * (steps - 1 - i)));
  }
  return out;
}

/** numpy.linspace in float64: start + i·step, the last point exactly `end`. */
export function linspace(start: number, end: number, steps: number): Float64Array {
  const out = new Float64Array(steps);
  const div = steps - 1;
  const step = div > 0 ? (end - start) / div : 0;
  for (let i = 0; i < steps; i++) out[i] = start + i * step;
  if (steps > 1) out[steps - 1] = end;
  return out;
}

/** numpy.arange(start, stop, step) for float arguments: ceil((stop − start) / step) points start + i·step. */
export function arange(start: number, stop: number, step: number): Float64Array {
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = start + i * step;
  return out;
}

/** numpy's round(): halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** torch.cumprod on a float32 CPU tensor: the running product is kept in double, each output rounded to float32. */
function cumprodF32(values: Float64Array): Float64Array {
  const out = new Float64Array(values.length);
  let acc = 1;
  for (let i = 0; i < values.length; i++) {
    acc *= values[i];
    out[i] = f32(acc);
  }
  return out;
}

/** Glide's cosine schedule (Nichol & Dhariwal 2021, "Improved DDPM", eq. 17), betas capped at 0.999. */
function betasForAlphaBar(n: number, maxBeta = 0.999): Float64Array {
  const alphaBar = (t: number): number => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = f32(Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), maxBeta));
  return out;
}

/** Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps Are Flawed", Algorithm 1. */
function rescaleZeroTerminalSnr(betas: Float64Array): Float64Array {
  const n = betas.length;
  const sqrtBar = cumprodF32(betas.map((b) => f32(1 - b))).map((a) => f32(Math.sqrt(a)));
  const first = sqrtBar[0];
  const last = sqrtBar[n - 1];
  const scale = f32(first / f32(first - last));
  const bar = sqrtBar.map((s) => {
    const shifted = f32(f32(s - last) * scale);
    return f32(shifted * shifted);
  });
  const out = new Float64Array(n);
  out[0] = f32(1 - bar[0]);
  for (let i = 1; i < n; i++) out[i] = f32(1 - f32(bar[i] / bar[i - 1]));
  return out;
}

/** σ_t = sqrt((1 − ᾱ_t) / ᾱ_t), index t ascending (float32 as in diffusers). */
export function sigmasFromAlphasCumprod(alphasCumprod: Float64Array): Float64Array {
  return alphasCumprod.map((a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
}

/** numpy.interp(x, arange(len(fp)), fp) for x inside [0, len − 1]. */
export function interpIndex(x: number, fp: Float64Array): number {
  if (x <= 0) return fp[0];
  const last = fp.length - 1;
  if (x >= last) return fp[last];
  const lo = Math.floor(x);
  const w = x - lo;
  return w === 0 ? fp[lo] : fp[lo] + w * (fp[lo + 1] - fp[lo]);
}

/**
 * The (fractional) training timestep whose log-sigma matches `sigma`, by linear interpolation between neighbours
 * (diffusers' `_sigma_to_t`, k-diffusion's `sigma_to_t`). `logSigmas` ascends with t.
 */
export function sigmaToT(sigma: number, logSigmas: Float64Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  // The last index whose log-sigma is ≤ logSigma (0 when none), capped so a right neighbour exists.
  let lowIdx = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma - logSigmas[i] >= 0) lowIdx = i;
  lowIdx = Math.min(lowIdx, logSigmas.length - 2);
  const low = logSigmas[lowIdx];
  const high = logSigmas[lowIdx + 1];
  const w = Math.min(Math.max((low - logSigma) / (low - high), 0), 1);
  return (1 - w) * lowIdx + w * (lowIdx + 1);
}

/** Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models", eq. 5 (rho = 7). */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number, rho = 7): Float64Array {
  const ramp = linspace(0, 1, n);
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return ramp.map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/** Log-uniform sigmas from sigmaMax down to sigmaMin (diffusers' `_convert_to_exponential`). */
export function exponentialSigmas(sigmaMin: number, sigmaMax: number, n: number): Float64Array {
  return linspace(Math.log(sigmaMax), Math.log(sigmaMin), n).map(Math.exp);
}

export const TIMESTEP_SPACINGS = ['linspace', 'leading', 'trailing'] as const;
export type TimestepSpacing = (typeof TIMESTEP_SPACINGS)[number];

/**
 * Integer timesteps, descending, as DDPM, DDIM and their kin space them ("Common Diffusion Noise Schedules and
 * Sample Steps Are Flawed", Lin et al. 2023, Table 2): linspace over [0, N − 1] rounded; leading multiples of
 * N // n plus steps_offset; trailing from N − 1 down by N / n.
 */
export function integerTimesteps(spacing: TimestepSpacing, numTrain: number, n: number, stepsOffset: number): Float64Array {
  if (spacing === 'linspace') return linspace(0, numTrain - 1, n).map(roundHalfEven).reverse();
  if (spacing === 'leading') {
    const ratio = Math.floor(numTrain / n);
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[n - 1 - i] = i * ratio + stepsOffset;
    return out;
  }
  return arange(numTrain, 0, -numTrain / n).map((v) => roundHalfEven(v) - 1);
}

/**
 * The Euler family's timesteps (euler, euler_a, heun, lms), descending: as {@link integerTimesteps}, except that
 * linspace keeps its fractional float32 values (np.linspace(0, N − 1, n, dtype=float32)), which these schedulers
 * interpolate sigmas at.
 */
export function sigmaTimesteps(spacing: TimestepSpacing, numTrain: number, n: number, stepsOffset: number): Float64Array {
  if (spacing === 'linspace') return linspace(0, numTrain - 1, n).map(f32).reverse();
  return integerTimesteps(spacing, numTrain, n, stepsOffset);
}
