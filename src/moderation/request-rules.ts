/**
 * A guild's rules applied to one picture request: its step default and maximum, its banned words (in the prompt and
 * the member's negative prompt), and its default negative prompt, over the model's size. /imagine and 🔁 both go
 * through here, so a reroll is checked against today's rules exactly as a new request is.
 */
import { Identifiers, UserError } from '../errors.js';
import { checkInputs, unknownModel } from '../diffusion/check-inputs.js';
import type { EngineModelListing, GenerateParams, ModelDefaultsInfo, ModelInfo } from '../diffusion/types.js';
import { buildGenerateParams, randomSeed, withRecordedNoise, type ImagineInput } from '../jobs/generate-params.js';
import type { GuildSettings } from '../store/settings.js';
import { findBannedWord } from './banned-words.js';

export interface RequestContext {
  /**
   * The chosen model's facts (native size, whether it takes other sizes); undefined when no worker has loaded it
   * yet: then only its native size (aspect square) can be asked for, and the engine fills it in.
   */
  model: ModelInfo | undefined;
  /** The chosen model's name, for `params.model`; omitted: the engine's default model. */
  modelName?: string;
  /** The chosen model's own defaults (imagine.json, or inferred): they win over the server's when the member gives none. */
  modelDefaults?: ModelDefaultsInfo;
  /** Guidance when the request gives none. */
  guidanceDefault: number;
  /** Draws a seed when the request gives none. Default: a random uint32. */
  randomSeed?: () => number;
}

/** What request rules need to know of an installed model (the engine's `models()` listing). */
export type ModelChoice = Pick<EngineModelListing, 'name' | 'isDefault' | 'kind' | 'defaults' | 'info' | 'safetyChecker'>;

/**
 * The model a request uses: the member's choice, else the channel's default, else the server's, else the bot's
 * default model; refused when it is not installed or the server denies it.
 * @throws UserError ModelUnavailable (not installed), NotAllowed (denied here).
 */
export function chooseModel(requested: string | null | undefined, settings: GuildSettings, channelId: string, models: readonly ModelChoice[]): ModelChoice {
  const name = requested ?? settings.channelModels[channelId] ?? (settings.modelDefault || undefined);
  const model = name === undefined ? models.find((m) => m.isDefault) : models.find((m) => m.name === name);
  if (!model) throw unknownModel(String(name), models.map((m) => m.name));
  if (settings.modelsDenied.includes(model.name)) {
    throw new UserError(Identifiers.NotAllowed, `This server does not allow the model \`${model.name}\`.`);
  }
  return model;
}

/** Autocomplete answers for a model option: the installed models this server allows whose name contains `typed`. */
export function modelSuggestions(typed: string, settings: GuildSettings, models: readonly ModelChoice[]): { name: string; value: string }[] {
  const needle = typed.trim().toLowerCase();
  return models
    .filter((m) => !settings.modelsDenied.includes(m.name) && m.name.toLowerCase().includes(needle))
    .slice(0, 25) // Discord's most choices per answer
    .map((m) => ({ name: `${m.name} (${m.kind ?? 'model'}${m.isDefault ? ', default' : ''})`.slice(0, 100), value: m.name }));
}

/** What to queue: the parameters, and the server's default negative prompt they include (for the job's record). */
export interface GuildRequest {
  params: GenerateParams;
  /** Absent when the server has none. */
  guildNegative?: string;
}

/**
 * The negative prompt the engine gets: the server's default first, then the member's own. First, because the
 * text encoder reads a limited number of tokens (77 for SD) and a long negative of the member's must not push the
 * server's out.
 */
export function combineNegative(guildNegative: string | undefined, memberNegative: string | undefined): string | undefined {
  const parts = [guildNegative, memberNegative].filter((part): part is string => part !== undefined && part.length > 0);
  return parts.length === 0 ? undefined : parts.join(', ');
}

/** The member's own part of a combined negative prompt (the inverse of {@link combineNegative}). */
export function memberNegativeOf(negativePrompt: string | undefined, guildNegative: string | undefined): string | undefined {
  if (negativePrompt === undefined || !guildNegative) return negativePrompt;
  if (negativePrompt === guildNegative) return undefined;
  return negativePrompt.startsWith(`${guildNegative}, `) ? negativePrompt.slice(guildNegative.length + 2) : negativePrompt;
}

