import { Identifiers, UserError } from '../errors.js';
import { LEET, skeletonText, tokenize, type Glyph, type Token } from './skeleton.js';

/**
 * Banned words, matched on whole words of the text's skeleton (see skeleton.ts): case, accents, look-alike
 * letters from other scripts, leetspeak and invisible characters do not matter, so "Ä$$", "\u0430ss" (Cyrillic а),
 * "a\u200Bss" and "4ss" all match a banned "ass", and so do the plurals "asses" and "assholes" of "ass" and
 * "asshole". "class", "bass" and "Scunthorpe" do not: a match always starts and ends on word boundaries.
 *
 * Words may be glued back together, but only whole words, never the end of one to the start of the next
 * ("glass hole" is not "asshole"):
 * - pieces joined by "." "-" "_" "*" and the like: "a.s.s", "ass-hole", "as_s";
 * - single letters between spaces: "a s s", "N A Z I". Letters spelled out like this are one word, matched
 *   whole ("H E L L O" is not "hell"), except that a leading "a" or "i" may be the article or pronoun it looks
 *   like ("draw a n a z i" matches "nazi");
 * - words of three letters or more between spaces: "ass hole". Shorter ones are left apart, because everyday
 *   two-letter words would glue into entries ("an al" is not "anal", "as s" is not "ass").
 * A banned entry may be a phrase ("bad word"): its words must appear in a row ("bad word", "bad-word",
 * "b a d w o r d"), each of its word breaks on a break in the text ("the rapist" never matches "therapist").
 */

/** Longest banned entry, in characters, and most entries per guild. */
export const BANNED_WORD_MAX_LENGTH = 64;
export const BANNED_WORDS_MAX = 200;

/** NFKD, strip marks and invisible characters, fold look-alike letters to Latin, lowercase: "ＣＡＦÉ\u200B" → "cafe". */
export function normalizeText(text: string): string {
  return skeletonText(text);
}

/**
 * The skeleton words of an entry. A symbol inside a word is read as its letter ("a$$" → "ass"); digits stay
 * digits ("4chan", "1488") and match their letters when the text is compared. Words with no letter or digit go.
 */
function entryWords(input: string): string[] {
  const words: string[] = [];
  for (const token of tokenize(input)) {
    if (token.glyphs.every((glyph) => glyph.kind === 'symbol')) continue;
    words.push(token.glyphs.map((glyph) => (glyph.kind === 'symbol' ? glyph.alts[0] : glyph.char)).join(''));
  }
  return words;
}

/**
 * Normalize a moderator's entry for storage: its skeleton words joined by single spaces, so "\u0410ss" (Cyrillic
 * А) is stored as "ass" and "Ass-Hole" as "ass hole". Throws a UserError if it is empty, too long, or has no
 * letters or digits. Normalizing a stored entry again gives it back unchanged.
 */
export function normalizeBannedWord(input: string): string {
  if (input.length > BANNED_WORD_MAX_LENGTH) {
    throw new UserError(
      Identifiers.InvalidInput,
      `A banned word can be at most ${BANNED_WORD_MAX_LENGTH} characters, got ${input.length}.`,
    );
  }
  const parts = entryWords(input);
  if (parts.length === 0) {
    throw new UserError(Identifiers.InvalidInput, `Expected a banned word with letters or digits, got \`${input}\`.`);
  }
  return parts.join(' ');
}

interface CompiledEntry {
  /** The entry as given: what `find` returns. */
  entry: string;
  /** Its skeleton, one code point each, words run together. */
  chars: string[];
  /** Per character: whether it is in an all-digit word ("1488", "88"), which only ever matches itself. */
  numeric: boolean[];
  /** Where one word ends and the next starts, in `chars`; empty for a single word. */
  wordEnds: number[];
  wordCount: number;
  /** Whether its plural may take -es: the last word ends in s, x, z, ch, sh or o ("asses", "hoes"). */
  esPlural: boolean;
}

// Plural endings tried after an entry: none, -s, -es.
const PLURALS = ['', 's', 'es'] as const;
const ES_PLURAL = /(?:s|x|z|ch|sh|o)$/;
const NUMBER = /^\p{N}$/u;

/**
 * Whether a glyph of the text can be entry character `expected`: the same character, a leet spelling of it
 * ("4" for "a"), or, for a digit in a word of the entry, a letter it stands for (text "nazi" for entry "n4zi").
 * `leet` is false for numbers, in the text ("455" is not "ass") or in the entry ("88" is not "bb").
 */
function glyphMatches(glyph: Glyph, expected: string, leet: boolean): boolean {
  if (glyph.char === expected) return true;
  if (!leet) return false;
  if (glyph.alts.includes(expected)) return true;
  const standsFor = LEET[expected];
  if (standsFor === undefined) return false;
  if (standsFor.includes(glyph.char)) return true;
  for (const alt of glyph.alts) if (standsFor.includes(alt)) return true;
  return false;
}

