/**
 * /imagine's options, checked before anything is queued. Each problem becomes one UserError the member reads
 * ephemerally; nothing here fixes input silently (a guidance of 0 is a value, a missing one is not).
 */
import { Identifiers, UserError } from '../errors.js';
import { DEFAULT_NOISE, RECORDED_NOISE_BEFORE_FIELD, SCHEDULER_NAMES, type GenerateParams, type ModelInfo, type SchedulerName } from '../diffusion/types.js';
import { DEFAULT_STRENGTH } from '../diffusion/check-inputs.js';

/** Longest prompt or negative prompt, in characters (also the slash option's max_length). */
export const PROMPT_MAX_LENGTH = 1000;
/** Seeds are uint32 (see GenerateParams.seed). */
export const SEED_MAX = 0xffff_ffff;
/** Classifier-free guidance range offered to members; above ~20 images burn out on every model we ship. */
export const GUIDANCE_MIN = 0;
export const GUIDANCE_MAX = 30;

/** Aspect choices, static so the command definition never depends on the loaded model. */
export const ASPECTS = {
  square: { label: 'Square (1:1)', ratio: [1, 1] },
  landscape: { label: 'Landscape (3:2)', ratio: [3, 2] },
  portrait: { label: 'Portrait (2:3)', ratio: [2, 3] },
} as const;
export type Aspect = keyof typeof ASPECTS;

/** Raw option values as the interaction carries them (null or undefined when not given). */
export interface ImagineInput {
  prompt: string | null | undefined;
  negative?: string | null;
  steps?: number | null;
  seed?: number | null;
  guidance?: number | null;
  scheduler?: string | null;
  aspect?: string | null;
  /** Pictures in this request. */
  count?: number | null;
  /** img2img: whether the member attached a picture to start from (its bytes travel beside the params). */
  image?: boolean;
  /** img2img: how much of the schedule runs (0 < strength ≤ 1); only with `image`. Default 0.8 (diffusers'). */
  strength?: number | null;
}

/** What the guild and the model allow. */
export interface ImagineLimits {
  stepsDefault: number;
  stepsMax: number;
  /** Pictures when the member gives no count. Default 1. */
  countDefault?: number;
  /** Most pictures one request may make. Default 1. */
  countMax?: number;
  /** Default guidance when the member gives none. */
  guidanceDefault: number;
  model: Pick<ModelInfo, 'width' | 'height' | 'latentFactor' | 'fixedSize'>;
  /** Returns the banned word found in `text`, or undefined. */
  findBannedWord?: (text: string) => string | undefined;
  /** Draws a seed when the member gives none. */
  randomSeed: () => number;
}

// Control characters (Cc): NUL, BEL, ESC, DEL, C1... They mean nothing to a text encoder and can garble messages.
const CONTROL_CHARACTER = /\p{Cc}/u;
// U+2028 and U+2029 (Zl, Zp) break lines in Discord's client like a newline would: an echoed prompt could start
// a line of Markdown of its own.
const LINE_SEPARATOR = /[\p{Zl}\p{Zp}]/u;

