import { existsSync, readdirSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { EXECUTION_PROVIDERS, pickProvider, webgpuRunsFloat16, type ExecutionProviderName } from './execution-providers.js';
import { openUpscaler, type UpscalerPart } from './upscaler.js';
import { ModelLoadError } from './model-error.js';
import { schedulerNameFromClass } from './schedulers/index.js';
import { createCachedSession } from './optimized-cache.js';
import { DEFAULT_SESSION_OPTIONS } from './session-options.js';
import type { SchedulerConfig } from './schedulers/types.js';
import { loadTokenizer, type PromptTokenizer } from './tokenizer.js';
import type { ModelInfo, SchedulerName } from './types.js';
import {
  checkSdxlTextEncoder,
  checkTextEncoder,
  checkUnet,
  checkVaeDecoder,
  checkVaeEncoder,
  dim,
  openSafetyChecker,
  readJson,
  type SafetyCheckerPart,
  type SdxlTextEncoderPart,
  type TextEncoderPart,
  type UnetPart,
  type VaeDecoderPart,
  type VaeEncoderPart,
} from './model-parts.js';

export { EXECUTION_PROVIDERS, ModelLoadError, type ExecutionProviderName };
export type { FloatType, SafetyCheckerPart, SdxlTextEncoderPart, TensorSpec, TextEncoderPart, UnetPart, VaeDecoderPart, VaeEncoderPart } from './model-parts.js';

export interface LoadModelOptions {
  /**
   * Providers to try, in order of preference. Default `['cpu']`. One that is not present on this machine is skipped
   * with a log line, ending at cpu.
   */
  executionProviders?: readonly ExecutionProviderName[];
  /** Threads per session for the cpu provider. Default: onnxruntime's choice (the physical cores). */
  intraOpNumThreads?: number;
  /**
   * More onnxruntime session options (thread spinning, memory pattern, free dimension overrides...), merged over
   * the loader's DEFAULT_SESSION_OPTIONS (session-options.ts). Plain data, so it can cross to a worker.
   */
  sessionOptions?: Omit<ort.InferenceSession.SessionOptions, 'executionProviders'>;
  /**
   * A folder for onnxruntime's optimised graphs (optimized-cache.ts): the first load of a model writes them, later
   * loads skip graph optimisation. Used on the cpu provider only. Default: none (every load optimises). The bot
   * passes DATA_DIR/ort-cache; never the model's own folder.
   */
  optimizedModelCacheDir?: string;
  /** Where the one line about the provider in use goes. Default console.error. */
  log?: (line: string) => void;
}

/** A loaded model folder: sessions, their tensor specs, tokenizer and scheduler config. */
export interface DiffusionModel {
  dir: string;
  info: ModelInfo;
  textEncoder: TextEncoderPart;
  unet: UnetPart;
  /** Absent for a pixel-space model: the UNet's sample is the image itself, in [-1, 1]. */
  vaeDecoder?: VaeDecoderPart;
  /** Present when a latent model's folder has vae_encoder/model.onnx: it can start from a picture (img2img). */
  vaeEncoder?: VaeEncoderPart;
  /** Present when the folder has safety_checker/model.onnx: every picture is checked after decoding. */
  safetyChecker?: SafetyCheckerPart;
  /** Present for an SDXL model (a UNet that takes `text_embeds` and `time_ids`): its second text encoder and tokenizer. */
  sdxl?: SdxlParts;
  /** Present when the folder has upscaler/model.onnx: a U enlarges with it (upscaler.ts). */
  upscaler?: UpscalerPart;
  /** Latent (or image) channels the UNet denoises. */
  channels: number;
  /** vae_decoder/config.json `scaling_factor` (default 0.18215, as diffusers). 1 for pixel-space models. */
  scalingFactor: number;
  /** Width of `timestep_cond` (LCM's guidance embedding), 0 when absent. */
  timestepCondDim: number;
  tokenizer: PromptTokenizer;
  schedulerConfig: SchedulerConfig;
  /** The execution provider the sessions run on. */
  executionProvider: ExecutionProviderName;
  release(): Promise<void>;
}

/**
 * What SDXL adds (diffusers' StableDiffusionXLPipeline): a second text encoder and tokenizer, and the rule for an
 * empty negative prompt.
 */
export interface SdxlParts {
  /** text_encoder/ (CLIP-L in SDXL) with its hidden states: the same session as `DiffusionModel.textEncoder`. */
  textEncoder: SdxlTextEncoderPart;
  /** text_encoder_2/ (OpenCLIP-bigG with projection): hidden states and the pooled `text_embeds`. */
  textEncoder2: SdxlTextEncoderPart;
  /** tokenizer_2/: same vocabulary as tokenizer/ in SDXL, its own padding token (`!`). */
  tokenizer2: PromptTokenizer;
  /**
   * model_index.json `force_zeros_for_empty_prompt` (diffusers' default: true): with guidance and no negative prompt,
   * the unconditional rows get zeros rather than the encoded empty prompt.
   */
  forceZerosForEmptyPrompt: boolean;
}

const DEFAULT_SCALING_FACTOR = 0.18215; // diffusers' AutoencoderKL default (SD 1.x/2.x)

/**
 * Load a model folder in the diffusers/Optimum ONNX layout. Reads input and output names, dtypes and shapes from
 * the sessions' metadata and refuses, naming the file, a model that does not fit. A `safety_checker/model.onnx` is
 * loaded with its `feature_extractor/preprocessor_config.json` (see safety-checker.ts), and a latent model's
 * `vae_encoder/model.onnx` when present (img2img); parts imagine does not use (unknown config keys, a
 * safety_checker/ folder without its model) are ignored.
 */
export async function loadModel(dir: string, options: LoadModelOptions = {}): Promise<DiffusionModel> {
  dir = resolve(dir);
  const log = options.log ?? ((line: string) => console.error(line));
  const indexPath = join(dir, 'model_index.json');
  if (!existsSync(indexPath)) throw new ModelLoadError(`${indexPath}: expected a diffusers model_index.json (is ${dir} a model folder?)`);
  const index = readJson(indexPath); // its entries name parts we find by folder anyway
  if (index.requires_aesthetics_score === true) {
    throw new ModelLoadError(
      `${indexPath}: this is an SDXL refiner (\`requires_aesthetics_score\`: its UNet is conditioned on an aesthetic score); imagine runs SDXL base models only`,
    );
  }

  const schedulerPath = join(dir, 'scheduler', 'scheduler_config.json');
  if (!existsSync(schedulerPath)) throw new ModelLoadError(`${schedulerPath}: expected a scheduler config`);
  const schedulerConfig = readJson(schedulerPath);

  const vaeDir = join(dir, 'vae_decoder');
  const pixelSpace = !existsSync(join(vaeDir, 'model.onnx'));

  const providers = await pickProvider(options.executionProviders ?? ['cpu'], log);
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    ...DEFAULT_SESSION_OPTIONS,
    ...(options.intraOpNumThreads !== undefined ? { intraOpNumThreads: options.intraOpNumThreads } : {}),
    ...options.sessionOptions,
    executionProviders: [providers],
  };
  const sessions: ort.InferenceSession[] = [];
  const open = async (part: string, partOptions: ort.InferenceSession.SessionOptions = sessionOptions) => {
    const file = join(dir, part, 'model.onnx');
    if (!existsSync(file)) {
      const pytorch = existsSync(join(dir, part)) && readdirSync(join(dir, part)).some((f) => /\.(safetensors|bin|ckpt)$/.test(f));
      const hint = pytorch ? ' (this looks like a PyTorch diffusers folder: export it to ONNX first, e.g. `optimum-cli export onnx --model <folder> <out>`)' : '';
      throw new ModelLoadError(`${file}: expected the ${part} ONNX model${hint}`);
    }
    try {
      const session =
        options.optimizedModelCacheDir !== undefined && providers === 'cpu'
          ? await createCachedSession(options.optimizedModelCacheDir, file, providers, partOptions, log)
          : await ort.InferenceSession.create(file, partOptions);
      sessions.push(session);
      return { session, file };
    } catch (error) {
      throw new ModelLoadError(`${file}: onnxruntime could not load it: ${(error as Error).message}`);
    }
  };
  const releaseAll = async () => {
    await Promise.all(sessions.map((s) => s.release()));
  };

  try {
    const te = await open('text_encoder');
    const textEncoder = checkTextEncoder(te.session, te.file);
    // webgpu: the UNet's prediction stays in a GPU buffer for the loop's step graph (gpu-loop.ts).
    const un = await open('unet', providers === 'webgpu' ? { ...sessionOptions, preferredOutputLocation: 'gpu-buffer' } : sessionOptions);
    const unet = checkUnet(un.session, un.file);
    if (providers === 'webgpu' && unet.sample.type === 'float16' && !(await webgpuRunsFloat16())) {
      // A float16 model on a device without shader-f16 would fail at its first run: it runs on cpu instead, as a
      // provider that is not there does.
      log(`imagine: ${dir} is a float16 model and this webgpu device has no float16 kernels (shader-f16): running it on cpu`);
      await releaseAll();
      return loadModel(dir, { ...options, executionProviders: ['cpu'] });
    }
    let vaeDecoder: VaeDecoderPart | undefined;
    if (!pixelSpace) {
      const vae = await open('vae_decoder');
      vaeDecoder = checkVaeDecoder(vae.session, vae.file);
    }
    let vaeEncoder: VaeEncoderPart | undefined;
    if (!pixelSpace && existsSync(join(dir, 'vae_encoder', 'model.onnx'))) {
      const enc = await open('vae_encoder');
      vaeEncoder = checkVaeEncoder(enc.session, enc.file);
    }

    const safetyChecker = await openSafetyChecker(dir, open, log);
    const sdxlEncoders = unet.timeIds ? await openSdxlEncoders(textEncoder, te.file, open) : undefined;
    const upscaler = await openUpscaler(dir, open);

    const channels = dim(unet.sample.shape[1]) ?? dim(vaeDecoder?.latentSample.shape[1]) ?? (pixelSpace ? 3 : 4);
    if (pixelSpace && channels !== 3) {
      throw new ModelLoadError(`${un.file}: a model without vae_decoder/ must denoise 3-channel images, but \`${unet.sample.name}\` has ${channels} channels`);
    }
    const latentChannels = dim(vaeDecoder?.latentSample.shape[1]);
    if (vaeDecoder && latentChannels !== undefined && latentChannels !== channels) {
      throw new ModelLoadError(`${join(vaeDir, 'model.onnx')}: expected ${channels} latent channels to match the UNet, got ${latentChannels}`);
    }
    const encoderChannels = dim(vaeEncoder?.latent.shape[1]);
    const expectedEncoderChannels = vaeEncoder?.latentKind === 'parameters' ? 2 * channels : channels;
    if (vaeEncoder && encoderChannels !== undefined && encoderChannels !== expectedEncoderChannels) {
      throw new ModelLoadError(`${vaeEncoder.file}: expected \`${vaeEncoder.latent.name}\` of ${expectedEncoderChannels} channels to match the UNet, got ${encoderChannels}`);
    }
    // SDXL: both encoders' penultimate hidden states side by side (diffusers' torch.concat(prompt_embeds_list, dim=-1)).
    const hidden = sdxlEncoders
      ? sumOrUndefined(dim(sdxlEncoders.textEncoder.penultimate.shape[2]), dim(sdxlEncoders.textEncoder2.penultimate.shape[2]))
      : dim(textEncoder.lastHiddenState.shape[2]);
    const expectedHidden = dim(unet.encoderHiddenStates.shape[2]);
    if (hidden !== undefined && expectedHidden !== undefined && hidden !== expectedHidden) {
      const whose = sdxlEncoders ? 'the sum of both text encoders\' hidden widths' : "the text encoder's";
      throw new ModelLoadError(`${un.file}: expected \`${unet.encoderHiddenStates.name}\` of width ${hidden} (${whose}), got ${expectedHidden}`);
    }

    const pooledWidth = dim(sdxlEncoders?.textEncoder2.textEmbeds?.shape[1]);
    const expectedPooled = dim(unet.textEmbeds?.shape[1]);
    if (pooledWidth !== undefined && expectedPooled !== undefined && pooledWidth !== expectedPooled) {
      throw new ModelLoadError(`${un.file}: expected \`text_embeds\` of width ${pooledWidth} (text_encoder_2's projection), got ${expectedPooled}`);
    }

    const vaeConfig = existsSync(join(vaeDir, 'config.json')) ? readJson(join(vaeDir, 'config.json')) : {};
    const latentFactor = pixelSpace ? 1 : latentFactorOf(vaeConfig, vaeDecoder!);
    const scalingFactor = pixelSpace ? 1 : numberOr(vaeConfig.scaling_factor, DEFAULT_SCALING_FACTOR);

    const tokenizer = tokenizerFor(join(dir, 'tokenizer'), textEncoder);
    let sdxl: SdxlParts | undefined;
    if (sdxlEncoders) {
      const tokenizer2Dir = join(dir, 'tokenizer_2');
      const tokenizer2 = tokenizerFor(tokenizer2Dir, sdxlEncoders.textEncoder2);
      if (tokenizer2.maxLength !== tokenizer.maxLength) {
        throw new ModelLoadError(`${tokenizer2Dir}: expected ${tokenizer.maxLength} tokens as tokenizer/ (both encoders' rows are joined token by token), got ${tokenizer2.maxLength}`);
      }
      // diffusers' StableDiffusionXLPipeline registers force_zeros_for_empty_prompt=True unless the index says otherwise.
      sdxl = { ...sdxlEncoders, tokenizer2, forceZerosForEmptyPrompt: index.force_zeros_for_empty_prompt !== false };
    }
    const encoderSeq = dim(unet.encoderHiddenStates.shape[1]);
    if (encoderSeq !== undefined && encoderSeq !== tokenizer.maxLength) {
      throw new ModelLoadError(`${un.file}: expected \`${unet.encoderHiddenStates.name}\` of ${tokenizer.maxLength} tokens, got ${encoderSeq}`);
    }

    const unetConfigPath = join(dir, 'unet', 'config.json');
    const unetConfig = existsSync(unetConfigPath) ? readJson(unetConfigPath) : {};
    // Native size: fixed UNet dimensions, else unet/config.json sample_size (a number or [height, width]), else
    // 64 cells (SD 1.x: 512 px; a pixel-space model without a config: 64 px), 128 for SDXL (1024 px: diffusers'
    // StableDiffusionXLPipeline.default_sample_size when the UNet config has none; SDXL-Turbo's config says 64).
    const sampleSize = unetConfig.sample_size;
    const [configH, configW] = Array.isArray(sampleSize) ? sampleSize : [sampleSize, sampleSize];
    const fixedH = dim(unet.sample.shape[2]);
    const fixedW = dim(unet.sample.shape[3]);
    const fallbackCells = sdxl ? 128 : 64;
    const height = (fixedH ?? numberOr(configH, fallbackCells)) * latentFactor;
    const width = (fixedW ?? numberOr(configW, fallbackCells)) * latentFactor;

    const className = typeof schedulerConfig._class_name === 'string' ? schedulerConfig._class_name : '';
    const defaultScheduler: SchedulerName = schedulerNameFromClass(className) ?? 'euler';
    if (schedulerNameFromClass(className) === undefined) {
      log(`imagine: ${schedulerPath}: unknown scheduler class \`${className}\`, using euler by default`);
    }

    // Settings that belong to these weights rather than to diffusers' layout (e.g. the guidance a small model was
    // measured best at) live in an optional imagine.json beside them.
    const imaginePath = join(dir, 'imagine.json');
    const imagineConfig = existsSync(imaginePath) ? readJson(imaginePath) : {};
    const defaultGuidance = imagineConfig.guidance_scale;
    if (defaultGuidance !== undefined && (typeof defaultGuidance !== 'number' || !Number.isFinite(defaultGuidance) || defaultGuidance < 0)) {
      throw new ModelLoadError(`${imaginePath}: expected \`guidance_scale\` to be a number of at least 0, got \`${JSON.stringify(defaultGuidance)}\``);
    }

    const timestepCondDim = unet.timestepCond ? dim(unet.timestepCond.shape[1]) ?? numberOr(unetConfig.time_cond_proj_dim, 256) : 0;

    return {
      dir,
      info: {
        name: basename(dir),
        width,
        height,
        latentFactor,
        defaultScheduler,
        maxTokens: tokenizer.maxLength,
        ...(fixedH !== undefined || fixedW !== undefined ? { fixedSize: true } : {}),
        ...(typeof defaultGuidance === 'number' ? { defaultGuidance } : {}),
        safetyChecker: safetyChecker !== undefined,
        img2img: vaeDecoder === undefined || vaeEncoder !== undefined,
        ...(upscaler ? { upscaler: { scale: upscaler.scale } } : {}),
      },
      textEncoder,
      unet,
      vaeDecoder,
      vaeEncoder,
      safetyChecker,
      ...(sdxl ? { sdxl } : {}),
      ...(upscaler ? { upscaler } : {}),
      channels,
      scalingFactor,
      timestepCondDim,
      tokenizer,
      schedulerConfig,
      executionProvider: providers,
      release: releaseAll,
    };
  } catch (error) {
    await releaseAll();
    throw error;
  }
}

