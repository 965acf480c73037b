import { describe, expect, it } from 'vitest';
import { Rng } from '../../src/diffusion/rng.js';
import { isUserError } from '../../src/errors.js';
import {
  BANNED_WORD_MAX_LENGTH,
  BANNED_WORDS_MAX,
  assertNoBannedWords,
  findBannedWord,
  normalizeBannedWord,
  normalizeText,
} from '../../src/moderation/banned-words.js';

describe('banned words', () => {
  const banned = ['ass', 'gore', 'bad word'];

  it.each([
    ['a photo of an ass', 'ass'],
    ['ASS on a beach', 'ass'],
    ['Äss, painted', 'ass'],
    ['gôrë everywhere', 'gore'],
    ['ＧＯＲＥ in full width', 'gore'],
    ['zero\u200Bwidth a\u200Bss hidden', 'ass'],
    ['a Bad   WORD here', 'bad word'],
    ['(gore)', 'gore'],
  ])('GIVEN %j THEN it finds %j', (text, word) => {
    expect(findBannedWord(text, banned)).toBe(word);
  });

  it.each([
    'a class of students',
    'an assassin in the dark',
    'passing clouds',
    'gorest', // a different word
    'a bad cat and a word',
    '',
  ])('GIVEN %j THEN nothing is found (whole words only)', (text) => {
    expect(findBannedWord(text, banned)).toBeUndefined();
  });

  it('matches whole words in other scripts too', () => {
    expect(findBannedWord('очень плохо', ['плохо'])).toBe('плохо');
    expect(findBannedWord('плохой день', ['плохо'])).toBeUndefined();
  });

  it('GIVEN a banned word in the negative prompt THEN the UserError names the field and the word', () => {
    let caught: unknown;
    try {
      assertNoBannedWords({ prompt: 'a cat', negativePrompt: 'no GORE please' }, banned);
    } catch (error) {
      caught = error;
    }
    expect(isUserError(caught)).toBe(true);
    if (!isUserError(caught)) return;
    expect(caught.identifier).toBe('bannedWord');
    expect(caught.message).toContain('negative prompt');
    expect(caught.message).toContain('`gore`');
    expect(caught.context).toEqual({ word: 'gore', field: 'negative prompt' });
  });

  it('GIVEN a clean prompt THEN nothing is thrown', () => {
    expect(() => assertNoBannedWords({ prompt: 'a classy cat' }, banned)).not.toThrow();
  });

  it('normalizes entries for storage and refuses entries without letters', () => {
    expect(normalizeText('Crème BRÛLÉE')).toBe('creme brulee');
    expect(normalizeBannedWord('  Crème   Brûlée ')).toBe('creme brulee');
    expect(() => normalizeBannedWord('!!!')).toThrow(/letters or digits/);
    expect(() => normalizeBannedWord('x'.repeat(65))).toThrow(/at most 64/);
  });
});

