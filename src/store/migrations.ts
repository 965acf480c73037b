/**
 * Schema versions, applied in order, each in its own transaction. Never edit a migration that has shipped:
 * add the next version.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
  /**
   * Run with foreign keys off (SQLite's way to rebuild a table that others reference: sqlite.org/lang_altertable.html,
   * "Making Other Kinds Of Table Schema Changes"); the keys are checked before the migration commits.
   */
  rebuildsTables?: boolean;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'jobs, guild settings, audit log, meta',
    sql: `
      CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        guild_id TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('imagine', 'reroll')),
        parent_job_id TEXT,
        params TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'delivering', 'done', 'failed', 'cancelled')),
        interaction TEXT,
        message_id TEXT,
        reply_to_message_id TEXT,
        result_message_id TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        delivery_attempts INTEGER NOT NULL DEFAULT 0,
        delivery_key TEXT NOT NULL UNIQUE,
        result TEXT,
        error TEXT,
        error_code TEXT,
        cancelled_by TEXT,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        delivered_at INTEGER
      );
      CREATE INDEX jobs_by_state ON jobs (state, seq);
      CREATE INDEX jobs_by_message ON jobs (message_id);
      CREATE INDEX jobs_by_result_message ON jobs (result_message_id);
      CREATE INDEX jobs_by_finished ON jobs (finished_at);

      CREATE TABLE guild_settings (
        guild_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_by TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (guild_id, key)
      );

      CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        guild_id TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        key TEXT NOT NULL,
        old_value TEXT,
        new_value TEXT,
        at INTEGER NOT NULL
      );
      CREATE INDEX audit_by_guild ON audit_log (guild_id, id);

      CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
      );
    `,
  },
  {
    version: 2,
    name: 'other messages that show a job (the channel message that replaces an expired interaction reply)',
    sql: `
      CREATE TABLE job_messages (
        message_id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE
      );
      CREATE INDEX job_messages_by_job ON job_messages (job_id);
    `,
  },
  {
    version: 3,
    name: 'safety: whether a job’s channel is age-restricted, the server’s default negative prompt it got, the moderation log',
    sql: `
      ALTER TABLE jobs ADD COLUMN channel_nsfw INTEGER;
      ALTER TABLE jobs ADD COLUMN guild_negative TEXT;

      CREATE TABLE moderation_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        guild_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('picture-blocked', 'picture-deleted')),
        actor_id TEXT,
        user_id TEXT NOT NULL,
        job_id TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        prompt TEXT NOT NULL,
        rule TEXT,
        at INTEGER NOT NULL,
        UNIQUE (kind, job_id)
      );
      CREATE INDEX moderation_log_by_guild ON moderation_log (guild_id, id);
      CREATE INDEX moderation_log_by_time ON moderation_log (at);
    `,
  },
  {
    version: 4,
    name: 'U and V buttons: job kinds upscale and variation, the picture they start from, img2img pictures beside their job',
    rebuildsTables: true,
    // A CHECK constraint cannot be altered in place: the jobs table is copied into a new one with the wider list.
    sql: `
      CREATE TABLE jobs_v4 (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        guild_id TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('imagine', 'reroll', 'upscale', 'variation')),
        parent_job_id TEXT,
        params TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'delivering', 'done', 'failed', 'cancelled')),
        interaction TEXT,
        message_id TEXT,
        reply_to_message_id TEXT,
        result_message_id TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        delivery_attempts INTEGER NOT NULL DEFAULT 0,
        delivery_key TEXT NOT NULL UNIQUE,
        result TEXT,
        error TEXT,
        error_code TEXT,
        cancelled_by TEXT,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        delivered_at INTEGER,
        channel_nsfw INTEGER,
        guild_negative TEXT,
        source_picture INTEGER
      );
      INSERT INTO jobs_v4 (
        seq, id, guild_id, channel_id, user_id, kind, parent_job_id, params, state, interaction, message_id,
        reply_to_message_id, result_message_id, attempts, delivery_attempts, delivery_key, result, error, error_code,
        cancelled_by, created_at, started_at, finished_at, delivered_at, channel_nsfw, guild_negative
      ) SELECT
        seq, id, guild_id, channel_id, user_id, kind, parent_job_id, params, state, interaction, message_id,
        reply_to_message_id, result_message_id, attempts, delivery_attempts, delivery_key, result, error, error_code,
        cancelled_by, created_at, started_at, finished_at, delivered_at, channel_nsfw, guild_negative
      FROM jobs;
      DROP TABLE jobs;
      ALTER TABLE jobs_v4 RENAME TO jobs;
      CREATE INDEX jobs_by_state ON jobs (state, seq);
      CREATE INDEX jobs_by_message ON jobs (message_id);
      CREATE INDEX jobs_by_result_message ON jobs (result_message_id);
      CREATE INDEX jobs_by_finished ON jobs (finished_at);

      -- The picture an img2img job starts from (a member's attachment, or the picture a U or V button names): kept
      -- beside the job, not in its params JSON, and removed with it.
      CREATE TABLE job_init_images (
        job_id TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
        bytes BLOB NOT NULL
      );
    `,
  },
  {
    version: 5,
    name: 'scale-out: the bot process (instance) that submitted a job and delivers it, when several share the journal',
    sql: `
      ALTER TABLE jobs ADD COLUMN owner TEXT;
      CREATE INDEX jobs_by_owner_state ON jobs (owner, state);
    `,
  },
];
