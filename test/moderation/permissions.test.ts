import { describe, expect, it } from 'vitest';
import { isUserError } from '../../src/errors.js';
import {
  ADMINISTRATOR,
  MANAGE_GUILD,
  assertCanManage,
  canCancel,
  canManage,
  canReroll,
} from '../../src/moderation/permissions.js';
import type { GuildSettings } from '../../src/store/settings.js';
import { guildSettings } from '../store/guild-settings.js';

const settings: GuildSettings = guildSettings({ moderatorRoleIds: ['111111111111111111'] });
// Send Messages | View Channel | Add Reactions: what an ordinary member has.
const ORDINARY = (1n << 11n) | (1n << 10n) | (1n << 6n);

describe('permissions', () => {
  it('GIVEN Manage Server or Administrator THEN the member may manage', () => {
    expect(canManage(ORDINARY | MANAGE_GUILD, [], settings)).toBe(true);
    expect(canManage(ORDINARY | ADMINISTRATOR, [], settings)).toBe(true);
    // Discord sends the bitfield as a decimal string.
    expect(canManage(String(ORDINARY | MANAGE_GUILD), [], settings)).toBe(true);
  });

  it('GIVEN a member without Manage Server THEN they may not manage', () => {
    expect(canManage(ORDINARY, ['222222222222222222'], settings)).toBe(false);
    expect(canManage('0', [], settings)).toBe(false);
    let caught: unknown;
    try {
      assertCanManage({ userId: '3', permissions: ORDINARY, roleIds: [] }, settings);
    } catch (error) {
      caught = error;
    }
    expect(isUserError(caught) && caught.identifier).toBe('notAllowed');
    expect((caught as Error).message).toMatch(/Manage Server/);
  });

  it('GIVEN a moderator role THEN the member may manage without Manage Server', () => {
    expect(canManage(ORDINARY, ['222222222222222222', '111111111111111111'], settings)).toBe(true);
  });

  it('refuses a malformed permission string instead of guessing', () => {
    expect(() => canManage('0x20', [], settings)).toThrow(/decimal/);
  });

  it('GIVEN reroll who=requester THEN only the requester and moderators may reroll; anyone when the guild says so', () => {
    const job = { userId: 'requester' };
    const stranger = { userId: 'other', permissions: ORDINARY, roleIds: [] };
    const moderator = { userId: 'mod', permissions: ORDINARY, roleIds: ['111111111111111111'] };
    expect(canReroll(job, { ...stranger, userId: 'requester' }, settings)).toBe(true);
    expect(canReroll(job, stranger, settings)).toBe(false);
    expect(canReroll(job, moderator, settings)).toBe(true);
    expect(canReroll(job, stranger, { ...settings, rerollWho: 'anyone' })).toBe(true);
    expect(canCancel(job, stranger, { ...settings, rerollWho: 'anyone' })).toBe(false);
    expect(canCancel(job, moderator, settings)).toBe(true);
  });
});