// Each row: a way around the filter, the text, and the one entry it must be caught as.
const BYPASSES: [name: string, text: string, entry: string][] = [
  // Look-alike letters from other scripts (Unicode TR39 confusables).
  ['Cyrillic а (U+0430) for a', 'a photo of an \u0430ss', 'ass'],
  ['Cyrillic ѕ (U+0455) for s', 'a\u0455\u0455 on a beach', 'ass'],
  ['Cyrillic о (U+043E) for o', 'p\u043Ern', 'porn'],
  ['Cyrillic е (U+0435) for e', 'gor\u0435 everywhere', 'gore'],
  ['Cyrillic р (U+0440) for p', '\u0440orn', 'porn'],
  ['Cyrillic с (U+0441) for c', '\u0441o\u0441k', 'cock'],
  ['Cyrillic capitals АЅЅ', '\u0410\u0405\u0405', 'ass'],
  ['Greek α and ι', 'n\u03B1z\u03B9', 'nazi'],
  ['Greek capitals ΝΑΖΙ', '\u039D\u0391\u0396\u0399', 'nazi'],
  ['Greek ο and ρ', '\u03C1\u03BFrn', 'porn'],
  ['fullwidth letters', 'ＡＳＳ', 'ass'],
  ['small capitals', '\u1D00\uA731\uA731', 'ass'],
  ['mathematical bold', '\u{1D41A}\u{1D42C}\u{1D42C}', 'ass'],
  ['regional indicator letters', '\u{1F1E6}\u{1F1F8}\u{1F1F8}', 'ass'],
  // Leetspeak.
  ['$ for s', 'a$$', 'ass'],
  ['4 for a', '4ss', 'ass'],
  ['4 for a inside a word', 'n4zi', 'nazi'],
  ['@ for a', '@ss', 'ass'],
  ['0 for o', 'p0rn', 'porn'],
  ['1 for i', 'sh1t', 'shit'],
  ['! for i', 'sh!t', 'shit'],
  ['| for i', 'sh|t', 'shit'],
  ['3 for e', 'g0r3', 'gore'],
  ['5 for s', '5hit', 'shit'],
  ['7 for t', 'shi7', 'shit'],
  // Separators.
  ['dots between letters', 'a.s.s', 'ass'],
  ['hyphens between letters', 'a-s-s', 'ass'],
  ['underscores between letters', 'a_s_s', 'ass'],
  ['spaced single letters', 'a s s', 'ass'],
  ['spaced capitals with a plural', 'N A Z I S', 'nazi'],
  ['spaced letters after the article a', 'draw a n a z i flag', 'nazi'],
  ['spaced letters after a word with an apostrophe', "it's a s s", 'ass'],
  ['hyphen inside a one-word entry', 'what an ass-hole', 'asshole'],
  ['underscore inside a one-word entry', 'ass_hole', 'asshole'],
  ['space inside a one-word entry', 'you ass hole', 'asshole'],
  // Plurals.
  ['plural -s', 'assholes', 'asshole'],
  ['plural -es', 'asses', 'ass'],
  ['plural of a leet spelling', 'n4zis', 'nazi'],
  // Invisible characters and marks.
  ['zero-width space U+200B', 'a\u200Bss', 'ass'],
  ['zero-width non-joiner U+200C', 'a\u200Css', 'ass'],
  ['zero-width joiner U+200D', 'a\u200Dss', 'ass'],
  ['word joiner U+2060', 'a\u2060ss', 'ass'],
  ['byte order mark U+FEFF', 'a\uFEFFss', 'ass'],
  ['soft hyphen U+00AD', 'ass\u00ADhole', 'asshole'],
  ['right-to-left mark U+200F', 'a\u200Fss', 'ass'],
  ['combining strokes through each letter', 'a\u0336s\u0336s\u0336', 'ass'],
  ['Hangul filler U+3164', 'a\u3164ss', 'ass'],
  ['braille blank U+2800', 'a\u2800ss', 'ass'],
  ['Hangul choseong filler U+115F', 'a\u115Fss', 'ass'],
  ['Hangul jungseong filler U+1160', 'a\u1160ss', 'ass'],
  ['halfwidth Hangul filler U+FFA0', 'a\uFFA0ss', 'ass'],
  // Phrases and combinations.
  ['phrase in leetspeak', 'a r3d squ4re', 'red square'],
  ['phrase with a Cyrillic Е', 'RED SQUAR\u0415', 'red square'],
  ['phrase with a zero-width space', 'red\u200B square', 'red square'],
  ['fullwidth, leet and dots at once', 'Ａ.$.$', 'ass'],
  ['small capitals with leet', '\u1D00$$\u029C\u1D0F\u029F\u1D07', 'asshole'],
];

// Entries the innocent texts are checked against, all at once.
const LIST = [
  'ass',
  'asshole',
  'nazi',
  'shit',
  'porn',
  'gore',
  'cock',
  'cunt',
  'hell',
  'butt',
  'rape',
  'cum',
  'sex',
  'anal',
  'the rapist',
  'red square',
];