function checkText(name: 'prompt' | 'negative', raw: string, limits: ImagineLimits): string {
  const text = raw.trim();
  if (raw.length > PROMPT_MAX_LENGTH) {
    throw new UserError(
      Identifiers.PromptTooLong,
      `Expected \`${name}\` to be at most ${PROMPT_MAX_LENGTH} characters, got ${raw.length}.`,
      { length: raw.length },
    );
  }
  const separator = LINE_SEPARATOR.exec(raw);
  if (separator) {
    const code = separator[0].codePointAt(0)!.toString(16).toUpperCase();
    throw new UserError(
      Identifiers.InvalidInput,
      `Expected \`${name}\` to be one line of plain text, got a line separator (U+${code}) in it.`,
    );
  }
  const control = CONTROL_CHARACTER.exec(raw);
  if (control) {
    const code = control[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    throw new UserError(
      Identifiers.InvalidInput,
      `Expected \`${name}\` to be plain text, got a control character (U+${code}) in it.`,
    );
  }
  const banned = limits.findBannedWord?.(text);
  if (banned !== undefined) {
    throw new UserError(
      Identifiers.BannedWord,
      `Your ${name === 'prompt' ? 'prompt' : 'negative prompt'} contains a word this server does not allow (“${banned}”).`,
      { word: banned },
    );
  }
  return text;
}

/** Longest piece of a member's value quoted back in an error. */
const SHOWN_MAX = 40;

/**
 * A member's value as an error may quote it: one line, no backticks (it sits in inline code), no lone
 * surrogates, at most SHOWN_MAX characters. Option values come from the client and can be anything.
 */
function shown(value: string): string {
  const safe = value
    .replace(/[\p{Cc}\p{Zl}\p{Zp}`]/gu, '\uFFFD')
    .replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
  const points = [...safe];
  return points.length > SHOWN_MAX ? `${points.slice(0, SHOWN_MAX - 1).join('')}…` : safe;
}

/** Pixel size for an aspect: the model's native area, sides rounded to what the model accepts. */
export function sizeForAspect(aspect: Aspect, model: ImagineLimits['model']): { width: number; height: number } {
  if (aspect === 'square') return { width: model.width, height: model.height };
  const multiple = 8 * model.latentFactor;
  const [rw, rh] = ASPECTS[aspect].ratio;
  const area = model.width * model.height;
  const round = (value: number) => Math.max(multiple, Math.round(value / multiple) * multiple);
  return { width: round(Math.sqrt((area * rw) / rh)), height: round(Math.sqrt((area * rh) / rw)) };
}

/**
 * Turns /imagine's options into GenerateParams, or throws the first problem as a UserError.
 * @throws UserError PromptEmpty, PromptTooLong, InvalidInput, BannedWord, StepsTooHigh, CountTooHigh.
 */
export function buildGenerateParams(input: ImagineInput, limits: ImagineLimits): GenerateParams {
  const rawPrompt = input.prompt ?? '';
  if (rawPrompt.trim().length === 0) {
    throw new UserError(
      Identifiers.PromptEmpty,
      'The prompt is empty: describe the picture, e.g. `/imagine prompt: a red circle on a white background`.',
    );
  }
  const prompt = checkText('prompt', rawPrompt, limits);
  const negativePrompt =
    input.negative === null || input.negative === undefined ? undefined : checkText('negative', input.negative, limits);

  const steps = input.steps ?? limits.stepsDefault;
  if (!Number.isInteger(steps) || steps < 1) {
    throw new UserError(
      Identifiers.InvalidInput,
      `Expected \`steps\` to be an integer from 1 to ${limits.stepsMax}, got \`${steps}\`.`,
    );
  }
  if (steps > limits.stepsMax) {
    throw new UserError(
      Identifiers.StepsTooHigh,
      `This server allows at most ${limits.stepsMax} steps; you asked for ${steps}. Try \`steps: ${limits.stepsMax}\` or fewer.`,
      { max: limits.stepsMax, steps },
    );
  }

  const seed = input.seed ?? limits.randomSeed();
  if (!Number.isInteger(seed) || seed < 0 || seed > SEED_MAX) {
    throw new UserError(
      Identifiers.InvalidInput,
      `Expected \`seed\` to be an integer from 0 to ${SEED_MAX}, got \`${seed}\`.`,
    );
  }

  const guidanceScale = input.guidance ?? limits.guidanceDefault;
  if (!Number.isFinite(guidanceScale) || guidanceScale < GUIDANCE_MIN || guidanceScale > GUIDANCE_MAX) {
    throw new UserError(
      Identifiers.InvalidInput,
      `Expected \`guidance\` to be a number from ${GUIDANCE_MIN} to ${GUIDANCE_MAX}, got \`${guidanceScale}\`.`,
    );
  }

  let scheduler: SchedulerName | undefined;
  if (input.scheduler !== null && input.scheduler !== undefined) {
    if (!(SCHEDULER_NAMES as readonly string[]).includes(input.scheduler)) {
      throw new UserError(
        Identifiers.InvalidInput,
        `Expected \`scheduler\` to be one of ${SCHEDULER_NAMES.join(', ')}, got \`${shown(input.scheduler)}\`.`,
      );
    }
    scheduler = input.scheduler as SchedulerName;
  }

  const aspect = input.aspect ?? 'square';
  if (!Object.hasOwn(ASPECTS, aspect)) {
    throw new UserError(
      Identifiers.InvalidInput,
      `Expected \`aspect\` to be one of ${Object.keys(ASPECTS).join(', ')}, got \`${shown(aspect)}\`.`,
    );
  }
  if (aspect !== 'square' && limits.model.fixedSize) {
    throw new UserError(
      Identifiers.InvalidInput,
      `This model makes only ${limits.model.width}×${limits.model.height} pictures: leave \`aspect\` at square.`,
    );
  }
  const { width, height } = sizeForAspect(aspect as Aspect, limits.model);

  const countMax = limits.countMax ?? 1;
  const count = input.count ?? limits.countDefault ?? 1;
  if (!Number.isInteger(count) || count < 1) {
    throw new UserError(Identifiers.InvalidInput, `Expected \`count\` to be an integer from 1 to ${countMax}, got \`${count}\`.`);
  }
  if (count > countMax) {
    throw new UserError(
      Identifiers.CountTooHigh,
      `This server allows at most ${countMax} picture${countMax === 1 ? '' : 's'} per request; you asked for ${count}. Try \`count: ${countMax}\` or fewer.`,
      { max: countMax, count },
    );
  }

  const strength = checkStrength(input, steps);
  // The noise is recorded, not left to the engine's default: a job makes the same picture after the default changes.
  const params: GenerateParams = { prompt, steps, seed, guidanceScale, width, height, noise: DEFAULT_NOISE };
  if (strength !== undefined) params.strength = strength;
  // One picture is the engine's default: the params of a single picture stay as they always were.
  if (count > 1) params.count = count;
  if (negativePrompt !== undefined && negativePrompt.length > 0) params.negativePrompt = negativePrompt;
  if (scheduler !== undefined) params.scheduler = scheduler;
  return params;
}

/**
 * A job's params as recorded: one journaled before `noise` existed was made with xoshiro, and keeps it, whatever
 * today's default (the job store reads every record through this).
 */
export function withRecordedNoise(params: GenerateParams): GenerateParams {
  return params.noise === undefined ? { ...params, noise: RECORDED_NOISE_BEFORE_FIELD } : params;
}

/** img2img's strength: only with a picture, 0 < strength ≤ 1, and at least one step left (floor(steps × strength)). */
function checkStrength(input: ImagineInput, steps: number): number | undefined {
  const given = input.strength ?? undefined;
  if (!input.image) {
    if (given !== undefined) throw new UserError(Identifiers.InvalidInput, '`strength` says how far to move from a picture: attach one with `image`, or leave `strength` out.');
    return undefined;
  }
  const strength = given ?? DEFAULT_STRENGTH;
  if (!Number.isFinite(strength) || strength <= 0 || strength > 1) {
    throw new UserError(Identifiers.InvalidInput, `Expected \`strength\` to be a number greater than 0 and at most 1, got \`${strength}\`.`);
  }
  if (Math.floor(steps * strength) < 1) {
    throw new UserError(
      Identifiers.InvalidInput,
      `With \`strength: ${strength}\` only ${Math.round(strength * 100)} % of the ${steps} steps run, less than one: ask for at least ${Math.ceil(1 / strength)} steps, or a larger strength.`,
    );
  }
  return strength;
}

/** A fresh uint32 seed. Seeds are not secrets; Math.random is fine for choosing one (never for sampling). */
export function randomSeed(): number {
  return Math.floor(Math.random() * (SEED_MAX + 1));
}
