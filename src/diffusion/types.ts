/**
 * The contract between the rest of the bot and the diffusion engine.
 * Nothing in src/diffusion imports discord.js; everything that crosses the worker boundary is plain data.
 */

/** Scheduler names accepted everywhere (CLI, slash command choices, settings). */
export const SCHEDULER_NAMES = ['ddpm', 'ddim', 'pndm', 'euler', 'euler_a', 'heun', 'lms', 'dpmpp_2m', 'lcm'] as const;
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

/** Noise generators a job may ask for (see noise.ts). */
export const NOISE_NAMES = ['torch', 'xoshiro'] as const;
export type NoiseName = (typeof NOISE_NAMES)[number];
/**
 * The noise of a job that names none: torch's CPU generator, as diffusers and ComfyUI draw it (its cost is a
 * fraction of a percent of an image: tools/bench/noise-cost.ts, and the README's "Seeds that match other tools").
 */
export const DEFAULT_NOISE: NoiseName = 'torch';
/** The noise of a job recorded before `noise` existed (journal, job store, 🔁 of an old picture): xoshiro. */
export const RECORDED_NOISE_BEFORE_FIELD: NoiseName = 'xoshiro';

/** What one job asks the engine for. Validated by `checkInputs` in pipeline.ts before any work starts. */
export interface GenerateParams {
  prompt: string;
  /** Empty string or undefined: unconditional embedding of "". */
  negativePrompt?: string;
  /** Integer, 1..1000 (the guild and the model narrow it further). */
  steps: number;
  /** uint32. */
  seed: number;
  /** Classifier-free guidance scale; ≤ 1 turns CFG off (one UNet half). 0 is a value, not "missing". */
  guidanceScale: number;
  /** Omitted: the model's own scheduler from scheduler/scheduler_config.json (its `_class_name`). */
  scheduler?: SchedulerName;
  /** Pixels; multiples of 8 × the model's latent factor. Omitted: the model's native size. */
  width?: number;
  height?: number;
  /** Images in this job (batch), 1..8. Image i uses seed (seed + i) mod 2^32. */
  count?: number;
  /**
   * The generator the seed drives (noise.ts): 'torch' (torch.Generator("cpu") + torch.randn, diffusers' and
   * ComfyUI's CPU noise) or 'xoshiro' (imagine's own, every job before the field). Omitted: {@link DEFAULT_NOISE}.
   */
  noise?: NoiseName;
  // --- img2img (issue 13) ---
  /**
   * img2img: start from this picture (PNG, JPEG or WebP bytes; EXIF orientation applied), scaled to cover
   * width × height and cropped at the centre. Latent models need `vae_encoder/model.onnx`. Omitted: txt2img.
   */
  initImage?: Uint8Array;
  /**
   * img2img only: how much of the schedule runs, 0 < strength ≤ 1 (diffusers' `strength`): 1 starts from pure
   * noise, small values keep the picture. The loop runs floor(steps × strength) steps. Default 0.8 (diffusers').
   */
  strength?: number;
  /**
   * A U through the model's own `upscaler/` (its `ModelInfo.upscaler`): `initImage` at width / scale × height /
   * scale, enlarged by the network to width × height; no denoising, one picture, no `strength`.
   */
  upscale?: boolean;
  // --- end img2img ---
  /** Which installed model makes it, by name (its folder's); omitted: the engine's default model. */
  model?: string;
}

/** A cheap look at the current denoised estimate: raw RGB bytes, no VAE call. */
export interface Preview {
  width: number;
  height: number;
  /** width × height × 3 bytes, row-major RGB. */
  rgb: Uint8Array;
}

export interface StepProgress {
  /** 1-based: step `step` of `totalSteps` has just finished. */
  step: number;
  totalSteps: number;
  /** Milliseconds since the job started running. */
  elapsedMs: number;
  preview?: Preview;
}

export interface GenerateResult {
  /** PNG bytes, one per image. */
  images: Uint8Array[];
  width: number;
  height: number;
  seed: number;
  steps: number;
  guidanceScale: number;
  scheduler: SchedulerName;
  /** The generator the noise came from (always set by the pipeline; absent only in stand-ins). */
  noise?: NoiseName;
  /** The model folder's name. */
  model: string;
  /** True when the prompt (or negative prompt) was cut to the text encoder's length. */
  truncated: boolean;
  /** img2img: the strength it ran with (absent for txt2img). */
  strength?: number;
  /**
   * The model's safety checker's verdict, one per image (true: flagged). Absent when the model has no checker:
   * the pictures were not checked. What a flag means for posting is the bot's rule, not the engine's.
   */
  flagged?: boolean[];
  timings: {
    totalMs: number;
    /** Sum of the runtime's `run()` calls (text encoder, UNet, VAE, safety checker). */
    runtimeMs: number;
    /**
     * The UNet calls' share of `runtimeMs`. On webgpu a call returns once its work is queued (its output stays on
     * the GPU), so this is the time to queue them; the GPU's own time lands in the run that reads a result back.
     */
    unetMs: number;
    /** The safety checker's share of `totalMs` (CLIP preprocessing and its calls), when it ran. */
    safetyMs?: number;
    /** On webgpu: what the denoising loop copied between host and GPU (the batch's, shared by its jobs). */
    gpuCopies?: GpuCopies;
  };
}