const INNOCENT: [name: string, text: string][] = [
  ['class contains ass', 'a class of students'],
  ['classes is not a plural of ass', 'classes start at nine'],
  ['passage', 'a narrow passage'],
  ['assistant', 'my assistant'],
  ['bass', 'a bass guitar'],
  ['Scunthorpe contains cunt', 'Scunthorpe United'],
  ['Nazareth starts like nazi', 'Nazareth at dawn'],
  ['glass hole does not glue into asshole', 'a glass hole in the window'],
  ['pass, sweet does not glue into ass', 'pass, sweet child'],
  ['shell contains hell', 'a shell on the beach'],
  ['hello starts with hell', 'hello world'],
  ['cocktail starts with cock', 'a cocktail party'],
  ['grape contains rape', 'grape harvest'],
  ['therapist is not the phrase the rapist', 'a therapist office'],
  ['cumulus starts with cum', 'cumulus clouds'],
  ['Essex contains sex', 'Essex countryside'],
  ['analysis starts with anal', 'analysis paralysis'],
  ['two-letter words do not glue', 'an Al Capone portrait'],
  ['as soon as', 'as soon as possible'],
  ['a number is not leetspeak', 'a 455 horsepower engine'],
  ['canal contains anal', 'a canal in Venice'],
  ['a Cyrillic sentence', 'очень хорошо'],
  ['a phrase split across other words', 'a red car in a square'],
  ['a word and a single letter do not glue', 'Shi T. portrait'],
  ['plain punctuation', 'hello!!! what?? (really) ...'],
  ['a spelled-out word is not cut at its end', 'a sign that says H E L L O'],
  ['a spelled-out word is not cut at its start', 'S H E L L'],
  ['a spelled-out word after an article', 'a b u t t o n'],
];

describe('banned words: bypasses', () => {
  it.each(BYPASSES)('GIVEN %s (%j) THEN it is caught as %j', (_name, text, entry) => {
    expect(findBannedWord(text, [entry])).toBe(entry);
  });

  it('GIVEN the whole list THEN every bypass is caught as some entry', () => {
    const entries = [...new Set(BYPASSES.map(([, , entry]) => entry))];
    for (const [name, text] of BYPASSES) expect(findBannedWord(text, entries), name).toBeDefined();
  });
});

describe('banned words: innocent texts', () => {
  it.each(INNOCENT)('GIVEN %s (%j) THEN nothing is found', (_name, text) => {
    expect(findBannedWord(text, LIST)).toBeUndefined();
  });
});

describe('banned words: entries are normalized like texts', () => {
  it.each([
    ['a Cyrillic А', '\u0410ss', 'ass'],
    ['a Greek phrase in capitals', 'ΒΑD WΟRD', 'bad word'],
    ['leet symbols', 'a$$', 'ass'],
    ['a trailing exclamation mark', 'ass!', 'ass'],
    ['invisible fillers', 'a\u3164s\u200Bs', 'ass'],
    ['separators make a phrase', 'ass-hole', 'ass hole'],
    ['digits are kept', 'n4zi', 'n4zi'],
    ['a number', '1488', '1488'],
  ])('GIVEN %s (%j) THEN it is stored as %j', (_name, input, stored) => {
    expect(normalizeBannedWord(input)).toBe(stored);
  });

  it('GIVEN a stored entry with a digit in a word THEN the plain spelling and other leet spellings match it', () => {
    expect(findBannedWord('nazi', ['n4zi'])).toBe('n4zi');
    expect(findBannedWord('n@zi', ['n4zi'])).toBe('n4zi');
  });

  it('GIVEN a stored number THEN only that number matches it', () => {
    expect(findBannedWord('1488', ['1488'])).toBe('1488');
    expect(findBannedWord('i488', ['1488'])).toBeUndefined();
    expect(findBannedWord('bb cream', ['88'])).toBeUndefined();
  });

  it('GIVEN a normalized entry THEN normalizing it again changes nothing', () => {
    for (const [, text] of BYPASSES) {
      const stored = normalizeBannedWord(text);
      expect(normalizeBannedWord(stored), text).toBe(stored);
    }
  });
});

