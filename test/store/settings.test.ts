import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isUserError, type UserError } from '../../src/errors.js';
import { MANAGE_GUILD } from '../../src/moderation/permissions.js';
import { applySettingsChange, changeSettings, type SettingsChange } from '../../src/moderation/settings-rules.js';
import { openDatabase, type Db } from '../../src/store/database.js';
import { SettingsStore, type GuildSettings } from '../../src/store/settings.js';
import { guildSettings } from './guild-settings.js';

const defaults: GuildSettings = guildSettings();
const limits = { hardStepsCap: 150 };
const GUILD = '900000000000000001';
const admin = { userId: '100000000000000001', permissions: MANAGE_GUILD, roleIds: [] as string[] };
const member = { userId: '100000000000000002', permissions: (1n << 11n) | (1n << 10n), roleIds: ['300000000000000003'] };

const dirs: string[] = [];
const dbs: Db[] = [];
function open(dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imagine-settings-'))): { db: Db; store: SettingsStore; dataDir: string } {
  dirs.push(dataDir);
  const db = openDatabase({ dataDir });
  dbs.push(db);
  return { db, store: new SettingsStore(db, { defaults, hardStepsCap: 150 }), dataDir };
}
afterEach(() => {
  for (const db of dbs.splice(0)) if (db.open) db.close();
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function userError(fn: () => unknown): UserError {
  try {
    fn();
  } catch (error) {
    if (isUserError(error)) return error;
    throw error;
  }
  throw new Error('expected a UserError');
}

describe('guild settings', () => {
  it('GIVEN a guild that changed nothing THEN it reads the owner defaults', () => {
    const { store } = open();
    expect(store.get(GUILD)).toEqual(defaults);
  });

  it('GIVEN a moderator changes steps THEN the change persists and is audited with who, old → new, and when', () => {
    const { store, dataDir, db } = open();
    const before = Date.now();
    const update = changeSettings(store, GUILD, admin, { kind: 'steps', default: 30, max: 80 }, limits);
    expect(update.after).toMatchObject({ stepsDefault: 30, stepsMax: 80 });
    expect(update.changes.map((c) => [c.key, c.oldValue, c.newValue])).toEqual([
      ['stepsDefault', 20, 30],
      ['stepsMax', 50, 80],
    ]);
    db.close();
    const reopened = open(dataDir).store;
    expect(reopened.get(GUILD)).toMatchObject({ stepsDefault: 30, stepsMax: 80 });
    const audit = reopened.audit(GUILD);
    expect(audit).toHaveLength(2);
    expect(audit[0]).toMatchObject({ guildId: GUILD, actorId: admin.userId, key: 'stepsMax', oldValue: 50, newValue: 80 });
    expect(audit[0].at).toBeGreaterThanOrEqual(before);
    // Pages go backwards in time.
    expect(reopened.audit(GUILD, { limit: 1, beforeId: audit[0].id })[0].key).toBe('stepsDefault');
    // Another guild is untouched.
    expect(reopened.get('900000000000000002')).toEqual(defaults);
  });

  it.each<[string, SettingsChange, RegExp]>([
    ['max above the hard cap', { kind: 'steps', max: 151 }, /`max` to be an integer from 1 to 150, got `151`/],
    ['max of zero', { kind: 'steps', max: 0 }, /from 1 to 150/],
    ['default above max', { kind: 'steps', default: 60 }, /`default` to be an integer from 1 to 50, got `60`/],
    ['max below the current default', { kind: 'steps', max: 10 }, /default steps \(20\) cannot be above the maximum \(10\)/],
    ['a fractional default', { kind: 'steps', default: 2.5 }, /integer/],
    ['nothing given', { kind: 'steps' }, /Give `default`, `max` or both/],
    ['count max above 4', { kind: 'count', max: 5 }, /`max` to be an integer from 1 to 4, got `5`/],
    ['count default above max', { kind: 'count', max: 2, default: 3 }, /`default` to be an integer from 1 to 2, got `3`/],
    ['count with nothing given', { kind: 'count' }, /Give `default`, `max` or both/],
    ['per-member 0', { kind: 'limits', perMember: 0 }, /`per-member` to be an integer from 1 to 20, got `0`/],
    ['per-member 21', { kind: 'limits', perMember: 21 }, /from 1 to 20/],
    ['an empty banned word', { kind: 'banned-words', action: 'add', words: ['  '] }, /letters or digits/],
    ['removing a word not on the list', { kind: 'banned-words', action: 'remove', words: ['nope'] }, /Not on the banned list/],
    ['a bad role id', { kind: 'moderator-roles', action: 'add', roleId: 'admins' }, /role id/],
  ])('GIVEN %s THEN it is refused with the allowed range and nothing changes', (_name, change, message) => {
    const { store } = open();
    const error = userError(() => changeSettings(store, GUILD, admin, change, limits));
    expect(error.identifier).toBe('invalidInput');
    expect(error.message).toMatch(message);
    expect(error.message).toMatch(/Nothing was changed/);
    expect(store.get(GUILD)).toEqual(defaults);
    expect(store.audit(GUILD)).toEqual([]);
  });

  it('GIVEN a moderator sets the count THEN default and max persist, are audited old → new, and a max below the default is refused', () => {
    const { store } = open();
    expect(store.get(GUILD)).toMatchObject({ countDefault: 1, countMax: 4 });
    const update = changeSettings(store, GUILD, admin, { kind: 'count', default: 2, max: 3 }, limits);
    expect(update.changes.map((c) => [c.key, c.oldValue, c.newValue, c.actorId])).toEqual([
      ['countDefault', 1, 2, admin.userId],
      ['countMax', 4, 3, admin.userId],
    ]);
    expect(store.get(GUILD)).toMatchObject({ countDefault: 2, countMax: 3 });
    expect(store.audit(GUILD).map((entry) => entry.key)).toEqual(['countMax', 'countDefault']);
    const error = userError(() => changeSettings(store, GUILD, admin, { kind: 'count', max: 1 }, limits));
    expect(error.message).toMatch(/default count \(2\) cannot be above the maximum \(1\)/);
    expect(store.get(GUILD)).toMatchObject({ countDefault: 2, countMax: 3 });
  });

  it('GIVEN a member without Manage Server THEN nothing changes and nothing is audited', () => {
    const { store } = open();
    const error = userError(() => changeSettings(store, GUILD, member, { kind: 'limits', perMember: 5 }, limits));
    expect(error.identifier).toBe('notAllowed');
    expect(store.get(GUILD)).toEqual(defaults);
    expect(store.audit(GUILD)).toEqual([]);
  });

  it('GIVEN the member gets a moderator role THEN they may change settings', () => {
    const { store } = open();
    changeSettings(store, GUILD, admin, { kind: 'moderator-roles', action: 'add', roleId: '300000000000000003' }, limits);
    const update = changeSettings(store, GUILD, member, { kind: 'reroll', who: 'anyone' }, limits);
    expect(update.after.rerollWho).toBe('anyone');
    expect(store.audit(GUILD).map((e) => [e.actorId, e.key])).toEqual([
      [member.userId, 'rerollWho'],
      [admin.userId, 'moderatorRoleIds'],
    ]);
  });

  it('stores banned words normalized and sorted, and removes them by any spelling', () => {
    const { store } = open();
    changeSettings(store, GUILD, admin, { kind: 'banned-words', action: 'add', words: ['Gôre', 'ass', 'GORE'] }, limits);
    expect(store.get(GUILD).bannedWords).toEqual(['ass', 'gore']);
    changeSettings(store, GUILD, admin, { kind: 'banned-words', action: 'remove', words: ['GÖRE'] }, limits);
    expect(store.get(GUILD).bannedWords).toEqual(['ass']);
  });

  it('GIVEN an entry stored by the older matcher (Cyrillic а kept as typed) THEN typing it today removes it', () => {
    const { store } = open();
    // What the previous build stored for "Аss" with a Cyrillic А: its NFKD lowercase form, not today's skeleton.
    store.update(GUILD, admin.userId, (current) => ({ ...current, bannedWords: ['аss', 'gore'] }));
    changeSettings(store, GUILD, admin, { kind: 'banned-words', action: 'remove', words: ['Аss'] }, limits);
    expect(store.get(GUILD).bannedWords).toEqual(['gore']);
  });

  it('GIVEN a no-op change THEN no audit entry is written', () => {
    const { store } = open();
    const update = changeSettings(store, GUILD, admin, { kind: 'limits', perMember: 2 }, limits);
    expect(update.changes).toEqual([]);
    expect(store.audit(GUILD)).toEqual([]);
  });

  it('GIVEN a mutation that throws midway THEN the transaction leaves nothing behind', () => {
    const { store } = open();
    expect(() =>
      store.update(GUILD, admin.userId, (current) => {
        current.perMemberCap = 9;
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(store.get(GUILD)).toEqual(defaults);
  });

  it('GIVEN the owner lowers the hard cap later THEN a stored max reads as the cap', () => {
    const { store, dataDir, db } = open();
    changeSettings(store, GUILD, admin, { kind: 'steps', default: 100, max: 120 }, limits);
    db.close();
    const lowered = new SettingsStore(open(dataDir).db, { defaults, hardStepsCap: 60 });
    expect(lowered.get(GUILD)).toMatchObject({ stepsMax: 60, stepsDefault: 60 });
  });

  it('applySettingsChange does not touch its input', () => {
    const current = structuredClone(defaults);
    const next = applySettingsChange(current, { kind: 'limits', perMember: 4 }, limits);
    expect(next.perMemberCap).toBe(4);
    expect(current).toEqual(defaults);
  });
});