/**
 * Checks a request against the guild's settings and returns what to queue. Banned words are looked for in the
 * member's text only: a server's default negative may well name what it bans ("nude" is banned, and a negative).
 * @throws UserError for the first rule the request breaks (see buildGenerateParams).
 */
export function paramsUnderGuildRules(input: ImagineInput, settings: GuildSettings, context: RequestContext): GuildRequest {
  const own = context.modelDefaults ?? {};
  const stepsMax = Math.min(settings.stepsMax, own.stepsMax ?? Infinity);
  const sizeUnknown = context.model === undefined;
  if (sizeUnknown && input.aspect !== null && input.aspect !== undefined && input.aspect !== 'square') {
    throw new UserError(
      Identifiers.InvalidInput,
      `The model \`${context.modelName ?? 'default'}\` has not made a picture yet, so its sizes are not known: leave \`aspect\` at square this time.`,
    );
  }
  const params = buildGenerateParams(input, {
    stepsDefault: Math.min(own.steps ?? settings.stepsDefault, stepsMax),
    stepsMax,
    countDefault: settings.countDefault,
    countMax: settings.countMax,
    guidanceDefault: own.guidance ?? context.guidanceDefault,
    // A stand-in size, removed below: the engine uses the model's native size.
    model: context.model ?? { width: 64, height: 64, latentFactor: 1 },
    findBannedWord: (text) => findBannedWord(text, settings.bannedWords),
    randomSeed: context.randomSeed ?? randomSeed,
  });
  if (sizeUnknown) {
    delete params.width;
    delete params.height;
  }
  if (params.scheduler === undefined && own.scheduler !== undefined) params.scheduler = own.scheduler;
  if (context.modelName !== undefined) params.model = context.modelName;
  const guildNegative = settings.negativeDefault.length > 0 ? settings.negativeDefault : undefined;
  const negativePrompt = combineNegative(guildNegative, params.negativePrompt);
  if (negativePrompt !== undefined) params.negativePrompt = negativePrompt;
  return guildNegative === undefined ? { params } : { params, guildNegative };
}

/**
 * The parameters for a 🔁 of `original`: same prompt, member's negative prompt, steps, guidance, scheduler, size and count,
 * a new seed, checked again under the guild's rules of today (never fixed silently), today's default negative
 * prompt in place of the one the original got.
 */
export function rerollParams(
  original: { params: GenerateParams; guildNegative?: string },
  settings: GuildSettings,
  context: Omit<RequestContext, 'guidanceDefault'>,
): GuildRequest {
  const { params: originalParams } = original;
  const request = paramsUnderGuildRules(
    {
      prompt: originalParams.prompt,
      negative: memberNegativeOf(originalParams.negativePrompt, original.guildNegative) ?? null,
      steps: originalParams.steps,
      guidance: originalParams.guidanceScale,
      scheduler: originalParams.scheduler ?? null,
      // The same number of pictures, checked against today's maximum like the rest.
      count: originalParams.count ?? 1,
      // An img2img job rolls again from the same picture (the caller passes it on) at the same strength.
      image: originalParams.strength !== undefined,
      strength: originalParams.strength ?? null,
    },
    settings,
    { ...context, guidanceDefault: originalParams.guidanceScale },
  );
  const { params } = request;
  // The original's generator, like its size: an old picture (no field) was made with xoshiro.
  params.noise = withRecordedNoise(originalParams).noise;
  if (originalParams.width !== undefined) params.width = originalParams.width;
  if (originalParams.height !== undefined) params.height = originalParams.height;
  return request;
}

/** Stands in for the picture's bytes when a request is checked before they are fetched (only their presence counts). */
const SOME_PICTURE = new Uint8Array([0]);

/**
 * Refuses, before anything is queued, an img2img request the engine would refuse when it runs: a latent model
 * without `vae_encoder/`, and what the engine's own `checkInputs` says of a start picture (the strength, too few
 * steps for it, the `lcm` scheduler). Nothing is checked while the model's facts are not known (not loaded yet).
 * @throws UserError InvalidInput.
 */
export function assertCanStartFromPicture(params: GenerateParams, model: ModelInfo | undefined): void {
  if (model === undefined) return;
  if (model.img2img === false && params.upscale !== true) {
    throw new UserError(
      Identifiers.InvalidInput,
      `The model \`${model.name}\` cannot start from a picture: it has no vae_encoder/ folder (img2img needs vae_encoder/model.onnx).`,
    );
  }
  checkInputs({ ...params, initImage: SOME_PICTURE }, model);
}

