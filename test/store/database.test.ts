import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate, openDatabase, readMeta, schemaVersion, writeMeta } from '../../src/store/database.js';
import { JobStore } from '../../src/store/jobs.js';
import { MIGRATIONS } from '../../src/store/migrations.js';

const dirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imagine-db-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

describe('openDatabase', () => {
  it('creates DATA_DIR, uses WAL and records each migration once', () => {
    const dataDir = path.join(tempDir(), 'nested', 'data');
    const db = openDatabase({ dataDir });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(schemaVersion(db)).toBe(MIGRATIONS.at(-1)!.version);
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map(
      (t) => t.name,
    );
    expect(tables).toEqual(expect.arrayContaining(['jobs', 'guild_settings', 'audit_log', 'meta', 'migrations']));
    db.close();
    // Reopening applies nothing twice.
    const again = openDatabase({ dataDir });
    expect((again.prepare('SELECT COUNT(*) AS n FROM migrations').get() as { n: number }).n).toBe(MIGRATIONS.length);
    again.close();
    expect(fs.existsSync(path.join(dataDir, 'imagine.db'))).toBe(true);
  });

  it('GIVEN four processes (the shards of one bot) opening one new DATA_DIR at once THEN each opens it, and each migration is applied once', async () => {
    const dataDir = path.join(tempDir(), 'data');
    const go = path.join(tempDir(), 'go');
    const database = fileURLToPath(new URL('../../src/store/database.ts', import.meta.url));
    // Each process waits for the same signal (a file), then opens the database: they race for the first migration.
    const script = `
      import fs from 'node:fs';
      import { openDatabase } from ${JSON.stringify(database)};
      console.log('waiting');
      while (!fs.existsSync(${JSON.stringify(go)})) {}
      const db = openDatabase({ dataDir: ${JSON.stringify(dataDir)} });
      console.log('opened', db.prepare('SELECT COUNT(*) AS n FROM migrations').get().n);
      db.close();
    `;
    const runs = Array.from({ length: 4 }, () => {
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (chunk) => (output += chunk));
      child.stderr.on('data', (chunk) => (output += chunk));
      const waiting = new Promise<void>((resolve) => child.stdout.on('data', () => output.includes('waiting') && resolve()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      return { output: () => output, waiting, exited };
    });
    await Promise.all(runs.map((run) => run.waiting));
    fs.writeFileSync(go, '');
    const codes = await Promise.all(runs.map((run) => run.exited));
    expect(codes, runs.map((run) => run.output()).join('\n---\n')).toEqual([0, 0, 0, 0]);
    for (const run of runs) expect(run.output()).toContain(`opened ${MIGRATIONS.length}`);
  }, 60_000);

  it('GIVEN a later migration THEN only it is applied, in a transaction', () => {
    const dataDir = tempDir();
    openDatabase({ dataDir }).close();
    const next = [...MIGRATIONS, { version: 99, name: 'test column', sql: 'ALTER TABLE meta ADD COLUMN note TEXT' }];
    const db = openDatabase({ dataDir, migrations: next });
    expect(schemaVersion(db)).toBe(99);
    db.close();

    // A failing migration leaves no trace: the version stays and the half-done change is rolled back.
    const broken = [...next, { version: 100, name: 'broken', sql: 'CREATE TABLE t (x); SELECT * FROM no_such_table' }];
    expect(() => openDatabase({ dataDir, migrations: broken })).toThrow(/no_such_table/);
    const raw = new Database(path.join(dataDir, 'imagine.db'));
    expect(schemaVersion(raw)).toBe(99);
    expect(raw.prepare("SELECT name FROM sqlite_master WHERE name = 't'").get()).toBeUndefined();
    raw.close();
  });

  it('GIVEN a database newer than the build THEN it refuses to open it', () => {
    const dataDir = tempDir();
    const db = openDatabase({ dataDir });
    migrate(db, [...MIGRATIONS, { version: MIGRATIONS.length + 4, name: 'future', sql: 'SELECT 1' }]);
    db.close();
    expect(() => openDatabase({ dataDir })).toThrow(new RegExp(`schema version ${MIGRATIONS.length + 4} but this build knows up to ${MIGRATIONS.length}\\b`));
  });

  it('keeps meta values across reopen', () => {
    const dataDir = tempDir();
    const db = openDatabase({ dataDir });
    writeMeta(db, 'x', { a: 1.5 });
    writeMeta(db, 'x', { a: 2.5 });
    db.close();
    const again = openDatabase({ dataDir });
    expect(readMeta(again, 'x')).toEqual({ a: 2.5 });
    expect(readMeta(again, 'missing')).toBeUndefined();
    again.close();
  });
});

describe('JobStore', () => {
  it('round-trips a job and refuses transitions from the wrong state', () => {
    const db = openDatabase({ dataDir: tempDir() });
    const jobs = new JobStore(db);
    const job = jobs.insert({
      id: '01JABCDEFGHJKMNPQRST',
      guildId: 'g',
      channelId: 'c',
      userId: 'u',
      kind: 'reroll',
      parentJobId: 'parent',
      params: { prompt: 'a red circle', steps: 4, seed: 7, guidanceScale: 0, width: 64, height: 64, noise: 'torch' },
      state: 'queued',
      interaction: { applicationId: 'app', token: 'tok', createdAt: 1000 },
      attempts: 0,
      deliveryAttempts: 0,
      deliveryKey: '01JABCDEFGHJKMNPQRST',
      createdAt: 1234,
    });
    expect(jobs.get(job.id)).toEqual(job);
    expect(jobs.markDone(job.id, 'm', 5)).toBe(false); // not delivering yet
    expect(jobs.markRunning(job.id, 2000)).toBe(true);
    expect(jobs.markRunning(job.id, 2001)).toBe(false);
    expect(jobs.get(job.id)).toMatchObject({ state: 'running', attempts: 1, startedAt: 2000 });
    jobs.setMessageId(job.id, 'msg-1');
    expect(jobs.findByMessageId('msg-1')?.id).toBe(job.id);
    expect(jobs.markDelivering(job.id, {
      width: 64, height: 64, seed: 7, steps: 4, guidanceScale: 0, scheduler: 'euler', model: 'm', truncated: false,
      timings: { totalMs: 1, runtimeMs: 1, unetMs: 1 }, imageCount: 1,
    })).toBe(true);
    expect(jobs.savedResult(job.id)?.imageCount).toBe(1);
    expect(jobs.markCancelled(job.id, 'no', 'u', 3)).toBe(false); // too late to cancel
    expect(jobs.markDone(job.id, 'msg-2', 4000)).toBe(true);
    expect(jobs.findByMessageId('msg-2')?.id).toBe(job.id);
    expect(jobs.get(job.id)).toMatchObject({ state: 'done', resultMessageId: 'msg-2', deliveredAt: 4000 });
    expect(jobs.listByState('queued', 'running')).toEqual([]);
    expect(jobs.prune(4001)).toBe(1);
    expect(jobs.get(job.id)).toBeUndefined();
    db.close();
  });

  it('GIVEN a job from an age-restricted channel with the server’s default negative THEN both round-trip; a job from before version 3 has neither', () => {
    const dataDir = tempDir();
    const old = openDatabase({ dataDir, migrations: MIGRATIONS.filter((m) => m.version <= 2) });
    old
      .prepare(`INSERT INTO jobs (id, guild_id, channel_id, user_id, kind, params, state, delivery_key, created_at)
        VALUES ('old', 'g', 'c', 'u', 'imagine', '{"prompt":"p","steps":1,"seed":1,"guidanceScale":0}', 'done', 'old', 1)`)
      .run();
    old.close();
    const db = openDatabase({ dataDir });
    const jobs = new JobStore(db);
    const old3 = jobs.get('old')!;
    expect(old3.channelNsfw).toBeUndefined();
    expect(old3.guildNegative).toBeUndefined();
    // Journaled before `noise` existed: made with xoshiro, and read back so, whatever today's default.
    expect(old3.params).toEqual({ prompt: 'p', steps: 1, seed: 1, guidanceScale: 0, noise: 'xoshiro' });
    const base = {
      guildId: 'g', channelId: 'c', userId: 'u', kind: 'imagine' as const, state: 'queued' as const, attempts: 0,
      deliveryAttempts: 0, createdAt: 1,
      params: { prompt: 'p', negativePrompt: 'blurry, red', steps: 1, seed: 1, guidanceScale: 0, noise: 'torch' as const },
    };
    const nsfw = jobs.insert({ ...base, id: 'a', deliveryKey: 'a', channelNsfw: true, guildNegative: 'blurry' });
    const plain = jobs.insert({ ...base, id: 'b', deliveryKey: 'b', channelNsfw: false });
    expect(jobs.get('a')).toEqual(nsfw);
    expect(jobs.get('b')).toEqual(plain);
    expect(jobs.get('b')!.channelNsfw).toBe(false);
    db.close();
  });

  it('GIVEN a version-3 journal with jobs and linked messages THEN version 4 keeps every row and link, takes the new kinds, and keeps img2img pictures beside their job until it is pruned', () => {
    const dataDir = tempDir();
    const old = openDatabase({ dataDir, migrations: MIGRATIONS.filter((m) => m.version <= 3) });
    const insert = old.prepare(`INSERT INTO jobs (id, guild_id, channel_id, user_id, kind, parent_job_id, params, state, delivery_key,
        created_at, finished_at, message_id, channel_nsfw, guild_negative)
      VALUES (?, 'g', 'c', 'u', ?, ?, '{"prompt":"p","steps":1,"seed":1,"guidanceScale":0}', 'done', ?, 1, 2, ?, 1, 'neg')`);
    insert.run('j1', 'imagine', null, 'j1', 'm1');
    insert.run('j2', 'reroll', 'j1', 'j2', 'm2');
    old.prepare("INSERT INTO job_messages (message_id, job_id) VALUES ('fallback', 'j1')").run();
    expect(() => insert.run('j3', 'variation', 'j1', 'j3', 'm3')).toThrow(/CHECK constraint/);
    old.close();

    const db = openDatabase({ dataDir });
    // Version 4 and every later one (5 adds the scaled mode's job owner) applied over the old rows.
    expect(schemaVersion(db)).toBe(MIGRATIONS.at(-1)!.version);
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    const jobs = new JobStore(db);
    expect(jobs.get('j2')).toMatchObject({ kind: 'reroll', parentJobId: 'j1', messageId: 'm2', channelNsfw: true, guildNegative: 'neg' });
    // The link of migration 2 survived the table's rebuild (foreign keys were off while it was copied).
    expect(jobs.findByMessageId('fallback')?.id).toBe('j1');
    const picture = new Uint8Array([137, 80, 78, 71, 1, 2, 3]);
    const variation = jobs.insert(
      {
        id: 'j3', guildId: 'g', channelId: 'c', userId: 'u', kind: 'variation', parentJobId: 'j1', sourcePicture: 2,
        params: { prompt: 'p', steps: 4, seed: 5, guidanceScale: 0, strength: 0.6, noise: 'torch' }, state: 'queued', attempts: 0,
        deliveryAttempts: 0, deliveryKey: 'j3', createdAt: 3,
      },
      picture,
    );
    expect(jobs.get('j3')).toEqual(variation);
    expect(jobs.initImage('j3')).toEqual(picture);
    expect(jobs.initImage('j1')).toBeUndefined();
    expect(jobs.markRunning('j3', 4) && jobs.markFailed('j3', 'x', undefined, 5)).toBe(true);
    expect(jobs.prune(10)).toBe(3);
    expect(jobs.initImage('j3')).toBeUndefined();
    expect((db.prepare('SELECT count(*) AS n FROM job_init_images').get() as { n: number }).n).toBe(0);
    expect((db.prepare('SELECT count(*) AS n FROM job_messages').get() as { n: number }).n).toBe(0);
    db.close();
  });
});
