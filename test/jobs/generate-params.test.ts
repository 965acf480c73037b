import { describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { buildGenerateParams, sizeForAspect, withRecordedNoise, type ImagineInput, type ImagineLimits } from '../../src/jobs/generate-params.js';

const limits: ImagineLimits = {
  stepsDefault: 20,
  stepsMax: 50,
  guidanceDefault: 7.5,
  model: { width: 512, height: 512, latentFactor: 8 },
  findBannedWord: (text) => (/\bgore\b/i.test(text) ? 'gore' : undefined),
  randomSeed: () => 12345,
};

function refusal(input: ImagineInput): UserError {
  try {
    buildGenerateParams(input, limits);
  } catch (error) {
    expect(error).toBeInstanceOf(UserError);
    return error as UserError;
  }
  throw new Error('expected a refusal');
}

describe('buildGenerateParams', () => {
  it('GIVEN only a prompt THEN the guild default steps, a drawn seed and the native size are used', () => {
    expect(buildGenerateParams({ prompt: '  a red circle  ' }, limits)).toEqual({
      prompt: 'a red circle',
      steps: 20,
      seed: 12345,
      guidanceScale: 7.5,
      width: 512,
      height: 512,
      noise: 'torch',
    });
  });

  it('GIVEN recorded params THEN one without `noise` (journaled before the field) reads as xoshiro; one with it keeps it', () => {
    const made = buildGenerateParams({ prompt: 'a red circle' }, limits);
    expect(withRecordedNoise(made)).toBe(made);
    const { noise: _, ...before } = made;
    expect(withRecordedNoise(before)).toEqual({ ...before, noise: 'xoshiro' });
  });

  it('GIVEN every option THEN each is carried over, guidance 0 included', () => {
    expect(
      buildGenerateParams(
        { prompt: 'cat', negative: 'blurry', steps: 50, seed: 0, guidance: 0, scheduler: 'euler_a', aspect: 'landscape' },
        limits,
      ),
    ).toEqual({
      prompt: 'cat',
      negativePrompt: 'blurry',
      steps: 50,
      seed: 0,
      guidanceScale: 0,
      scheduler: 'euler_a',
      width: 640,
      height: 448,
      noise: 'torch',
    });
  });

  it.each<[string, ImagineInput, string, RegExp]>([
    ['an empty prompt', { prompt: '' }, 'promptEmpty', /prompt is empty/],
    ['a whitespace prompt', { prompt: ' \t ' }, 'promptEmpty', /prompt is empty/],
    ['a missing prompt', { prompt: null }, 'promptEmpty', /prompt is empty/],
    ['1001 characters', { prompt: 'a'.repeat(1001) }, 'promptTooLong', /at most 1000 characters, got 1001/],
    ['a control character', { prompt: 'a red\u0007 circle' }, 'invalidInput', /control character \(U\+0007\)/],
    ['a NUL in the negative', { prompt: 'ok', negative: 'x\u0000' }, 'invalidInput', /`negative`.*U\+0000/],
    ['a banned word', { prompt: 'so much GORE' }, 'bannedWord', /does not allow \(“gore”\)/],
    ['steps 0', { prompt: 'ok', steps: 0 }, 'invalidInput', /`steps` to be an integer from 1 to 50, got `0`/],
    ['steps 1e9', { prompt: 'ok', steps: 1e9 }, 'stepsTooHigh', /at most 50 steps; you asked for 1000000000/],
    ['steps above the guild max', { prompt: 'ok', steps: 51 }, 'stepsTooHigh', /at most 50 steps/],
    ['fractional steps', { prompt: 'ok', steps: 2.5 }, 'invalidInput', /got `2.5`/],
    ['a negative seed', { prompt: 'ok', seed: -1 }, 'invalidInput', /`seed` to be an integer from 0 to 4294967295, got `-1`/],
    ['a seed of 2^32', { prompt: 'ok', seed: 2 ** 32 }, 'invalidInput', /got `4294967296`/],
    ['guidance 31', { prompt: 'ok', guidance: 31 }, 'invalidInput', /`guidance` to be a number from 0 to 30, got `31`/],
    ['guidance NaN', { prompt: 'ok', guidance: Number.NaN }, 'invalidInput', /got `NaN`/],
    ['an unknown scheduler', { prompt: 'ok', scheduler: 'magic' }, 'invalidInput', /`scheduler` to be one of ddpm/],
    ['an unknown aspect', { prompt: 'ok', aspect: 'toString' }, 'invalidInput', /`aspect` to be one of square/],
  ])('GIVEN %s THEN one clear refusal', (_label, input, identifier, message) => {
    const error = refusal(input);
    expect(error.identifier).toBe(identifier);
    expect(error.message).toMatch(message);
    expect(error.message).not.toContain('\n');
  });

  it('GIVEN a prompt with @everyone THEN it is accepted as text (delivery disables mentions)', () => {
    expect(buildGenerateParams({ prompt: '@everyone a cat' }, limits).prompt).toBe('@everyone a cat');
  });
});

describe('count', () => {
  const counted: ImagineLimits = { ...limits, countDefault: 1, countMax: 3 };
  it('GIVEN no count THEN the server default; 1 leaves params as a single picture; 2–max is carried', () => {
    expect(buildGenerateParams({ prompt: 'p' }, counted).count).toBeUndefined();
    expect(buildGenerateParams({ prompt: 'p' }, { ...counted, countDefault: 2 }).count).toBe(2);
    expect(buildGenerateParams({ prompt: 'p', count: 3 }, counted).count).toBe(3);
  });

  it('GIVEN a count above the server max THEN the member is told the max and the count they asked for', () => {
    const error = (() => {
      try {
        buildGenerateParams({ prompt: 'p', count: 4 }, counted);
      } catch (e) {
        return e as UserError;
      }
      throw new Error('expected a refusal');
    })();
    expect(error.identifier).toBe('countTooHigh');
    expect(error.message).toBe('This server allows at most 3 pictures per request; you asked for 4. Try `count: 3` or fewer.');
    expect(refusal({ prompt: 'p', count: 0 }).message).toMatch(/Expected `count` to be an integer from 1 to 1, got `0`/);
  });
});

describe('a model exported at one size', () => {
  it('GIVEN a non-square aspect THEN the member is told the one size it makes', () => {
    const fixed = { ...limits, model: { width: 32, height: 32, latentFactor: 1, fixedSize: true } };
    expect(buildGenerateParams({ prompt: 'ok' }, fixed)).toMatchObject({ width: 32, height: 32 });
    expect(() => buildGenerateParams({ prompt: 'ok', aspect: 'portrait' }, fixed)).toThrow(
      'This model makes only 32×32 pictures: leave `aspect` at square.',
    );
  });
});

describe('sizeForAspect', () => {
  it('GIVEN a pixel-space 32×32 model THEN sides stay multiples of 8 near the native area', () => {
    const model = { width: 32, height: 32, latentFactor: 1 };
    expect(sizeForAspect('square', model)).toEqual({ width: 32, height: 32 });
    expect(sizeForAspect('landscape', model)).toEqual({ width: 40, height: 24 });
    expect(sizeForAspect('portrait', model)).toEqual({ width: 24, height: 40 });
  });
});

describe('line and paragraph separators', () => {
  it.each([
    ['U+2028', 'a red\u2028circle'],
    ['U+2029', 'a red\u2029circle'],
  ])('GIVEN a prompt with %s THEN it is refused with one clear line, like a newline', (_name, prompt) => {
    expect(refusal({ prompt }).message).toMatch(/^Expected `prompt` to be one line of plain text, got a line separator \(U\+202[89]\) in it\.$/);
    expect(refusal({ prompt: 'ok', negative: prompt }).message).toMatch(/`negative`/);
  });
});
