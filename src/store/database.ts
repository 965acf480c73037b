import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { MIGRATIONS, type Migration } from './migrations.js';

export type Db = Database.Database;

export interface OpenDatabaseOptions {
  /** Folder for imagine.db and results/. Created if missing. Default `./data`. */
  dataDir?: string;
  /** File name inside dataDir. Default `imagine.db`. */
  fileName?: string;
  /**
   * SQLite's `synchronous` in WAL mode. FULL (default) survives power loss; NORMAL survives a killed process
   * but may lose the last commits on power loss, and halves the journal's cost per job (load test: 47 → 86 jobs/s
   * with 0 ms steps on a busy 2-core machine). Generation takes seconds per job, so FULL costs nothing real.
   */
  synchronous?: 'FULL' | 'NORMAL';
  /** Schema versions to apply; tests pass a shorter list. Default: all of ./migrations.ts. */
  migrations?: readonly Migration[];
}

/**
 * Open (or create) the journal: WAL so readers never block the writer, `synchronous = FULL` by default so a state
 * written (e.g. "delivered") is on disk even if the machine loses power, then apply pending migrations.
 */
export function openDatabase(options: OpenDatabaseOptions = {}): Db {
  const dataDir = options.dataDir ?? './data';
  const synchronous = options.synchronous ?? 'FULL';
  if (synchronous !== 'FULL' && synchronous !== 'NORMAL') {
    throw new RangeError(`Expected \`synchronous\` to be FULL or NORMAL, got \`${String(synchronous)}\``);
  }
  // The journal holds interaction tokens and prompts: only the bot's own user may read it. SQLite creates the
  // -wal and -shm files with the database file's mode, so creating that one 0600 covers all three.
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dataDir, 0o700);
  const file = path.join(dataDir, options.fileName ?? 'imagine.db');
  fs.closeSync(fs.openSync(file, 'a', 0o600));
  fs.chmodSync(file, 0o600);
  for (const companion of [`${file}-wal`, `${file}-shm`]) {
    if (fs.existsSync(companion)) fs.chmodSync(companion, 0o600);
  }
  const db = new Database(file);
  try {
    // Another process (a second shard of the same bot, the sqlite3 shell) may hold the lock briefly: wait for it,
    // from the first statement on (switching a new file to WAL needs the lock too).
    db.pragma('busy_timeout = 5000');
    // Switching a new file to WAL may answer SQLITE_BUSY at once, without the busy handler, while another process
    // does the same: try again for a while (the first switch wins, the others find WAL already on).
    untilNotBusy(() => db.pragma('journal_mode = WAL'), 10_000);
    // Deleted rows (blanked tokens, pruned jobs) are overwritten with zeros, not left in free pages.
    db.pragma('secure_delete = ON');
    db.pragma(`synchronous = ${synchronous}`);
    db.pragma('foreign_keys = ON');
    migrate(db, options.migrations ?? MIGRATIONS);
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}

/** Run `step`; while it fails with SQLITE_BUSY, wait a few milliseconds and run it again, for up to `timeoutMs`. */
function untilNotBusy<T>(step: () => T, timeoutMs: number): T {
  const deadline = Date.now() + timeoutMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      return step();
    } catch (error) {
      if ((error as { code?: string }).code !== 'SQLITE_BUSY' || Date.now() > deadline) throw error;
      Atomics.wait(pause, 0, 0, 10 + Math.random() * 20);
    }
  }
}

/**
 * Apply every migration above the stored version, each in an IMMEDIATE transaction that checks the version again
 * (several processes may migrate one file at once). Returns the version reached.
 */
export function migrate(db: Db, migrations: readonly Migration[] = MIGRATIONS): number {
  db.exec(`CREATE TABLE IF NOT EXISTS migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at INTEGER NOT NULL
  )`);
  const current = schemaVersion(db);
  const known = migrations.reduce((max, m) => Math.max(max, m.version), 0);
  if (current > known) {
    throw new Error(
      `The database has schema version ${current} but this build knows up to ${known}: run a newer build, ` +
        'or restore a backup made with this one',
    );
  }
  const record = db.prepare('INSERT INTO migrations (version, name, applied_at) VALUES (?, ?, ?)');
  for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
    if (migration.version <= current) continue;
    // foreign_keys cannot change inside a transaction: off before it, checked inside it, back on after.
    const keysWereOn = migration.rebuildsTables === true && db.pragma('foreign_keys', { simple: true }) === 1;
    if (keysWereOn) db.pragma('foreign_keys = OFF');
    try {
      // IMMEDIATE takes the write lock before the version is read again: the shard processes of one bot open the
      // same file at once, and only the first applies a migration; the others find it applied and skip it.
      db.transaction(() => {
        if (schemaVersion(db) >= migration.version) return;
        db.exec(migration.sql);
        if (migration.rebuildsTables) {
          const broken = db.pragma('foreign_key_check') as unknown[];
          if (broken.length > 0) throw new Error(`Migration ${migration.version} would break ${broken.length} foreign key(s); nothing was changed`);
        }
        record.run(migration.version, migration.name, Date.now());
      }).immediate();
    } finally {
      if (keysWereOn) db.pragma('foreign_keys = ON');
    }
  }
  return schemaVersion(db);
}

export function schemaVersion(db: Db): number {
  const row = db.prepare('SELECT MAX(version) AS version FROM migrations').get() as { version: number | null };
  return row.version ?? 0;
}

/**
 * True for SQLite errors that come from the storage rather than the statement: the disk is full (SQLITE_FULL),
 * the file or its folder is read-only (SQLITE_READONLY*), the disk failed (SQLITE_IOERR*), the file is gone
 * (SQLITE_CANTOPEN). The same write may work later, once the storage is fixed.
 */
export function isStorageError(error: unknown): boolean {
  return error instanceof Database.SqliteError && /^SQLITE_(FULL|READONLY|IOERR|CANTOPEN)/.test(error.code);
}

/** A small key → JSON value table for facts that must survive restarts (e.g. the measured ms per step). */
export function readMeta<T>(db: Db, key: string): T | undefined {
  const row = db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
  return row === undefined ? undefined : (JSON.parse(row.value) as T);
}

export function writeMeta(db: Db, key: string, value: unknown): void {
  db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(
    key,
    JSON.stringify(value),
  );
}

/**
 * True when the journal takes a write now (`/healthz` asks): one row of the meta table is rewritten. False when
 * the disk is full or read-only, the file is gone, or the database is closed; never throws.
 */
export function journalWritable(db: Db): boolean {
  try {
    writeMeta(db, 'health.checkedAt', Date.now());
    return true;
  } catch {
    return false;
  }
}
