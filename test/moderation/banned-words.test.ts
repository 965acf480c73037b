import { describe, expect, it } from 'vitest';
import { isUserError } from '../../src/errors.js';
import {
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
