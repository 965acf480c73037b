/**
 * The scheduler contract, as in diffusers: built from a scheduler_config.json (diffusers' keys and defaults),
 * it knows only setTimesteps, scaleModelInput and step. One algorithm per file.
 *
 * Samples are flat Float32Arrays (the latent tensor in NCHW order); schedulers never allocate per step
 * beyond what their algorithm must keep (e.g. multistep history) when the caller passes step()'s `out`.
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
   * x_{t−1}. With `out` passed to step(), `out` itself (the caller's buffer). Without it, a fresh array the caller
   * owns (never `sample` or `modelOutput`; on a final step it may be the same array as predOriginalSample).
   */
  prevSample: Float32Array;
  /**
   * The model's estimate of the clean sample x0, when the algorithm computes it (used for previews). It may be a
   * buffer the scheduler reuses: valid until the next step() call; copy it to keep it longer.
   */
  predOriginalSample?: Float32Array;
}

/**
 * A step that is a fixed linear combination of the sample x and the model output m (no noise drawn, no history
 * kept), as float32 coefficients: x0 = x0Sample·x + x0Output·m, clipped to ±clip when given; x_{t−1} =
 * prevSample·x + prevOutput·m + prevX0·x0. Lets a loop run the step where the tensors are (the WebGPU loop runs it
 * as a small ONNX graph on the GPU); the algebra is the step()'s, the float32 rounding may differ in the last bits.
 */
export interface LinearStep {
  x0Sample: number;
  x0Output: number;
  clip?: number;
  prevSample: number;
  prevOutput: number;
  prevX0: number;
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
   *
   * `into`, when given (a buffer of `sample.length` the caller owns, not `sample`), may receive the scaled input:
   * schedulers that scale write it there and return `into`, so the model's input buffer is filled with no copy;
   * schedulers that do not scale ignore it and return `sample`. Callers compare the result with `into`.
   */
  scaleModelInput(sample: Float32Array, timestep: number, into?: Float32Array): Float32Array;
  /**
   * One step x_t → x_{t−1}. `out`, when given, receives x_{t−1} (and is returned as `prevSample`): a buffer of
   * `sample.length` the caller owns and reuses across steps so that the loop allocates nothing. It must not be
   * `sample` or `modelOutput` (a multistep scheduler still reads `sample` after writing); a loop alternates two
   * buffers. Its contents before the call do not matter. Schedulers that keep history copy what they keep.
   */
  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, noise?: NoiseSource, out?: Float32Array): StepResult;
  /**
   * Noise a clean sample to the level of `timestep` (one of `timesteps`), as diffusers' `add_noise`: the start of
   * img2img, and of diffusers' "full loop with noise" tests. Optional: schedulers without it cannot start mid-schedule.
   */
  /**
   * The coefficients of this step when it is a {@link LinearStep}, in place of step(): the scheduler advances as
   * step() would. Returns undefined, without advancing, when its step is not linear (it draws noise or keeps
   * history); that does not change during a schedule. Optional: schedulers without it always run step().
   */
  linearStep?(timestep: number): LinearStep | undefined;
  addNoise?(originalSample: Float32Array, noise: Float32Array, timestep: number): Float32Array;
}