/** Pixels per latent cell: from the VAE's config (2^(number of blocks − 1), as diffusers' vae_scale_factor), else from fixed shapes, else 8. */
function latentFactorOf(config: Record<string, unknown>, vae: VaeDecoderPart): number {
  if (Array.isArray(config.block_out_channels) && config.block_out_channels.length > 0) {
    return 2 ** (config.block_out_channels.length - 1);
  }
  const inH = dim(vae.latentSample.shape[2]);
  const outH = dim(vae.sample.shape[2]);
  if (inH !== undefined && outH !== undefined && outH % inH === 0) return outH / inH;
  return 8;
}

/** The tokenizer in `folder` for `encoder`: its sequence length is the encoder's fixed input_ids dimension, else the tokenizer's own. */
function tokenizerFor(folder: string, encoder: TextEncoderPart): PromptTokenizer {
  const seqLen = dim(encoder.inputIds.shape[1]);
  try {
    return loadTokenizer(folder, seqLen !== undefined ? { maxLength: seqLen } : {});
  } catch (error) {
    throw new ModelLoadError(`${folder}: ${(error as Error).message}`);
  }
}

/**
 * SDXL's text encoders: text_encoder/ again for its hidden states, and text_encoder_2/ (CLIPTextModelWithProjection)
 * with its hidden states and pooled `text_embeds`. Their sequence lengths must agree.
 */
async function openSdxlEncoders(
  textEncoder: TextEncoderPart,
  file: string,
  open: (part: string) => Promise<{ session: ort.InferenceSession; file: string }>,
): Promise<Pick<SdxlParts, 'textEncoder' | 'textEncoder2'>> {
  const first = checkSdxlTextEncoder(textEncoder, file, false);
  const te2 = await open('text_encoder_2');
  const textEncoder2 = checkSdxlTextEncoder(checkTextEncoder(te2.session, te2.file), te2.file, true);
  const [seq1, seq2] = [dim(first.penultimate.shape[1]), dim(textEncoder2.penultimate.shape[1])];
  if (seq1 !== undefined && seq2 !== undefined && seq1 !== seq2) {
    throw new ModelLoadError(`${te2.file}: expected hidden states of ${seq1} tokens as text_encoder/'s, got ${seq2}`);
  }
  return { textEncoder: first, textEncoder2 };
}

function sumOrUndefined(a: number | undefined, b: number | undefined): number | undefined {
  return a !== undefined && b !== undefined ? a + b : undefined;
}

function numberOr(value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}

