import { Identifiers, UserError } from '../errors.js';
import { COUNT_HARD_CAP, SAFETY_MODES, type GuildSettings, type RerollWho, type SafetyMode, type SettingsStore, type SettingsUpdate } from '../store/settings.js';
import { BANNED_WORDS_MAX, normalizeBannedWord } from './banned-words.js';
import { assertCanManage, type MemberAuthority } from './permissions.js';

/** The ranges a guild's values must fit. `hardStepsCap` is the owner's (.env). */
export interface SettingsLimits {
  hardStepsCap: number;
  /** Largest per-member waiting cap a guild may set. Default 20. */
  perMemberCapMax?: number;
  /** Most moderator roles per guild. Default 25. */
  moderatorRolesMax?: number;
  /** The installed models, by name: a model setting must name one of them. Omitted: not checked. */
  models?: readonly string[];
}

/** One change a moderator asks for (one /settings subcommand). */
export type SettingsChange =
  | { kind: 'steps'; default?: number; max?: number }
  /** Pictures per /imagine: when the member gives none, and the most they may ask for (≤ COUNT_HARD_CAP). */
  | { kind: 'count'; default?: number; max?: number }
  | { kind: 'limits'; perMember: number }
  | { kind: 'banned-words'; action: 'add' | 'remove'; words: readonly string[] }
  | { kind: 'reroll'; who: RerollWho }
  /** A V button's img2img strength, VARIATION_STRENGTH_MIN..1. */
  | { kind: 'variation'; strength: number }
  | { kind: 'moderator-roles'; action: 'add' | 'remove'; roleId: string }
  | { kind: 'safety'; mode?: SafetyMode; refuseUnchecked?: boolean }
  /** Absent or empty `text` clears the default. */
  | { kind: 'negative'; text?: string }
  /** The server's (or with `channelId`, a channel's) default model; absent or empty `name` clears it. */
  | { kind: 'model-default'; name?: string; channelId?: string }
  /** `deny` stops members using a model; `allow` lifts that. */
  | { kind: 'model-access'; action: 'allow' | 'deny'; name: string };

/** Smallest V strength a server may set: below it a variation of a 20-step picture runs no step at all. */
export const VARIATION_STRENGTH_MIN = 0.05;

/** Longest default negative prompt a server may set (a member's own may add up to PROMPT_MAX_LENGTH). */
export const NEGATIVE_DEFAULT_MAX = 500;

function invalid(message: string, context: Record<string, unknown> = {}): UserError {
  return new UserError(Identifiers.InvalidInput, `${message} Nothing was changed.`, context);
}

function checkInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw invalid(`Expected \`${name}\` to be an integer from ${min} to ${max}, got \`${value}\`.`, { min, max });
  }
}

/**
 * Apply a change to a copy of `current` and validate the result (1 ≤ default ≤ max ≤ hard cap, per-member
 * 1..20, ...). Throws a UserError naming the allowed range; never fixes a value silently.
 */
