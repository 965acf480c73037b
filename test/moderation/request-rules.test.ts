import { describe, expect, it } from 'vitest';
import { isUserError } from '../../src/errors.js';
import { combineNegative, memberNegativeOf, paramsUnderGuildRules, pictureActionParams, rerollParams } from '../../src/moderation/request-rules.js';
import type { GuildSettings } from '../../src/store/settings.js';
import { guildSettings } from '../store/guild-settings.js';

const settings: GuildSettings = guildSettings({ bannedWords: ['nude'] });
const context = { model: { name: 'm', width: 64, height: 64, latentFactor: 8, defaultScheduler: 'euler' as const, maxTokens: 77 }, guidanceDefault: 7.5, randomSeed: () => 5 };

describe('the server’s default negative prompt', () => {
  it('GIVEN a default THEN it comes first in every request’s negative, the member’s own after it, and the job records it', () => {
    const withDefault = { ...settings, negativeDefault: 'nude, gore' };
    expect(paramsUnderGuildRules({ prompt: 'a cat' }, withDefault, context)).toEqual({
      params: expect.objectContaining({ negativePrompt: 'nude, gore' }),
      guildNegative: 'nude, gore',
    });
    const request = paramsUnderGuildRules({ prompt: 'a cat', negative: 'blurry' }, withDefault, context);
    expect(request.params.negativePrompt).toBe('nude, gore, blurry');
    expect(paramsUnderGuildRules({ prompt: 'a cat', negative: 'blurry' }, settings, context)).toEqual({
      params: expect.objectContaining({ negativePrompt: 'blurry' }),
    });
  });

  it('GIVEN a banned word in the member’s negative prompt, also disguised THEN it is refused; in the server’s default it is not', () => {
    for (const negative of ['nude', 'n.u.d.e', 'NÜDE', 'ｎｕｄｅ']) {
      let error: unknown;
      try {
        paramsUnderGuildRules({ prompt: 'a cat', negative }, settings, context);
      } catch (caught) {
        error = caught;
      }
      expect(isUserError(error) && error.identifier, negative).toBe('bannedWord');
      expect((error as Error).message).toMatch(/Your negative prompt contains a word this server does not allow/);
    }
    expect(() => paramsUnderGuildRules({ prompt: 'a cat' }, { ...settings, negativeDefault: 'nude' }, context)).not.toThrow();
  });

  it('GIVEN a 🔁 after the default changed THEN the member’s own negative is kept and today’s default replaces the old one', () => {
    const original = paramsUnderGuildRules({ prompt: 'a cat', negative: 'blurry' }, { ...settings, negativeDefault: 'gore' }, context);
    const reroll = rerollParams({ params: original.params, guildNegative: original.guildNegative }, { ...settings, negativeDefault: 'gore, blood' }, context);
    expect(reroll.params.negativePrompt).toBe('gore, blood, blurry');
    expect(reroll.guildNegative).toBe('gore, blood');
    const cleared = rerollParams(reroll, settings, context);
    expect(cleared.params.negativePrompt).toBe('blurry');
    expect(cleared.guildNegative).toBeUndefined();
    // A job from before the default existed: its negative is all the member's.
    expect(rerollParams({ params: { ...original.params, negativePrompt: 'gore, blurry' } }, settings, context).params.negativePrompt).toBe('gore, blurry');
  });

  it('GIVEN a 🔁 THEN it keeps the original\'s noise generator; a picture from before the field (no noise) keeps xoshiro', () => {
    const original = paramsUnderGuildRules({ prompt: 'a cat' }, settings, context);
    expect(original.params.noise).toBe('torch');
    expect(rerollParams(original, settings, context).params.noise).toBe('torch');
    expect(rerollParams({ params: { ...original.params, noise: 'xoshiro' } }, settings, context).params.noise).toBe('xoshiro');
    const { noise: _, ...before } = original.params;
    expect(rerollParams({ params: before }, settings, context).params.noise).toBe('xoshiro');
  });

  it('GIVEN a 🔁 of a count-4 picture THEN the reroll asks for 4 again, checked against today’s max', () => {
    const original = paramsUnderGuildRules({ prompt: 'cats', count: 4 }, settings, context);
    expect(original.params.count).toBe(4);
    expect(rerollParams(original, settings, context).params.count).toBe(4);
    const error = (() => {
      try {
        rerollParams(original, { ...settings, countMax: 2 }, context);
      } catch (e) {
        return e as Error;
      }
      throw new Error('expected a refusal');
    })();
    expect(error.message).toMatch(/at most 2 pictures per request; you asked for 4/);
  });

  it('GIVEN combine and split THEN they are inverse', () => {
    expect(combineNegative(undefined, undefined)).toBeUndefined();
    expect(combineNegative('a', undefined)).toBe('a');
    expect(combineNegative(undefined, 'b')).toBe('b');
    expect(memberNegativeOf(combineNegative('a, b', 'c'), 'a, b')).toBe('c');
    expect(memberNegativeOf(combineNegative('a', undefined), 'a')).toBeUndefined();
    expect(memberNegativeOf('x', undefined)).toBe('x');
  });
});

