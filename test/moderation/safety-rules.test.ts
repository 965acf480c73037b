import { describe, expect, it } from 'vitest';
import { isUserError } from '../../src/errors.js';
import { assertRequestAllowed, blockedNotice, blockReason, previewsAllowed, safetyDecision, type SafetyFacts } from '../../src/moderation/safety-rules.js';
import type { SafetyMode } from '../../src/store/settings.js';

const facts = (over: Partial<SafetyFacts>): SafetyFacts => ({ mode: 'strict', refuseUnchecked: false, channelNsfw: false, flagged: [false], ...over });

describe('safetyDecision', () => {
  // The table in src/moderation/safety-rules.ts and the README's "Safety" section.
  it.each<[SafetyMode, boolean | undefined, readonly boolean[] | undefined, boolean, string]>([
    // mode, channel age-restricted, flags, refuseUnchecked → action
    ['strict', false, [true], false, 'block:flagged'],
    ['strict', undefined, [true], false, 'block:flagged'],
    ['strict', true, [true], false, 'post'],
    ['strict', false, [false], false, 'post'],
    ['strict', false, undefined, false, 'post'],
    ['strict', false, undefined, true, 'block:unchecked'],
    ['strict', true, undefined, true, 'post'],
    ['spoiler', false, [true], false, 'spoiler'],
    ['spoiler', true, [true], false, 'post'],
    ['spoiler', false, [false], false, 'post'],
    ['spoiler', false, undefined, true, 'post'],
    ['off', false, [true], false, 'block:flagged'],
    ['off', true, [true], false, 'post'],
    ['off', false, undefined, true, 'post'],
  ])('GIVEN %s, age-restricted %s, flags %j, refuse-unchecked %s THEN %s', (mode, channelNsfw, flagged, refuseUnchecked, expected) => {
    const decision = safetyDecision({ mode, channelNsfw, flagged, refuseUnchecked });
    expect(decision.action === 'block' ? `block:${decision.rule}` : decision.action).toBe(expected);
  });

  it('GIVEN several pictures THEN one flagged decides for the message', () => {
    expect(safetyDecision(facts({ flagged: [false, true] }))).toEqual({ action: 'block', rule: 'flagged' });
  });
});

describe('assertRequestAllowed', () => {
  it('GIVEN strict with refuse-unchecked and a model without a checker THEN a request outside age-restricted channels is refused before queueing', () => {
    let error: unknown;
    try {
      assertRequestAllowed({ mode: 'strict', refuseUnchecked: true, channelNsfw: false, modelChecked: false });
    } catch (caught) {
      error = caught;
    }
    expect(isUserError(error) && error.identifier).toBe('safetyBlocked');
    expect((error as Error).message).toMatch(/^This server allows only pictures checked by a safety checker .* so nothing was queued\. Ask in an age-restricted channel\.$/);
  });

  it('GIVEN a checked model, an age-restricted channel, or another mode THEN the request goes on (the picture is judged when made)', () => {
    expect(() => assertRequestAllowed({ mode: 'strict', refuseUnchecked: true, channelNsfw: false, modelChecked: true })).not.toThrow();
    expect(() => assertRequestAllowed({ mode: 'strict', refuseUnchecked: true, channelNsfw: true, modelChecked: false })).not.toThrow();
    expect(() => assertRequestAllowed({ mode: 'spoiler', refuseUnchecked: true, channelNsfw: false, modelChecked: false })).not.toThrow();
  });
});

describe('previewsAllowed and the words', () => {
  it('GIVEN a checked model THEN previews (unchecked pictures) show only in age-restricted channels; an unchecked model’s always', () => {
    expect(previewsAllowed({ channelNsfw: false, modelChecked: true })).toBe(false);
    expect(previewsAllowed({ channelNsfw: undefined, modelChecked: true })).toBe(false);
    expect(previewsAllowed({ channelNsfw: true, modelChecked: true })).toBe(true);
    expect(previewsAllowed({ channelNsfw: false, modelChecked: false })).toBe(true);
  });

  it('GIVEN a rule THEN the member’s notice says which, in one line within Discord’s limits', () => {
    for (const rule of ['flagged', 'unchecked'] as const) {
      const notice = blockedNotice(blockReason(rule));
      expect(notice).not.toContain('\n');
      expect(notice.length).toBeLessThan(300);
    }
    expect(blockReason('flagged')).toMatch(/safety checker flagged this picture/);
  });
});
