import { describe, expect, it } from 'vitest';
import { isUserError } from '../../src/errors.js';
import { applySettingsChange, NEGATIVE_DEFAULT_MAX, type SettingsChange } from '../../src/moderation/settings-rules.js';
import { SAFETY_DEFAULTS, type GuildSettings } from '../../src/store/settings.js';
import { guildSettings } from '../store/guild-settings.js';

const current: GuildSettings = guildSettings();
const limits = { hardStepsCap: 150 };

function refusal(change: SettingsChange): string {
  try {
    applySettingsChange(current, change, limits);
  } catch (error) {
    if (isUserError(error)) return error.message;
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('safety settings', () => {
  it('GIVEN a fresh server THEN strict, unchecked allowed, no default negative', () => {
    expect(SAFETY_DEFAULTS).toEqual({ safetyMode: 'strict', refuseUnchecked: false, negativeDefault: '' });
  });

  it('GIVEN /settings safety THEN mode and refuse-unchecked change alone or together; a bad mode is named', () => {
    expect(applySettingsChange(current, { kind: 'safety', mode: 'spoiler' }, limits)).toMatchObject({ safetyMode: 'spoiler', refuseUnchecked: false });
    expect(applySettingsChange(current, { kind: 'safety', refuseUnchecked: true }, limits)).toMatchObject({ safetyMode: 'strict', refuseUnchecked: true });
    expect(refusal({ kind: 'safety' })).toMatch(/Give `mode`, `unchecked` or both/);
    expect(refusal({ kind: 'safety', mode: 'lax' as never })).toMatch(/`mode` to be one of strict, spoiler, off, got `lax`/);
  });

  it('GIVEN /settings negative THEN it is trimmed and set, cleared when empty, refused when too long or not one line', () => {
    expect(applySettingsChange(current, { kind: 'negative', text: '  nsfw, gore ' }, limits).negativeDefault).toBe('nsfw, gore');
    expect(applySettingsChange({ ...current, negativeDefault: 'x' }, { kind: 'negative' }, limits).negativeDefault).toBe('');
    expect(refusal({ kind: 'negative', text: 'a'.repeat(NEGATIVE_DEFAULT_MAX + 1) })).toMatch(/at most 500 characters, got 501/);
    expect(refusal({ kind: 'negative', text: 'a\u2028b' })).toMatch(/one line of plain text/);
    expect(refusal({ kind: 'negative', text: 'a\u0007b' })).toMatch(/one line of plain text/);
  });
});
