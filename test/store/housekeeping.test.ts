import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, type Db } from '../../src/store/database.js';
import { sweepJournal } from '../../src/store/housekeeping.js';
import { ModerationLog } from '../../src/store/moderation-log.js';
import { ResultFiles } from '../../src/store/results.js';

const dirs: string[] = [];
const dbs: Db[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imagine-housekeeping-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const db of dbs.splice(0)) db.close();
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

const mode = (file: string) => fs.statSync(file).mode & 0o777;
const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

function insertJob(db: Db, id: string, fields: { state: string; createdAt: number; finishedAt?: number; token?: string }) {
  db.prepare(
    `INSERT INTO jobs (id, guild_id, channel_id, user_id, kind, params, state, interaction, message_id, attempts,
       delivery_attempts, delivery_key, created_at, finished_at)
     VALUES (?, 'g', 'c', 'u', 'imagine', '{"prompt":"p","steps":2,"seed":1,"guidanceScale":0}', ?, ?, ?, 0, 0, ?, ?, ?)`,
  ).run(
    id,
    fields.state,
    fields.token ? JSON.stringify({ applicationId: 'app', token: fields.token, createdAt: fields.createdAt }) : null,
    `msg-${id}`,
    id.slice(0, 25),
    fields.createdAt,
    fields.finishedAt ?? null,
  );
}

describe('the journal at rest', () => {
  it('GIVEN a fresh DATA_DIR THEN the directory is 0700 and the journal, its WAL and results are 0600', async () => {
    const dataDir = path.join(tempDir(), 'data');
    const db = openDatabase({ dataDir });
    dbs.push(db);
    db.prepare("INSERT INTO meta (key, value) VALUES ('x', '1')").run();
    const results = new ResultFiles(path.join(dataDir, 'results'));
    await results.save('job1', [new Uint8Array([1, 2, 3])]);
    expect(mode(dataDir)).toBe(0o700);
    expect(mode(path.join(dataDir, 'results'))).toBe(0o700);
    for (const file of ['imagine.db', 'imagine.db-wal', 'imagine.db-shm']) expect(mode(path.join(dataDir, file))).toBe(0o600);
    expect(mode(results.fileFor('job1', 0))).toBe(0o600);
  });

  it('GIVEN a DATA_DIR made world-readable by an older version THEN opening it tightens it', () => {
    const dataDir = path.join(tempDir(), 'data');
    fs.mkdirSync(dataDir, { mode: 0o755 });
    fs.writeFileSync(path.join(dataDir, 'imagine.db'), '', { mode: 0o644 });
    fs.chmodSync(dataDir, 0o755);
    fs.chmodSync(path.join(dataDir, 'imagine.db'), 0o644);
    dbs.push(openDatabase({ dataDir }));
    expect(mode(dataDir)).toBe(0o700);
    expect(mode(path.join(dataDir, 'imagine.db'))).toBe(0o600);
  });

  it('GIVEN tokens past their 15 minutes and jobs past retention THEN tokens are dropped, old finished jobs and old moderation events pruned', () => {
    const db = openDatabase({ dataDir: tempDir() });
    dbs.push(db);
    const now = 100 * DAY;
    insertJob(db, 'fresh', { state: 'queued', createdAt: now - 5 * MINUTE, token: 'live-token' });
    insertJob(db, 'stale', { state: 'done', createdAt: now - 20 * MINUTE, finishedAt: now - 19 * MINUTE, token: 'dead-token' });
    insertJob(db, 'waiting-long', { state: 'queued', createdAt: now - 40 * DAY, token: 'old-token' });
    insertJob(db, 'old-done', { state: 'done', createdAt: now - 31 * DAY, finishedAt: now - 31 * DAY });
    insertJob(db, 'old-failed', { state: 'failed', createdAt: now - 45 * DAY, finishedAt: now - 45 * DAY });
    insertJob(db, 'recent-done', { state: 'done', createdAt: now - 29 * DAY, finishedAt: now - 29 * DAY });

    const log = new ModerationLog(db);
    const event = { guildId: 'g', kind: 'picture-blocked' as const, userId: 'u', channelId: 'c', prompt: 'a red square', rule: 'flagged' };
    log.record({ ...event, jobId: 'old-done', at: now - 31 * DAY });
    log.record({ ...event, jobId: 'recent-done', at: now - 29 * DAY });

    const report = sweepJournal(db, { now, retentionDays: 30 });
    expect(report).toEqual({ tokensDropped: 2, jobsPruned: 2, moderationPruned: 1 });
    expect(log.list('g').map((e) => e.jobId)).toEqual(['recent-done']);
    const rows = db.prepare('SELECT id, interaction FROM jobs ORDER BY id').all() as { id: string; interaction: string | null }[];
    expect(rows.map((r) => r.id)).toEqual(['fresh', 'recent-done', 'stale', 'waiting-long']);
    const tokenOf = (id: string) => {
      const raw = rows.find((r) => r.id === id)!.interaction;
      return raw === null ? null : (JSON.parse(raw) as { token: string }).token;
    };
    expect(tokenOf('fresh')).toBe('live-token');
    expect(tokenOf('stale')).toBe('');
    expect(tokenOf('waiting-long')).toBe('');
    // Nothing left in the file's free pages either.
    db.pragma('wal_checkpoint(TRUNCATE)');
    expect(fs.readFileSync(db.name).includes('dead-token')).toBe(false);
    expect(sweepJournal(db, { now, retentionDays: 30 })).toEqual({ tokensDropped: 0, jobsPruned: 0, moderationPruned: 0 });
  });
});
