import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { EXECUTION_PROVIDERS, pickProvider, type ExecutionProviderName } from './execution-providers.js';
import { ModelLoadError } from './model-error.js';
import { schedulerNameFromClass } from './schedulers/index.js';
import { readClipPreprocessing, type ClipPreprocessing } from './safety-checker.js';
import { DEFAULT_SESSION_OPTIONS } from './session-options.js';
import type { SchedulerConfig } from './schedulers/types.js';
import { loadTokenizer, type PromptTokenizer } from './tokenizer.js';
import type { ModelInfo, SchedulerName } from './types.js';

export { EXECUTION_PROVIDERS, ModelLoadError, type ExecutionProviderName };

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
  /** Where the one line about the provider in use goes. Default console.error. */
  log?: (line: string) => void;
}

/** What a session's metadata says about one input or output. */
export interface TensorSpec {
  name: string;
  type: ort.Tensor.Type;
  /** Numbers for fixed dimensions, strings (or -1) for symbolic ones. */
  shape: readonly (number | string)[];
}

export type FloatType = 'float32' | 'float16';

export interface TextEncoderPart {
  session: ort.InferenceSession;
  inputIds: TensorSpec;
  /** Some exports take one; it is fed all ones, as diffusers calls SD's text encoder without a mask. */
  attentionMask?: TensorSpec;
  lastHiddenState: TensorSpec;
}

export interface UnetPart {
  session: ort.InferenceSession;
  sample: TensorSpec;
  timestep: TensorSpec;
  encoderHiddenStates: TensorSpec;
  /** LCM's guidance embedding input, when the model has one. */
  timestepCond?: TensorSpec;
  output: TensorSpec;
}

export interface VaeDecoderPart {
  session: ort.InferenceSession;
  latentSample: TensorSpec;
  sample: TensorSpec;
}

/**
 * img2img's encoder, vae_encoder/model.onnx: `sample` [batch, 3, height, width] in [-1, 1] → either diffusers'
 * `latent_sample` (the latent distribution already sampled, 4 channels) or Optimum's `latent_parameters` (mean and
 * log-variance, 8 channels, of which the mean is taken: diffusers' `retrieve_latents(sample_mode="argmax")`).
 */
export interface VaeEncoderPart {
  session: ort.InferenceSession;
  /** vae_encoder/model.onnx, for messages. */
  file: string;
  sample: TensorSpec;
  latent: TensorSpec;
  /** `sample`: the output is the latent; `parameters`: its first half of channels (the mean) is. */
  latentKind: 'sample' | 'parameters';
}

