/**
 * The parts of a model folder and the contract each must fit: names, dtypes and shapes read from the sessions'
 * metadata, checked before any work, with one error naming the file and what was expected (model.ts loads the
 * folder and calls these).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { ModelLoadError } from './model-error.js';
import { readClipPreprocessing, type ClipPreprocessing } from './safety-checker.js';

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
  /** SDXL's pooled text embedding (`addition_embed_type: text_time`), present together with `timeIds`. */
  textEmbeds?: TensorSpec;
  /** SDXL's size conditioning: original size, crop top-left and target size, six numbers per row. */
  timeIds?: TensorSpec;
  output: TensorSpec;
}

/**
 * A text encoder of an SDXL model, exported as Optimum exports them (output_hidden_states): `hidden_states.0` (the
 * embeddings) to `hidden_states.N` (after the last layer), and for text_encoder_2 (CLIPTextModelWithProjection) the
 * pooled, projected `text_embeds`.
 */
export interface SdxlTextEncoderPart extends TextEncoderPart {
  /** `hidden_states.{N-1}`: diffusers' `hidden_states[-2]`, the penultimate layer's output, before the final LayerNorm. */
  penultimate: TensorSpec;
  /** text_encoder_2's `text_embeds` [batch, projection]; absent for text_encoder/. */
  textEmbeds?: TensorSpec;
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

export function specsOf(session: ort.InferenceSession, which: 'input' | 'output'): TensorSpec[] {
  const metadata = which === 'input' ? session.inputMetadata : session.outputMetadata;
  return metadata.map((m) => {
    if (!m.isTensor) return { name: m.name, type: 'string' as ort.Tensor.Type, shape: [] };
    return { name: m.name, type: m.type, shape: m.shape };
  });
}

export function describe(spec: TensorSpec | undefined): string {
  if (!spec) return 'nothing';
  return `\`${spec.name}\` ${spec.type} [${spec.shape.join(', ')}]`;
}

export function misfit(file: string, expected: string, got: TensorSpec | TensorSpec[] | undefined): ModelLoadError {
  const gotText = Array.isArray(got) ? got.map(describe).join(', ') || 'nothing' : describe(got);
  return new ModelLoadError(`${file}: expected ${expected}, got ${gotText}`);
}

export const FLOAT_TYPES: readonly string[] = ['float32', 'float16'];

export function checkTextEncoder(session: ort.InferenceSession, file: string): TextEncoderPart {
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

export function checkUnet(session: ort.InferenceSession, file: string): UnetPart {
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
  const { textEmbeds, timeIds } = checkAddedConditioning(file, inputs, sample.type);
  const known = new Set(['sample', 'timestep', 'encoder_hidden_states', 'timestep_cond', 'text_embeds', 'time_ids']);
  const unknown = inputs.filter((s) => !known.has(s.name));
  if (unknown.length > 0) {
    throw misfit(file, 'inputs `sample`, `timestep`, `encoder_hidden_states`, optionally `timestep_cond` (LCM) or `text_embeds` and `time_ids` (SDXL), and no others', unknown);
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
  return { session, sample, timestep, encoderHiddenStates, timestepCond, textEmbeds, timeIds, output };
}

/** Values per row of SDXL's `time_ids`: original size (h, w), crop top-left (y, x), target size (h, w). */
export const SDXL_TIME_IDS = 6;

/**
 * SDXL's extra UNet inputs (diffusers' `added_cond_kwargs` for `addition_embed_type: text_time`, as Optimum's
 * UNetOnnxConfig names them): both or neither, in the sample's dtype. Five time ids are the refiner's (its
 * aesthetic score in place of the target size), which imagine does not run.
 */
function checkAddedConditioning(file: string, inputs: TensorSpec[], type: ort.Tensor.Type): { textEmbeds?: TensorSpec; timeIds?: TensorSpec } {
  const textEmbeds = inputs.find((s) => s.name === 'text_embeds');
  const timeIds = inputs.find((s) => s.name === 'time_ids');
  if (!textEmbeds && !timeIds) return {};
  if (!textEmbeds || !timeIds) {
    throw misfit(file, 'both SDXL inputs `text_embeds` and `time_ids`, or neither', inputs.filter((s) => s === textEmbeds || s === timeIds));
  }
  if (textEmbeds.type !== type || textEmbeds.shape.length !== 2) throw misfit(file, `\`text_embeds\` of ${type} [batch, width]`, textEmbeds);
  if (timeIds.type !== type || timeIds.shape.length !== 2) throw misfit(file, `\`time_ids\` of ${type} [batch, ${SDXL_TIME_IDS}]`, timeIds);
  const perRow = dim(timeIds.shape[1]);
  if (perRow === SDXL_TIME_IDS - 1) {
    throw new ModelLoadError(
      `${file}: this is an SDXL refiner (\`time_ids\` of 5: original size, crop and an aesthetic score); imagine runs SDXL base models only, which take 6 (original size, crop, target size)`,
    );
  }
  if (perRow !== undefined && perRow !== SDXL_TIME_IDS) throw misfit(file, `\`time_ids\` of ${type} [batch, ${SDXL_TIME_IDS}]`, timeIds);
  return { textEmbeds, timeIds };
}

/**
 * The SDXL outputs of a text encoder already checked by {@link checkTextEncoder}: its hidden states (the
 * penultimate one is what SDXL's UNet reads) and, for text_encoder_2, `text_embeds`.
 */
export function checkSdxlTextEncoder(part: TextEncoderPart, file: string, pooled: boolean): SdxlTextEncoderPart {
  const outputs = specsOf(part.session, 'output');
  const layers = outputs
    .map((s) => ({ spec: s, index: /^hidden_states\.(\d+)$/.exec(s.name)?.[1] }))
    .filter((h): h is { spec: TensorSpec; index: string } => h.index !== undefined)
    .sort((a, b) => Number(a.index) - Number(b.index));
  // hidden_states.0 is the embeddings; the penultimate state needs at least two layers after it.
  const penultimate = layers.length >= 3 ? layers[layers.length - 2].spec : undefined;
  if (!penultimate || Number(layers[layers.length - 1].index) !== layers.length - 1) {
    throw misfit(file, 'outputs `hidden_states.0` … `hidden_states.N` (N ≥ 2), as Optimum exports SDXL text encoders (output_hidden_states)', outputs);
  }
  if (penultimate.shape.length !== 3 || !FLOAT_TYPES.includes(penultimate.type)) {
    throw misfit(file, `\`${penultimate.name}\` of float32 or float16 [batch, sequence, width]`, penultimate);
  }
  if (!pooled) return { ...part, penultimate };
  const textEmbeds = outputs.find((s) => s.name === 'text_embeds');
  if (!textEmbeds || textEmbeds.shape.length !== 2 || !FLOAT_TYPES.includes(textEmbeds.type)) {
    throw misfit(file, 'an output `text_embeds` of float32 or float16 [batch, projection] (CLIPTextModelWithProjection)', textEmbeds ?? outputs);
  }
  return { ...part, penultimate, textEmbeds };
}

/**
 * safety_checker/model.onnx with its CLIP preprocessing, or undefined when the folder has none (a
 * `safety_checker/` holding only a config, as some exports leave it, counts as none, with one log line).
 */
export async function openSafetyChecker(
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

export function checkVaeDecoder(session: ort.InferenceSession, file: string): VaeDecoderPart {
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

export function checkVaeEncoder(session: ort.InferenceSession, file: string): VaeEncoderPart {
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

export function dim(value: number | string | undefined): number | undefined {
  return typeof value === 'number' && value > 0 ? value : undefined;
}

export function readJson(path: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not a JSON object');
    return value as Record<string, unknown>;
  } catch (error) {
    throw new ModelLoadError(`${path}: expected a JSON object: ${(error as Error).message}`);
  }
}