/**
 * How much of the schedule a U runs at twice the size, as the second pass of AUTOMATIC1111's "hires fix" does
 * (img2img of the enlarged picture at a low denoising strength); issue 13 asks for about 0.35.
 */
export const UPSCALE_STRENGTH = 0.35;
/**
 * Largest picture a U makes, in pixels: 1024 × 1024 (SD 1.x's 512 × 512, twice). The VAE no longer sets this
 * bound: above the native size it decodes and encodes in native-sized tiles (diffusion/vae-tiling.ts). The UNet
 * does, and it cannot be tiled the same way (its attention must see the whole latent, or the picture falls apart
 * into tiles): SD 1.x's first-level self-attention holds (h·w)² float32 scores per head, 1 GiB a head at 1024²
 * (128 × 128 latent cells) and 16 GiB a head at 2048², 16 times as much, for each of the batch's UNet rows. No model
 * here has been measured taking 2048², so the cap stays for every model until one is.
 */
export const UPSCALE_MAX_PIXELS = 1024 * 1024;
/** Longest side a U makes (the engine's own limit, check-inputs.ts LIMITS.maxSide). */
export const UPSCALE_MAX_SIDE = 2048;

/**
 * A U or V press on picture `picture` of `original`, as a job: `request` is the 🔁 of the original under today's
 * rules (rerollParams), narrowed to the action.
 * - V (variation): img2img from the picture with a new seed, the server's `variationStrength`, the same count.
 * - U (upscale): img2img from the picture at twice its width and height with {@link UPSCALE_STRENGTH}, one picture,
 *   the picture's own seed (the hires fix's second pass); with the model's own upscaler/ (`size.upscaler`), that
 *   network's enlargement by its scale instead, nothing denoised.
 * @param size the original's size in pixels (its params', else the model's native size).
 * @throws UserError when the model cannot: a fixed-size model (U is then a plain resize, not a job), a U over
 *   {@link UPSCALE_MAX_PIXELS}, or too few steps for the strength.
 */
export function pictureActionParams(
  action: 'upscale' | 'variation',
  original: { params: GenerateParams },
  picture: number,
  request: GuildRequest,
  settings: Pick<GuildSettings, 'variationStrength'>,
  size: { width: number; height: number; fixedSize?: boolean; upscaler?: { scale: number } },
): GuildRequest {
  const params: GenerateParams = { ...request.params };
  const label = `${action === 'upscale' ? 'U' : 'V'}${picture + 1}`;
  if (action === 'variation') {
    params.strength = settings.variationStrength;
  } else {
    const scale = size.upscaler?.scale ?? 2;
    const width = scale * size.width;
    const height = scale * size.height;
    if (size.fixedSize && !size.upscaler) {
      throw new UserError(Identifiers.InvalidInput, `This model makes only ${size.width}×${size.height} pictures, so it cannot make picture ${picture + 1} larger.`);
    }
    if (width > UPSCALE_MAX_SIDE || height > UPSCALE_MAX_SIDE || width * height > UPSCALE_MAX_PIXELS) {
      throw new UserError(
        Identifiers.InvalidInput,
        `Picture ${picture + 1} is ${size.width}×${size.height}; ${scale === 2 ? 'twice' : `${scale} times`} that (${width}×${height}) is more than the ${Math.sqrt(UPSCALE_MAX_PIXELS)}×${Math.sqrt(UPSCALE_MAX_PIXELS)} pixels an upscale may have.`,
      );
    }
    params.width = width;
    params.height = height;
    params.seed = (original.params.seed + picture) >>> 0;
    delete params.count;
    if (size.upscaler) {
      // The model's own network enlarges it: nothing is denoised, so no strength and no step to count.
      delete params.strength;
      params.upscale = true;
      return { ...request, params };
    }
    params.strength = UPSCALE_STRENGTH;
  }
  const runs = Math.floor(params.steps * params.strength!);
  if (runs < 1) {
    const needed = Math.ceil(1 / params.strength!);
    throw new UserError(
      Identifiers.InvalidInput,
      `${label} runs ${Math.round(params.strength! * 100)} % of the ${params.steps} steps these pictures were made with, which is less than one step; it needs pictures made with at least ${needed} steps.`,
    );
  }
  return { ...request, params };
}