export function applySettingsChange(
  current: GuildSettings,
  change: SettingsChange,
  limits: SettingsLimits,
): GuildSettings {
  const next = structuredClone(current);
  switch (change.kind) {
    case 'steps': {
      if (change.default === undefined && change.max === undefined) {
        throw invalid('Give `default`, `max` or both.');
      }
      if (change.max !== undefined) checkInteger('max', change.max, 1, limits.hardStepsCap);
      const max = change.max ?? current.stepsMax;
      if (change.default !== undefined) checkInteger('default', change.default, 1, max);
      const stepsDefault = change.default ?? current.stepsDefault;
      if (stepsDefault > max) {
        throw invalid(
          `The default steps (${stepsDefault}) cannot be above the maximum (${max}): set both, e.g. \`default:${max} max:${max}\`.`,
        );
      }
      next.stepsDefault = stepsDefault;
      next.stepsMax = max;
      return next;
    }
    case 'count': {
      if (change.default === undefined && change.max === undefined) {
        throw invalid('Give `default`, `max` or both.');
      }
      if (change.max !== undefined) checkInteger('max', change.max, 1, COUNT_HARD_CAP);
      const max = change.max ?? current.countMax;
      if (change.default !== undefined) checkInteger('default', change.default, 1, max);
      const countDefault = change.default ?? current.countDefault;
      if (countDefault > max) {
        throw invalid(
          `The default count (${countDefault}) cannot be above the maximum (${max}): set both, e.g. \`default:${max} max:${max}\`.`,
        );
      }
      next.countDefault = countDefault;
      next.countMax = max;
      return next;
    }
    case 'limits': {
      checkInteger('per-member', change.perMember, 1, limits.perMemberCapMax ?? 20);
      next.perMemberCap = change.perMember;
      return next;
    }
    case 'banned-words': {
      if (change.words.length === 0) throw invalid('Give at least one word.');
      const normalized = change.words.map((word) => {
        try {
          return normalizeBannedWord(word);
        } catch (error) {
          throw error instanceof UserError ? invalid(error.message) : error;
        }
      });
      if (change.action === 'add') {
        const merged = [...new Set([...current.bannedWords, ...normalized])];
        if (merged.length > BANNED_WORDS_MAX) {
          throw invalid(`A server can ban at most ${BANNED_WORDS_MAX} words (this would make ${merged.length}).`);
        }
        next.bannedWords = merged.sort();
      } else {
        // Entries stored by an older matcher may be spelled differently from today's skeleton: compare skeletons.
        const skeletonOf = (word: string) => {
          try {
            return normalizeBannedWord(word);
          } catch {
            return word;
          }
        };
        const stored = new Set(current.bannedWords.map(skeletonOf));
        const missing = normalized.filter((word) => !stored.has(word));
        if (missing.length > 0) {
          throw invalid(`Not on the banned list: ${missing.map((word) => `\`${word}\``).join(', ')}.`);
        }
        next.bannedWords = current.bannedWords.filter((word) => !normalized.includes(skeletonOf(word)));
      }
      return next;
    }
    case 'reroll': {
      if (change.who !== 'requester' && change.who !== 'anyone') {
        throw invalid(`Expected \`who\` to be \`requester\` or \`anyone\`, got \`${String(change.who)}\`.`);
      }
      next.rerollWho = change.who;
      return next;
    }
    case 'variation': {
      const { strength } = change;
      if (typeof strength !== 'number' || !Number.isFinite(strength) || strength < VARIATION_STRENGTH_MIN || strength > 1) {
        throw invalid(`Expected \`strength\` to be a number from ${VARIATION_STRENGTH_MIN} to 1, got \`${String(strength)}\`.`);
      }
      next.variationStrength = strength;
      return next;
    }
    case 'moderator-roles': {
      if (!/^\d{17,20}$/.test(change.roleId)) throw invalid(`Expected a role id, got \`${change.roleId}\`.`);
      if (change.action === 'add') {
        if (current.moderatorRoleIds.includes(change.roleId)) return next;
        const max = limits.moderatorRolesMax ?? 25;
        if (current.moderatorRoleIds.length >= max) throw invalid(`A server can have at most ${max} moderator roles.`);
        next.moderatorRoleIds = [...current.moderatorRoleIds, change.roleId];
      } else {
        next.moderatorRoleIds = current.moderatorRoleIds.filter((role) => role !== change.roleId);
      }
      return next;
    }
    case 'safety': {
      if (change.mode === undefined && change.refuseUnchecked === undefined) throw invalid('Give `mode`, `unchecked` or both.');
      if (change.mode !== undefined) {
        if (!(SAFETY_MODES as readonly string[]).includes(change.mode)) {
          throw invalid(`Expected \`mode\` to be one of ${SAFETY_MODES.join(', ')}, got \`${String(change.mode)}\`.`);
        }
        next.safetyMode = change.mode;
      }
      if (change.refuseUnchecked !== undefined) next.refuseUnchecked = change.refuseUnchecked;
      return next;
    }
    case 'negative': {
      const text = (change.text ?? '').trim();
      if (text.length > NEGATIVE_DEFAULT_MAX) {
        throw invalid(`Expected the default negative prompt to be at most ${NEGATIVE_DEFAULT_MAX} characters, got ${text.length}.`);
      }
      // One line of plain text, as /imagine requires of a member's prompt: it is echoed in every picture's embed.
      if (/[\p{Cc}\p{Zl}\p{Zp}]/u.test(text)) throw invalid('Expected the default negative prompt to be one line of plain text.');
      next.negativeDefault = text;
      return next;
    }
    case 'model-default': {
      const name = (change.name ?? '').trim();
      if (name !== '') {
        checkModelName(name, limits);
        if (current.modelsDenied.includes(name)) throw invalid(`This server denies the model \`${name}\`: allow it first.`);
      }
      if (change.channelId !== undefined) {
        if (!/^\d{17,20}$/.test(change.channelId)) throw invalid(`Expected a channel id, got \`${change.channelId}\`.`);
        const { [change.channelId]: _old, ...others } = current.channelModels;
        next.channelModels = name === '' ? others : { ...others, [change.channelId]: name };
      } else {
        next.modelDefault = name;
      }
      return next;
    }
    case 'model-access': {
      const name = change.name.trim();
      if (change.action === 'allow') {
        next.modelsDenied = current.modelsDenied.filter((denied) => denied !== name);
        return next;
      }
      checkModelName(name, limits);
      const defaults = [current.modelDefault, ...Object.values(current.channelModels)];
      if (defaults.includes(name)) throw invalid(`\`${name}\` is a default model here: choose another default first.`);
      if (!current.modelsDenied.includes(name)) next.modelsDenied = [...current.modelsDenied, name];
      return next;
    }
    default: {
      const unknown: never = change;
      throw invalid(`Unknown settings change \`${JSON.stringify(unknown)}\`.`);
    }
  }
}

function checkModelName(name: string, limits: SettingsLimits): void {
  if (limits.models !== undefined && !limits.models.includes(name)) {
    throw invalid(`There is no model \`${name.slice(0, 80)}\` (installed: ${limits.models.join(', ')}).`);
  }
}

/**
 * What /settings calls: check the member may manage settings (from their own permissions and roles), then
 * validate and write the change in one transaction with its audit entries. Throws UserError `NotAllowed` or
 * `InvalidInput`; on a throw nothing is written.
 */
export function changeSettings(
  store: SettingsStore,
  guildId: string,
  member: MemberAuthority,
  change: SettingsChange,
  limits: SettingsLimits,
): SettingsUpdate {
  return store.update(guildId, member.userId, (current) => {
    // Inside the transaction, so a moderator role removed a moment ago is already gone.
    assertCanManage(member, current);
    return applySettingsChange(current, change, limits);
  });
}
