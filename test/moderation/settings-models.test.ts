import { describe, expect, it } from 'vitest';
import { applySettingsChange } from '../../src/moderation/settings-rules.js';
import { chooseModel } from '../../src/moderation/request-rules.js';
import type { GuildSettings } from '../../src/store/settings.js';
import { guildSettings } from '../store/guild-settings.js';

const settings: GuildSettings = guildSettings();
const limits = { hardStepsCap: 150, models: ['imagine-shapes', 'sd-turbo'] };
const models = [
  { name: 'imagine-shapes', isDefault: true, kind: 'pixel' },
  { name: 'sd-turbo', isDefault: false, kind: 'SD 2.x Turbo' },
];
const CHANNEL = '123456789012345678';

describe('model settings', () => {
  it('GIVEN a server default and a channel default THEN the channel’s wins there, the server’s elsewhere, the member’s everywhere', () => {
    let next = applySettingsChange(settings, { kind: 'model-default', name: 'sd-turbo' }, limits);
    expect(chooseModel(null, next, CHANNEL, models).name).toBe('sd-turbo');
    next = applySettingsChange(next, { kind: 'model-default', name: 'imagine-shapes', channelId: CHANNEL }, limits);
    expect(chooseModel(null, next, CHANNEL, models).name).toBe('imagine-shapes');
    expect(chooseModel(null, next, '223456789012345678', models).name).toBe('sd-turbo');
    expect(chooseModel('sd-turbo', next, CHANNEL, models).name).toBe('sd-turbo');
    next = applySettingsChange(next, { kind: 'model-default', channelId: CHANNEL }, limits);
    expect(next.channelModels).toEqual({});
  });

  it('GIVEN a name that is not installed THEN the setting is refused, naming the installed ones', () => {
    expect(() => applySettingsChange(settings, { kind: 'model-default', name: 'sdxl' }, limits)).toThrow(
      'There is no model `sdxl` (installed: imagine-shapes, sd-turbo). Nothing was changed.',
    );
  });

  it('GIVEN deny THEN the model is refused; a default cannot be denied, nor a denied one made default; allow lifts it', () => {
    const denied = applySettingsChange(settings, { kind: 'model-access', action: 'deny', name: 'sd-turbo' }, limits);
    expect(() => chooseModel('sd-turbo', denied, CHANNEL, models)).toThrow('This server does not allow the model `sd-turbo`.');
    expect(() => applySettingsChange(denied, { kind: 'model-default', name: 'sd-turbo' }, limits)).toThrow(/denies the model `sd-turbo`/);
    expect(() => applySettingsChange(settings, { kind: 'model-access', action: 'deny', name: 'imagine-shapes' }, { ...limits })).not.toThrow();
    const withDefault = applySettingsChange(settings, { kind: 'model-default', name: 'sd-turbo' }, limits);
    expect(() => applySettingsChange(withDefault, { kind: 'model-access', action: 'deny', name: 'sd-turbo' }, limits)).toThrow(/is a default model here/);
    const allowed = applySettingsChange(denied, { kind: 'model-access', action: 'allow', name: 'sd-turbo' }, limits);
    expect(allowed.modelsDenied).toEqual([]);
  });
});