describe('the chosen model’s own defaults', () => {
  it('GIVEN a model with defaults THEN they apply when the member gives none, and the member’s values win', () => {
    const turbo = { ...context, modelName: 'sd-turbo', modelDefaults: { steps: 4, guidance: 0, scheduler: 'euler_a' as const } };
    expect(paramsUnderGuildRules({ prompt: 'a cat' }, settings, turbo).params).toMatchObject({
      steps: 4,
      guidanceScale: 0,
      scheduler: 'euler_a',
      model: 'sd-turbo',
    });
    expect(paramsUnderGuildRules({ prompt: 'a cat', steps: 2, guidance: 1, scheduler: 'lcm' }, settings, turbo).params).toMatchObject({
      steps: 2,
      guidanceScale: 1,
      scheduler: 'lcm',
    });
    expect(paramsUnderGuildRules({ prompt: 'a cat' }, settings, context).params).toMatchObject({ steps: 20, guidanceScale: 7.5 });
    expect(paramsUnderGuildRules({ prompt: 'a cat' }, settings, context).params.model).toBeUndefined();
  });

  it('GIVEN a model’s steps maximum below the server’s THEN the lower one bounds the member', () => {
    const capped = { ...context, modelDefaults: { stepsMax: 8 } };
    expect(paramsUnderGuildRules({ prompt: 'a cat' }, settings, capped).params.steps).toBe(8);
    expect(() => paramsUnderGuildRules({ prompt: 'a cat', steps: 9 }, settings, capped)).toThrow(/at most 8 steps/);
  });

  it('GIVEN a model no worker has loaded yet THEN the size is left to the engine, and a non-square aspect is refused', () => {
    const unloaded = { ...context, model: undefined, modelName: 'pixel-tiny' };
    const { params } = paramsUnderGuildRules({ prompt: 'a cat' }, settings, unloaded);
    expect([params.width, params.height, params.model]).toEqual([undefined, undefined, 'pixel-tiny']);
    expect(() => paramsUnderGuildRules({ prompt: 'a cat', aspect: 'portrait' }, settings, unloaded)).toThrow(/`pixel-tiny` has not made a picture yet/);
  });
});

describe('U and V presses (pictureActionParams)', () => {
  const original = { params: { prompt: 'a fox', steps: 20, seed: 4_294_967_295, guidanceScale: 7, width: 512, height: 512, count: 4 } };
  const request = () => ({ params: { ...original.params, seed: 77 } });
  const settings = guildSettings();

  it('GIVEN V3 THEN the 🔁 request at the server’s variation strength (default 0.6): new seed, same size and count', () => {
    expect(settings.variationStrength).toBe(0.6);
    expect(pictureActionParams('variation', original, 2, request(), settings, { width: 512, height: 512 }).params).toEqual({
      ...original.params,
      seed: 77,
      strength: 0.6,
    });
    expect(pictureActionParams('variation', original, 2, request(), guildSettings({ variationStrength: 0.3 }), { width: 512, height: 512 }).params.strength).toBe(0.3);
  });

  it('GIVEN U2 THEN one picture at twice the size, strength 0.35, with picture 2’s own seed (seed + 1, wrapped at 2^32)', () => {
    const { params } = pictureActionParams('upscale', original, 1, request(), settings, { width: 512, height: 512 });
    expect(params).toEqual({ prompt: 'a fox', steps: 20, seed: 0, guidanceScale: 7, width: 1024, height: 1024, strength: 0.35 });
  });

  it('GIVEN U1 on a model with its own upscaler/ THEN that network’s job: its scale, no strength, even at a fixed size', () => {
    const request = { params: { ...original.params, seed: 77, strength: 0.5 } };
    const { params } = pictureActionParams('upscale', original, 0, request, settings, { width: 32, height: 32, fixedSize: true, upscaler: { scale: 4 } });
    expect(params).toEqual({ prompt: 'a fox', steps: 20, seed: 4_294_967_295, guidanceScale: 7, width: 128, height: 128, upscale: true });
  });

  it.each([
    ['a fixed-size model', { width: 32, height: 32, fixedSize: true }, 20, /This model makes only 32×32 pictures, so it cannot make picture 1 larger\./],
    ['twice the size over 1024×1024', { width: 768, height: 512 }, 20, /Picture 1 is 768×512; twice that \(1536×1024\) is more than the 1024×1024 pixels an upscale may have\./],
    ['too few steps for 0.35', { width: 64, height: 64 }, 2, /U1 runs 35 % of the 2 steps .* at least 3 steps\./],
  ])('GIVEN U1 on %s THEN one clear line, nothing to queue', (_label, size, steps, message) => {
    let error: unknown;
    try {
      pictureActionParams('upscale', original, 0, { params: { ...request().params, steps } }, settings, size);
    } catch (caught) {
      error = caught;
    }
    expect(isUserError(error)).toBe(true);
    expect((error as Error).message).toMatch(message);
  });
});
