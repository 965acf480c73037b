/**
 * The server's safety rule over one picture: post it, post it behind a spoiler, or hold it back. Pure: the facts
 * come from the guild's settings, the channel's age restriction (recorded on the job when it was asked for) and the
 * model's safety checker (a flag per picture, or none when the model has no checker). Delivery asks this before
 * posting and /imagine and 🔁 ask it before queueing, so a rule is decided here only.
 *
 * | channel          | `strict`                  | `spoiler`                 | `off`                     |
 * |------------------|---------------------------|---------------------------|---------------------------|
 * | age-restricted   | posted                    | posted                    | posted                    |
 * | other, flagged   | held back                 | spoiler + warning         | held back                 |
 * | other, unchecked | refused if refuseUnchecked | posted                   | posted                    |
 *
 * Age-restricted channels are where Discord allows adult content, so nothing is filtered there. `off` is not "no
 * filter": outside age-restricted channels a flagged picture is still held back.
 */
import { Identifiers, UserError } from '../errors.js';
import type { SafetyMode } from '../store/settings.js';

/** Why a picture was held back: the checker flagged it, or the model has no checker and the server refuses those. */
export type BlockRule = 'flagged' | 'unchecked';

export type SafetyDecision = { action: 'post' } | { action: 'spoiler' } | { action: 'block'; rule: BlockRule };

export interface SafetyFacts {
  mode: SafetyMode;
  /** The guild's `refuseUnchecked` (honoured in `strict` mode). */
  refuseUnchecked: boolean;
  /** The channel's (a thread: its parent's) age restriction; unknown counts as not restricted. */
  channelNsfw: boolean | undefined;
  /** The checker's flags for the pictures of the message; undefined when the model has no checker. */
  flagged: readonly boolean[] | undefined;
}

/** What to do with the pictures of one message (one flagged picture decides for the message). */
export function safetyDecision(facts: SafetyFacts): SafetyDecision {
  if (facts.channelNsfw === true) return { action: 'post' };
  if (facts.flagged === undefined) {
    return facts.mode === 'strict' && facts.refuseUnchecked ? { action: 'block', rule: 'unchecked' } : { action: 'post' };
  }
  if (!facts.flagged.some(Boolean)) return { action: 'post' };
  return facts.mode === 'spoiler' ? { action: 'spoiler' } : { action: 'block', rule: 'flagged' };
}

/**
 * Before anything is queued: a request this server would hold back whatever the picture (the model has no checker
 * and the server refuses unchecked pictures outside age-restricted channels) is refused now, with a UserError.
 */
export function assertRequestAllowed(facts: Omit<SafetyFacts, 'flagged'> & { modelChecked: boolean }): void {
  const decision = safetyDecision({ ...facts, flagged: facts.modelChecked ? [false] : undefined });
  if (decision.action === 'block') {
    throw new UserError(Identifiers.SafetyBlocked, `${capitalise(blockReason(decision.rule))}, so nothing was queued. Ask in an age-restricted channel.`, {
      rule: decision.rule,
    });
  }
}

/**
 * Whether live previews of a job may be shown: they are the picture before the checker has seen it, so only where
 * its final picture is posted unfiltered anyway (an age-restricted channel, or a model without a checker).
 */
export function previewsAllowed(facts: { channelNsfw: boolean | undefined; modelChecked: boolean }): boolean {
  return facts.channelNsfw === true || !facts.modelChecked;
}

/** The rule in words, for the member told and the moderators' log. */
export function blockReason(rule: BlockRule): string {
  return rule === 'flagged'
    ? 'the model’s safety checker flagged this picture, and this server posts flagged pictures only in age-restricted channels'
    : 'this server allows only pictures checked by a safety checker outside age-restricted channels, and this model has no checker';
}

/** One line for a member whose picture was held back (sent to them alone where Discord allows); `reason` from {@link blockReason}. */
export function blockedNotice(reason: string): string {
  return `Your picture was not posted: ${reason}. Try another prompt, or ask in an age-restricted channel.`;
}

/** The warning above a spoilered picture. */
export const SPOILER_WARNING = '⚠️ The model’s safety checker flagged this picture; it is hidden behind a spoiler. Open it only if you want to see it.';

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
