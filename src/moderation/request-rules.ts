/**
 * A guild's rules applied to one picture request: its step default and maximum and its banned words, over the
 * model's size. /imagine and 🔁 both go through here, so a reroll is checked against today's rules exactly as a
 * new request is.
 */
import type { GenerateParams, ModelInfo } from '../diffusion/types.js';
import { buildGenerateParams, randomSeed, type ImagineInput } from '../jobs/generate-params.js';
import type { GuildSettings } from '../store/settings.js';
import { findBannedWord } from './banned-words.js';

export interface RequestContext {
  /** The loaded model (native size, whether it takes other sizes). */
  model: ModelInfo;
  /** Guidance when the request gives none. */
  guidanceDefault: number;
  /** Draws a seed when the request gives none. Default: a random uint32. */
  randomSeed?: () => number;
}

/**
 * Checks a request against the guild's settings and returns what to queue.
 * @throws UserError for the first rule the request breaks (see buildGenerateParams).
 */
export function paramsUnderGuildRules(input: ImagineInput, settings: GuildSettings, context: RequestContext): GenerateParams {
  return buildGenerateParams(input, {
    stepsDefault: settings.stepsDefault,
    stepsMax: settings.stepsMax,
    guidanceDefault: context.guidanceDefault,
    model: context.model,
    findBannedWord: (text) => findBannedWord(text, settings.bannedWords),
    randomSeed: context.randomSeed ?? randomSeed,
  });
}

/**
 * The parameters for a 🔁 of `original`: same prompt, steps, guidance, scheduler and size, a new seed, checked
 * again under the guild's rules of today (never fixed silently).
 */
export function rerollParams(original: GenerateParams, settings: GuildSettings, context: Omit<RequestContext, 'guidanceDefault'>): GenerateParams {
  const params = paramsUnderGuildRules(
    {
      prompt: original.prompt,
      negative: original.negativePrompt ?? null,
      steps: original.steps,
      guidance: original.guidanceScale,
      scheduler: original.scheduler ?? null,
    },
    settings,
    { ...context, guidanceDefault: original.guidanceScale },
  );
  if (original.width !== undefined) params.width = original.width;
  if (original.height !== undefined) params.height = original.height;
  if (original.count !== undefined) params.count = original.count;
  return params;
}