/** Options that travel beside the params but are not part of them. */
export interface GenerateOptions {
  signal?: AbortSignal;
  onProgress?: (progress: StepProgress) => void;
  /** Ask for a preview every N steps (0: never). Default 1. */
  previewEvery?: number;
}

/** One job of a shared run (see `ImageEngine.generateBatch`). */
export interface BatchItem {
  params: GenerateParams;
  options?: GenerateOptions;
}

/** What the queue needs from whatever runs jobs: the worker pool in production, a stand-in in load tests. */
export interface ImageEngine {
  generate(params: GenerateParams, options?: GenerateOptions): Promise<GenerateResult>;
  /**
   * Optional: run these jobs together, in the same UNet calls, as soon as a worker is free. The caller groups
   * jobs that share `batchKey` (steps, scheduler, size); each keeps its own prompt, seed, guidance, progress,
   * signal and result. Returns one promise per item, in order, and each settles on its own: an aborted job
   * rejects (`cancelled`) at once while the others go on. An engine without it gets one `generate` per job.
   */
  generateBatch?(items: readonly BatchItem[]): Promise<GenerateResult>[];
  /** Model facts the command layer needs (native size, scheduler list), of the default model. */
  info(): Promise<ModelInfo>;
  /** Optional: the models this engine can run, by name, the default first. Without it, only the default. */
  models?(): Promise<EngineModelListing[]>;
  /**
   * Optional: whether a worker holds this model now (`undefined`: the default model), so the queue may start a job
   * that needs no load before one that does (queue/model-affinity.ts). Without it, jobs start in fair order.
   */
  modelLoaded?(model: string | undefined): boolean;
  /** Optional: whether the engine can take jobs now (health checks, metrics). Without it, an in-process engine. */
  health?(): EngineHealth;
  close(): Promise<void>;
}

/** What `ImageEngine.health` reports. */
export interface EngineHealth {
  /** Engines (worker threads) that have the model loaded and take jobs now. */
  alive: number;
  /** Engines replaced since the start: crashed and restarted, or stuck in a model call and replaced. */
  restarts: number;
}

export interface ModelInfo {
  name: string;
  /** Native output size in pixels. */
  width: number;
  height: number;
  /** Pixels per latent cell (8 for SD, 1 for a pixel-space model). */
  latentFactor: number;
  defaultScheduler: SchedulerName;
  /** Prompt tokens the text encoder sees, specials included. */
  maxTokens: number;
  /** True when the UNet was exported with a fixed spatial size: only width × height above can be made. */
  fixedSize?: boolean;
  /**
   * The model's own recommended guidance scale, from `imagine.json` beside its weights (`guidance_scale`);
   * absent when the folder has none (SD exports), then the caller's default applies.
   */
  defaultGuidance?: number;
  /**
   * True when the model has a safety checker (`safety_checker/model.onnx`), so every result carries `flagged`;
   * false or absent: its pictures are not checked.
   */
  safetyChecker?: boolean;
  /**
   * Whether it can start from a picture (img2img): a pixel-space model always, a latent one when it has
   * `vae_encoder/model.onnx`. Absent: not known (an engine that does not say), the engine decides per job.
   */
  img2img?: boolean;
  /** Present when the folder has `upscaler/model.onnx`: a U enlarges by `scale` with it (GenerateParams.upscale). */
  upscaler?: { scale: number };
}

/** An installed model the engine may load, as the model library describes it (the engine does not scan folders). */
export interface EngineModel {
  /** Its folder's name: what `GenerateParams.model` names. */
  name: string;
  dir: string;
  /** Bytes of all its files; the engine estimates its memory from this (see worker-pool.ts). */
  bytes: number;
  /** `SD 1.x`, `LCM`, `pixel`, … (the library's `inferKind`). */
  kind?: string;
  /** Its defaults from `imagine.json`, and inferred ones (the library's). */
  defaults?: ModelDefaultsInfo;
  /** It has `safety_checker/model.onnx` (known before it is loaded). */
  safetyChecker?: boolean;
}

/** A model's own defaults: what applies when the member gives none. */
export interface ModelDefaultsInfo {
  steps?: number;
  stepsMax?: number;
  guidance?: number;
  scheduler?: SchedulerName;
  width?: number;
  height?: number;
  /** Where the values came from: `imagine.json`, or the model card the inferred ones follow. */
  source?: string;
}

/** What `ImageEngine.models` lists for one model. */
export interface EngineModelListing extends EngineModel {
  /** The default model (MODEL_DIR). */
  isDefault: boolean;
  /** The memory the engine reckons it takes loaded, in bytes (its files × 1.2). */
  estimatedBytes: number;
  /** Its facts once a worker has loaded it (fixedSize, native size, …); absent before. */
  info?: ModelInfo;
}

/** Copies between host memory and GPU buffers in one denoising loop on webgpu (see diffusion/gpu-loop.ts). */
export interface GpuCopies {
  /** Reads of a GPU result into host memory (the last latents, previews, a JS-stepped scheduler's guidance). */
  toHost: number;
  toHostBytes: number;
  /** Bytes sent up: the first input and latents, the prompts' embeddings, a JS-stepped scheduler's inputs. */
  toGpuBytes: number;
}
