import { Identifiers, UserError } from '../errors.js';

/**
 * Banned words, matched case- and accent-insensitively on whole words: "Ässhole" matches a banned "asshole",
 * "class" does not match a banned "ass". A banned entry may be a phrase ("bad word"): its words must appear in a row.
 */

/** Longest banned entry, in characters, and most entries per guild. */
export const BANNED_WORD_MAX_LENGTH = 64;
export const BANNED_WORDS_MAX = 200;

// Letters and digits of any script; a word is a run of them. Marks are stripped before this runs.
const WORD = /[\p{L}\p{N}]+/gu;
// Invisible format characters (zero-width space/joiner, soft hyphen) would split or hide a word: drop them.
const FORMAT = /\p{Cf}/gu;
const MARKS = /\p{M}/gu;

/** NFKD, strip combining marks and invisible format characters, lowercase: "ＣＡＦÉ\u200B" → "cafe". */
export function normalizeText(text: string): string {
  return text.normalize('NFKD').replace(MARKS, '').replace(FORMAT, '').toLowerCase();
}

/** The normalized words of a text, in order. */
export function words(text: string): string[] {
  return normalizeText(text).match(WORD) ?? [];
}

/**
 * Normalize a moderator's entry for storage: its words joined by single spaces. Throws a UserError if it is
 * empty, too long, or has no letters or digits.
 */
export function normalizeBannedWord(input: string): string {
  if (input.length > BANNED_WORD_MAX_LENGTH) {
    throw new UserError(
      Identifiers.InvalidInput,
      `A banned word can be at most ${BANNED_WORD_MAX_LENGTH} characters, got ${input.length}.`,
    );
  }
  const parts = words(input);
  if (parts.length === 0) {
    throw new UserError(Identifiers.InvalidInput, `Expected a banned word with letters or digits, got \`${input}\`.`);
  }
  return parts.join(' ');
}

/** A compiled list: single words in a set, phrases as word arrays. Build once per settings read. */
export class BannedWordMatcher {
  private readonly single = new Set<string>();
  private readonly phrases: string[][] = [];

  constructor(bannedWords: readonly string[]) {
    for (const entry of bannedWords) {
      const parts = words(entry);
      if (parts.length === 1) this.single.add(parts[0]);
      else if (parts.length > 1) this.phrases.push(parts);
    }
  }

  /** The first banned entry found in `text` (normalized form), or undefined. */
  find(text: string): string | undefined {
    if (this.single.size === 0 && this.phrases.length === 0) return undefined;
    const tokens = words(text);
    for (let i = 0; i < tokens.length; i++) {
      if (this.single.has(tokens[i])) return tokens[i];
      for (const phrase of this.phrases) {
        if (phrase.every((part, k) => tokens[i + k] === part)) return phrase.join(' ');
      }
    }
    return undefined;
  }
}

/** The first banned entry found in `text`, or undefined. */
export function findBannedWord(text: string, bannedWords: readonly string[]): string | undefined {
  return new BannedWordMatcher(bannedWords).find(text);
}

/**
 * Throw UserError `BannedWord` if the prompt or negative prompt contains a banned entry. Nothing is queued;
 * the message is meant to be sent ephemerally (it names the word so the member can rephrase).
 */
export function assertNoBannedWords(
  texts: { prompt: string; negativePrompt?: string },
  bannedWords: readonly string[],
): void {
  const matcher = new BannedWordMatcher(bannedWords);
  for (const [field, text] of [
    ['prompt', texts.prompt],
    ['negative prompt', texts.negativePrompt],
  ] as const) {
    if (text === undefined) continue;
    const found = matcher.find(text);
    if (found !== undefined) {
      throw new UserError(
        Identifiers.BannedWord,
        `Your ${field} contains a word this server does not allow (\`${found}\`). Nothing was queued.`,
        { word: found, field },
      );
    }
  }
}