/** The model's safety checker (diffusers' ONNX `StableDiffusionSafetyChecker`) and the CLIP preprocessing it expects. */
export interface SafetyCheckerPart {
  session: ort.InferenceSession;
  /** safety_checker/model.onnx, for messages. */
  file: string;
  clipInput: TensorSpec;
  images: TensorSpec;
  hasNsfwConcepts: TensorSpec;
  /** From feature_extractor/preprocessor_config.json. */
  preprocessing: ClipPreprocessing;
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
  readJson(indexPath); // must parse; its entries name parts we find by folder anyway

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
  const open = async (part: string) => {
    const file = join(dir, part, 'model.onnx');
    if (!existsSync(file)) {
      const pytorch = existsSync(join(dir, part)) && readdirSync(join(dir, part)).some((f) => /\.(safetensors|bin|ckpt)$/.test(f));
      const hint = pytorch ? ' (this looks like a PyTorch diffusers folder: export it to ONNX first, e.g. `optimum-cli export onnx --model <folder> <out>`)' : '';
      throw new ModelLoadError(`${file}: expected the ${part} ONNX model${hint}`);
    }
    try {
      const session = await ort.InferenceSession.create(file, sessionOptions);
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
    const un = await open('unet');
    const unet = checkUnet(un.session, un.file);
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
    const hidden = dim(textEncoder.lastHiddenState.shape[2]);
    const expectedHidden = dim(unet.encoderHiddenStates.shape[2]);
    if (hidden !== undefined && expectedHidden !== undefined && hidden !== expectedHidden) {
      throw new ModelLoadError(`${un.file}: expected \`${unet.encoderHiddenStates.name}\` of width ${hidden} (the text encoder's), got ${expectedHidden}`);
    }

    const vaeConfig = existsSync(join(vaeDir, 'config.json')) ? readJson(join(vaeDir, 'config.json')) : {};
    const latentFactor = pixelSpace ? 1 : latentFactorOf(vaeConfig, vaeDecoder!);
    const scalingFactor = pixelSpace ? 1 : numberOr(vaeConfig.scaling_factor, DEFAULT_SCALING_FACTOR);

    // Sequence length: the encoder's fixed input_ids dimension, else the tokenizer's own.
    const seqLen = dim(textEncoder.inputIds.shape[1]);
    const tokenizerDir = join(dir, 'tokenizer');
    let tokenizer: PromptTokenizer;
    try {
      tokenizer = loadTokenizer(tokenizerDir, seqLen !== undefined ? { maxLength: seqLen } : {});
    } catch (error) {
      throw new ModelLoadError(`${tokenizerDir}: ${(error as Error).message}`);
    }
    const encoderSeq = dim(unet.encoderHiddenStates.shape[1]);
    if (encoderSeq !== undefined && encoderSeq !== tokenizer.maxLength) {
      throw new ModelLoadError(`${un.file}: expected \`${unet.encoderHiddenStates.name}\` of ${tokenizer.maxLength} tokens, got ${encoderSeq}`);
    }

    const unetConfigPath = join(dir, 'unet', 'config.json');
    const unetConfig = existsSync(unetConfigPath) ? readJson(unetConfigPath) : {};
    // Native size: fixed UNet dimensions, else unet/config.json sample_size (a number or [height, width]), else
    // 64 cells (SD 1.x: 512 px; a pixel-space model without a config: 64 px).
    const sampleSize = unetConfig.sample_size;
    const [configH, configW] = Array.isArray(sampleSize) ? sampleSize : [sampleSize, sampleSize];
    const fixedH = dim(unet.sample.shape[2]);
    const fixedW = dim(unet.sample.shape[3]);
    const height = (fixedH ?? numberOr(configH, 64)) * latentFactor;
    const width = (fixedW ?? numberOr(configW, 64)) * latentFactor;

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
      },
      textEncoder,
      unet,
      vaeDecoder,
      vaeEncoder,
      safetyChecker,
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

function specsOf(session: ort.InferenceSession, which: 'input' | 'output'): TensorSpec[] {
  const metadata = which === 'input' ? session.inputMetadata : session.outputMetadata;
  return metadata.map((m) => {
    if (!m.isTensor) return { name: m.name, type: 'string' as ort.Tensor.Type, shape: [] };
    return { name: m.name, type: m.type, shape: m.shape };
  });
}

function describe(spec: TensorSpec | undefined): string {
  if (!spec) return 'nothing';
  return `\`${spec.name}\` ${spec.type} [${spec.shape.join(', ')}]`;
}

function misfit(file: string, expected: string, got: TensorSpec | TensorSpec[] | undefined): ModelLoadError {
  const gotText = Array.isArray(got) ? got.map(describe).join(', ') || 'nothing' : describe(got);
  return new ModelLoadError(`${file}: expected ${expected}, got ${gotText}`);
}

const FLOAT_TYPES: readonly string[] = ['float32', 'float16'];

function checkTextEncoder(session: ort.InferenceSession, file: string): TextEncoderPart {
  const inputs = specsOf(session, 'input');
  const outputs = specsOf(session, 'output');
  const inputIds = inputs.find((s) => s.name === 'input_ids');
  if (!inputIds || !['int32', 'int64'].includes(inputIds.type) || inputIds.shape.length !== 2) {
    throw misfit(file, 'an input `input_ids` of int32 or int64 [batch, sequence]', inputIds ?? inputs);
  }
  const attentionMask = inputs.find((s) => s.name === 'attention_mask');
  if (attentionMask && (!['int32', 'int64'].includes(attentionMask.type) || attentionMask.shape.length !== 2)) {
    throw misfit(file, 'an optional `attention_mask` of int32 or int64 [batch, sequence]', attentionMask);
  }
  const extra = inputs.filter((s) => s !== inputIds && s !== attentionMask);
  if (extra.length > 0) throw misfit(file, 'only the inputs `input_ids` and (optionally) `attention_mask`', inputs);
  const lastHiddenState = outputs.find((s) => s.name === 'last_hidden_state') ?? outputs.find((s) => s.shape.length === 3);
  if (!lastHiddenState || lastHiddenState.shape.length !== 3 || !FLOAT_TYPES.includes(lastHiddenState.type)) {
    throw misfit(file, 'an output `last_hidden_state` of float32 or float16 [batch, sequence, width]', outputs);
  }
  return { session, inputIds, attentionMask, lastHiddenState };
}

function checkUnet(session: ort.InferenceSession, file: string): UnetPart {
  const inputs = specsOf(session, 'input');
  const outputs = specsOf(session, 'output');
  const byName = (name: string) => inputs.find((s) => s.name === name);
  const sample = byName('sample');
  if (!sample || !FLOAT_TYPES.includes(sample.type) || sample.shape.length !== 4) {
    throw misfit(file, 'an input `sample` of float32 or float16 [batch, channels, height, width]', sample ?? inputs);
  }
  const timestep = byName('timestep');
  const timestepTypes = ['int64', 'int32', 'float32', 'float16'];
  if (!timestep || !timestepTypes.includes(timestep.type) || timestep.shape.length > 1) {
    throw misfit(file, 'an input `timestep` of int64, int32, float32 or float16, shaped [batch], [1] or []', timestep ?? inputs);
  }
  const encoderHiddenStates = byName('encoder_hidden_states');
  if (!encoderHiddenStates || encoderHiddenStates.type !== sample.type || encoderHiddenStates.shape.length !== 3) {
    throw misfit(file, `an input \`encoder_hidden_states\` of ${sample.type} [batch, sequence, width]`, encoderHiddenStates ?? inputs);
  }
  const timestepCond = byName('timestep_cond');
  if (timestepCond && (timestepCond.type !== sample.type || timestepCond.shape.length !== 2)) {
    throw misfit(file, `\`timestep_cond\` of ${sample.type} [batch, width]`, timestepCond);
  }
  const known = new Set(['sample', 'timestep', 'encoder_hidden_states', 'timestep_cond']);
  const unknown = inputs.filter((s) => !known.has(s.name));
  if (unknown.length > 0) {
    throw misfit(file, 'inputs `sample`, `timestep`, `encoder_hidden_states` and optionally `timestep_cond` (SDXL-style extra conditioning is not supported)', unknown);
  }
  const output = outputs.find((s) => s.name === 'out_sample') ?? outputs[0];
  if (!output || output.shape.length !== 4 || output.type !== sample.type) {
    throw misfit(file, `an output \`out_sample\` of ${sample.type} [batch, channels, height, width]`, outputs);
  }
  const outChannels = dim(output.shape[1]);
  const inChannels = dim(sample.shape[1]);
  if (outChannels !== undefined && inChannels !== undefined && outChannels !== inChannels) {
    throw misfit(file, `an output with the ${inChannels} channels of \`sample\` (a noise prediction)`, output);
  }
  return { session, sample, timestep, encoderHiddenStates, timestepCond, output };
}

/**
 * safety_checker/model.onnx with its CLIP preprocessing, or undefined when the folder has none (a
 * `safety_checker/` holding only a config, as some exports leave it, counts as none, with one log line).
 */
async function openSafetyChecker(
  dir: string,
  open: (part: string) => Promise<{ session: ort.InferenceSession; file: string }>,
  log: (line: string) => void,
): Promise<SafetyCheckerPart | undefined> {
  if (!existsSync(join(dir, 'safety_checker', 'model.onnx'))) {
    if (existsSync(join(dir, 'safety_checker'))) log(`imagine: ${join(dir, 'safety_checker')} has no model.onnx; pictures are not checked`);
    return undefined;
  }
  const configPath = join(dir, 'feature_extractor', 'preprocessor_config.json');
  if (!existsSync(configPath)) {
    throw new ModelLoadError(`${configPath}: expected the safety checker's CLIP preprocessing config beside safety_checker/model.onnx`);
  }
  let preprocessing: ClipPreprocessing;
  try {
    preprocessing = readClipPreprocessing(readJson(configPath));
  } catch (error) {
    if (error instanceof ModelLoadError) throw error;
    throw new ModelLoadError(`${configPath}: ${(error as Error).message}`);
  }
  const { session, file } = await open('safety_checker');
  const inputs = specsOf(session, 'input');
  const outputs = specsOf(session, 'output');
  const clipInput = inputs.find((s) => s.name === 'clip_input');
  if (!clipInput || !FLOAT_TYPES.includes(clipInput.type) || clipInput.shape.length !== 4 || (dim(clipInput.shape[1]) ?? 3) !== 3) {
    throw misfit(file, 'an input `clip_input` of float32 or float16 [batch, 3, height, width]', clipInput ?? inputs);
  }
  const images = inputs.find((s) => s.name === 'images');
  if (!images || !FLOAT_TYPES.includes(images.type) || images.shape.length !== 4 || (dim(images.shape[3]) ?? 3) !== 3) {
    throw misfit(file, 'an input `images` of float32 or float16 [batch, height, width, 3]', images ?? inputs);
  }
  const hasNsfwConcepts = outputs.find((s) => s.name === 'has_nsfw_concepts');
  if (!hasNsfwConcepts || hasNsfwConcepts.type !== 'bool') {
    throw misfit(file, 'an output `has_nsfw_concepts` of bool [batch]', hasNsfwConcepts ?? outputs);
  }
  // A fixed CLIP size must be what the preprocessing makes (a square crop, as every CLIP config has).
  const [fixedH, fixedW] = [dim(clipInput.shape[2]), dim(clipInput.shape[3])];
  const crop = preprocessing.crop;
  if (crop && ((fixedH !== undefined && fixedH !== crop.height) || (fixedW !== undefined && fixedW !== crop.width))) {
    throw new ModelLoadError(`${configPath}: expected a crop of ${fixedH ?? crop.height}×${fixedW ?? crop.width} for \`clip_input\` of ${file}, got ${crop.height}×${crop.width}`);
  }
  return { session, file, clipInput, images, hasNsfwConcepts, preprocessing };
}

function checkVaeDecoder(session: ort.InferenceSession, file: string): VaeDecoderPart {
  const inputs = specsOf(session, 'input');
  const outputs = specsOf(session, 'output');
  const latentSample = inputs.find((s) => s.name === 'latent_sample') ?? (inputs.length === 1 ? inputs[0] : undefined);
  if (!latentSample || !FLOAT_TYPES.includes(latentSample.type) || latentSample.shape.length !== 4) {
    throw misfit(file, 'an input `latent_sample` of float32 or float16 [batch, channels, height, width]', latentSample ?? inputs);
  }
  const sample = outputs.find((s) => s.name === 'sample') ?? outputs[0];
  if (!sample || !FLOAT_TYPES.includes(sample.type) || sample.shape.length !== 4 || (dim(sample.shape[1]) ?? 3) !== 3) {
    throw misfit(file, 'an output `sample` of float32 or float16 [batch, 3, height, width]', outputs);
  }
  return { session, latentSample, sample };
}

function checkVaeEncoder(session: ort.InferenceSession, file: string): VaeEncoderPart {
  const inputs = specsOf(session, 'input');
  const outputs = specsOf(session, 'output');
  const sample = inputs.find((s) => s.name === 'sample') ?? (inputs.length === 1 ? inputs[0] : undefined);
  if (!sample || !FLOAT_TYPES.includes(sample.type) || sample.shape.length !== 4 || (dim(sample.shape[1]) ?? 3) !== 3) {
    throw misfit(file, 'an input `sample` of float32 or float16 [batch, 3, height, width]', sample ?? inputs);
  }
  const latentSample = outputs.find((s) => s.name === 'latent_sample');
  const latent = latentSample ?? outputs.find((s) => s.name === 'latent_parameters');
  if (!latent || !FLOAT_TYPES.includes(latent.type) || latent.shape.length !== 4) {
    throw misfit(file, 'an output `latent_sample` or `latent_parameters` of float32 or float16 [batch, channels, height, width]', latent ?? outputs);
  }
  return { session, file, sample, latent, latentKind: latentSample ? 'sample' : 'parameters' };
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

function dim(value: number | string | undefined): number | undefined {
  return typeof value === 'number' && value > 0 ? value : undefined;
}

function numberOr(value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}

function readJson(path: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not a JSON object');
    return value as Record<string, unknown>;
  } catch (error) {
    throw new ModelLoadError(`${path}: expected a JSON object: ${(error as Error).message}`);
  }
}