// Random Unicode from every plane, with the pieces people hide words with mixed in.
function randomText(rng: Rng, pieces: readonly string[]): string {
  const int = (n: number) => rng.nextUint32() % n;
  const length = int(2001);
  let text = '';
  while (text.length < length) {
    switch (int(10)) {
      case 0:
        text += String.fromCodePoint(int(0x110000)); // any plane, lone surrogates included
        break;
      case 1:
        text += String.fromCodePoint(0x10000 + int(0x100000)); // a surrogate pair
        break;
      case 2:
        text += String.fromCodePoint(0x300 + int(0x70)); // combining marks
        break;
      case 3:
        text += ['\u200E', '\u200F', '\u202B', '\u202E', '\u2067', '\u061C'][int(6)]; // direction marks
        break;
      case 4:
        text += ['👨\u200D👩\u200D👧', '🏳️\u200D🌈', '👍🏽', '🇦🇸', '\u3164', '\u2800', '\u00AD', '\uFEFF'][int(8)];
        break;
      case 5:
        text += String.fromCodePoint(0x20 + int(0x5f)); // ASCII
        break;
      case 6:
        text += [' ', '.', '-', '_', '$', '@', '!', '|', '4', '0', '1'][int(11)];
        break;
      default:
        text += pieces[int(pieces.length)];
    }
  }
  return text.slice(0, length);
}

describe('banned words: fuzz', () => {
  const entries = [
    ...LIST,
    'bad word',
    'n4zi',
    '1488',
    'плохо',
    'κακό',
    '悪い',
    'ass hat',
    'a b c',
    'x',
    'xx',
    'sss',
    'crème brûlée',
    ...Array.from({ length: 22 }, (_, i) => `word${String.fromCharCode(97 + i)}`),
  ];

  it('GIVEN 2,000 random strings THEN it never throws, stays fast and only ever returns an entry', () => {
    expect(entries).toHaveLength(50);
    const rng = new Rng(20240611);
    const pieces = [...entries, 'a s s', 'a.s.s', '\u0430ss', 'ass', 'hole', 'class', ' ', ' ', ' '];
    let found = 0;
    const start = performance.now();
    for (let n = 0; n < 2000; n++) {
      const text = randomText(rng, pieces);
      const result = findBannedWord(text, entries);
      if (result !== undefined) {
        found++;
        expect(entries, JSON.stringify(text)).toContain(result);
      }
    }
    const elapsed = performance.now() - start;
    expect(elapsed).toBeLessThan(5000);
    expect(found).toBeGreaterThan(0); // the entries mixed in are found, so the fuzz is not vacuous
  });

  it('GIVEN random input to the normalizer THEN it returns a stable stored form or a UserError', () => {
    const rng = new Rng(7);
    for (let n = 0; n < 500; n++) {
      const input = randomText(rng, ['ass', ' ', 'Ä$$', 'ΝΑΖΙ']).slice(0, BANNED_WORD_MAX_LENGTH);
      let stored: string;
      try {
        stored = normalizeBannedWord(input);
      } catch (error) {
        expect(isUserError(error), JSON.stringify(input)).toBe(true);
        continue;
      }
      if (stored.length <= BANNED_WORD_MAX_LENGTH) expect(normalizeBannedWord(stored), JSON.stringify(input)).toBe(stored);
    }
  });

  it('GIVEN the longest prompt and the most entries, of every length THEN it stays fast', () => {
    // All "a" but the last character, every length up to the longest: each run of a's in the text reaches entries.
    const many = Array.from({ length: BANNED_WORDS_MAX }, (_, i) => 'a'.repeat(i % BANNED_WORD_MAX_LENGTH) + String.fromCharCode(98 + (i % 20)));
    const texts = ['a '.repeat(500), 'aa.'.repeat(333), 'aaa '.repeat(250), 'aa.a '.repeat(200), '4.4.'.repeat(250), 'a'.repeat(1000), '!'.repeat(1000)];
    const start = performance.now();
    for (const text of texts) expect(findBannedWord(text, many)).toBeUndefined();
    expect(performance.now() - start).toBeLessThan(5000);
  });
});