/** Whether tokens from `first` on, glyph by glyph, spell `entry` followed by `suffix` (lengths already agree). */
function spells(tokens: Token[], first: number, entry: CompiledEntry, suffix: string, leet: boolean): boolean {
  const total = entry.chars.length + suffix.length;
  let k = 0;
  for (let t = first; k < total; t++) {
    for (const glyph of tokens[t].glyphs) {
      const inEntry = k < entry.chars.length;
      const expected = inEntry ? entry.chars[k] : suffix[k - entry.chars.length];
      if (!glyphMatches(glyph, expected, leet && !(inEntry && entry.numeric[k]))) return false;
      k++;
    }
  }
  return true;
}

/**
 * Which tokens are letters spelled out one by one: a single glyph whose piece of text (between spaces) is all
 * single glyphs. "a s s" and "a.s.s" are; the "s" of "it's" is not.
 */
function spelledLetters(tokens: Token[]): boolean[] {
  const spelled = new Array<boolean>(tokens.length).fill(false);
  let start = 0;
  for (let end = 1; end <= tokens.length; end++) {
    if (end < tokens.length && !tokens[end].spaceBefore) continue;
    // tokens[start..end) are one piece of text between spaces.
    let allSingle = true;
    for (let t = start; t < end; t++) allSingle &&= tokens[t].glyphs.length === 1;
    if (allSingle) spelled.fill(true, start, end);
    start = end;
  }
  return spelled;
}

// One-letter words that may stand right before letters spelled out: "draw a n a z i", "i s h i t".
const ONE_LETTER_WORDS = new Set(['a', 'i']);

/** Whether a match may start at `first` without cutting spelled-out letters in two. */
function mayStartAt(tokens: Token[], spelled: boolean[], first: number): boolean {
  if (first === 0 || !spelled[first] || !spelled[first - 1]) return true;
  const before = first - 1;
  const beforeStartsLetters = before === 0 || !spelled[before - 1];
  return beforeStartsLetters && ONE_LETTER_WORDS.has(tokens[before].glyphs[0].char);
}

/**
 * A compiled list: entries bucketed by skeleton length. Build once per settings read. `find` costs at most
 * (words in the text) × (entries) × 3 comparisons of one entry's length: every run of words it tries is at most
 * the longest entry plus "es", and an entry is compared only against runs of its own length (plus a plural).
 */
export class BannedWordMatcher {
  private readonly byLength = new Map<number, CompiledEntry[]>();
  private readonly maxLength: number = 0;

  constructor(bannedWords: readonly string[]) {
    const seen = new Set<string>();
    for (const entry of bannedWords) {
      const words = entryWords(entry);
      const key = words.join(' ');
      if (words.length === 0 || seen.has(key)) continue;
      seen.add(key);
      const chars: string[] = [];
      const numeric: boolean[] = [];
      const wordEnds: number[] = [];
      for (const word of words) {
        if (chars.length > 0) wordEnds.push(chars.length);
        const letters = [...word];
        const allDigits = letters.every((char) => NUMBER.test(char));
        for (const char of letters) {
          chars.push(char);
          numeric.push(allDigits);
        }
      }
      const compiled: CompiledEntry = {
        entry,
        chars,
        numeric,
        wordEnds,
        wordCount: words.length,
        esPlural: ES_PLURAL.test(words[words.length - 1]),
      };
      const bucket = this.byLength.get(chars.length);
      if (bucket) bucket.push(compiled);
      else this.byLength.set(chars.length, [compiled]);
      this.maxLength = Math.max(this.maxLength, chars.length);
    }
  }

  /** The first banned entry found in `text` (as it was given to the constructor), or undefined. */
  find(text: string): string | undefined {
    if (this.byLength.size === 0) return undefined;
    const tokens = tokenize(text);
    const spelled = spelledLetters(tokens);
    const longestRun = this.maxLength + 2;
    const ends: number[] = [];
    for (let first = 0; first < tokens.length; first++) {
      if (!mayStartAt(tokens, spelled, first)) continue;
      // The run is tokens[first..last]; what it is made of decides whether its words may be glued.
      let length = 0;
      let joined = true; // only joiners ("." "-" "_") between its words
      let singles = true; // every word one letter: "a s s"
      let longs = true; // every word three letters or more: "ass hole"
      let number = true; // every word all digits: no leetspeak
      ends.length = 0;
      for (let last = first; last < tokens.length; last++) {
        const token = tokens[last];
        const size = token.glyphs.length;
        length += size;
        if (length > longestRun) break;
        if (last > first && token.spaceBefore) joined = false;
        singles &&= size === 1;
        longs &&= size >= 3;
        number &&= token.digitsOnly;
        ends.push(length);
        // Never end inside letters spelled out: "h e l l o" is not "hell".
        if (spelled[last] && spelled[last + 1] === true) continue;
        const glued = last === first || joined || singles || longs;
        for (const suffix of PLURALS) {
          const bucket = this.byLength.get(length - suffix.length);
          if (bucket === undefined) continue;
          for (const entry of bucket) {
            if (suffix === 'es' && !entry.esPlural) continue;
            // Words that may not be glued still match a phrase whose words they are, one for one ("a cat").
            if (!glued && ends.length !== entry.wordCount) continue;
            if (!entry.wordEnds.every((wordEnd) => ends.includes(wordEnd))) continue;
            if (spells(tokens, first, entry, suffix, !number)) return entry.entry;
          }
        }
      }
    }
    return undefined;
  }
}

/** The first banned entry found in `text` (as given in `bannedWords`), or undefined. */
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
