/**
 * The scheduler contract, as in diffusers: built from a scheduler_config.json (diffusers' keys and defaults),
 * it knows only setTimesteps, scaleModelInput and step. One algorithm per file.
 *
 * Samples are flat Float32Arrays (the latent tensor in NCHW order); schedulers never allocate per step
 * beyond what their algorithm must keep (e.g. multistep history).
 */

/** A scheduler_config.json as diffusers writes it. Unknown keys are ignored. */
export type SchedulerConfig = Record<string, unknown>;

/** A seeded source of standard normal noise (see ../rng.ts). Never Math.random. */
export interface NoiseSource {
  /** Fill `out` with independent N(0, 1) samples. */
  fillNormal(out: Float32Array): void;
}

export interface StepResult {
  /**
   * x_{t−1}, a fresh array the caller owns (never `sample` or `modelOutput`; on a final step it may be the same
   * array as predOriginalSample).
   */
  prevSample: Float32Array;
  /** The model's estimate of the clean sample x0, when the algorithm computes it (used for previews). */
  predOriginalSample?: Float32Array;
}

export interface Scheduler {
  /** Timesteps of the current schedule, in the order the loop visits them (one UNet call each). */
  readonly timesteps: Float64Array;
  /** Multiply the initial N(0,1) noise by this. */
  readonly initNoiseSigma: number;
  /** Number of UNet calls per user-visible step is timesteps.length / steps (Heun: 2, PNDM PRK: more). */
  readonly order: number;
  setTimesteps(numInferenceSteps: number): void;
  /**
   * Returns a new or the same array; the caller must not assume it is the input. It may be a buffer the scheduler
   * reuses on its next scaleModelInput call; it is never written to by step().
   */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array;
  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise?: NoiseSource): StepResult;
  /**
   * Noise a clean sample to the level of `timestep` (one of `timesteps`), as diffusers' `add_noise`: the start of
   * img2img, and of diffusers' "full loop with noise" tests. Optional: schedulers without it cannot start mid-schedule.
   */
  addNoise?(originalSample: Float32Array, noise: Float32Array, timestep: number): Float32Array;
}
