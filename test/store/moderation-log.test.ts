import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, type Db } from '../../src/store/database.js';
import { ModerationLog } from '../../src/store/moderation-log.js';

const dirs: string[] = [];
const dbs: Db[] = [];
afterEach(() => {
  for (const db of dbs.splice(0)) db.close();
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});
function open(): ModerationLog {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imagine-modlog-'));
  dirs.push(dir);
  const db = openDatabase({ dataDir: dir });
  dbs.push(db);
  return new ModerationLog(db);
}

describe('ModerationLog', () => {
  const blocked = { guildId: 'g1', kind: 'picture-blocked' as const, userId: 'alice', jobId: 'j1', channelId: 'c', prompt: 'a red square', rule: 'flagged', at: 10 };

  it('GIVEN events in two guilds THEN each guild reads its own, newest first, with who, whose, where, prompt and rule', () => {
    const log = open();
    expect(log.record(blocked)).toBe(true);
    expect(log.record({ ...blocked, guildId: 'g2', jobId: 'j2' })).toBe(true);
    expect(log.record({ guildId: 'g1', kind: 'picture-deleted', actorId: 'mod', userId: 'bob', jobId: 'j3', channelId: 'c', prompt: 'green', at: 20 })).toBe(true);
    const events = log.list('g1');
    expect(events.map((e) => [e.kind, e.jobId])).toEqual([['picture-deleted', 'j3'], ['picture-blocked', 'j1']]);
    expect(events[0]).toMatchObject({ actorId: 'mod', userId: 'bob', prompt: 'green' });
    expect(events[0]!.rule).toBeUndefined();
    expect(events[1]).toMatchObject({ userId: 'alice', prompt: 'a red square', rule: 'flagged', at: 10 });
    expect(events[1]!.actorId).toBeUndefined();
    expect(log.list('g1', { limit: 1, beforeId: events[0]!.id }).map((e) => e.jobId)).toEqual(['j1']);
  });

  it('GIVEN the same job blocked twice (a delivery repeated after a restart) THEN it is recorded once', () => {
    const log = open();
    expect(log.record(blocked)).toBe(true);
    expect(log.record({ ...blocked, at: 11 })).toBe(false);
    expect(log.list('g1')).toHaveLength(1);
  });
});
