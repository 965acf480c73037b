import type { Identifier } from '../errors.js';
import type { GenerateResult } from '../diffusion/types.js';
import { withRecordedNoise } from '../jobs/generate-params.js';
import type { JobRecord, JobState } from '../jobs/types.js';
import type { Db } from './database.js';

/** A finished generation minus its PNG bytes (those live in DATA_DIR/results/), kept until delivery is confirmed. */
export type SavedResultMeta = Omit<GenerateResult, 'images'> & { imageCount: number };

interface JobRow {
  seq: number;
  id: string;
  guild_id: string;
  channel_id: string;
  user_id: string;
  kind: JobRecord['kind'];
  parent_job_id: string | null;
  source_picture: number | null;
  params: string;
  channel_nsfw: number | null;
  guild_negative: string | null;
  state: JobState;
  interaction: string | null;
  message_id: string | null;
  reply_to_message_id: string | null;
  result_message_id: string | null;
  attempts: number;
  delivery_attempts: number;
  delivery_key: string;
  result: string | null;
  error: string | null;
  error_code: string | null;
  cancelled_by: string | null;
  created_at: number;
  owner: string | null;
  started_at: number | null;
  finished_at: number | null;
  delivered_at: number | null;
}

/** A job as submitted, before the journal gives it a `seq`. */
export type NewJob = Omit<JobRecord, 'seq'>;

/**
 * The job journal. Every method is one statement (or one transaction), so a crash leaves each job in exactly one
 * state. Conditional updates (`WHERE state = ...`) keep a late write from undoing a newer one.
 */
export class JobStore {
  private readonly statements;

  constructor(private readonly db: Db) {
    this.statements = {
      insert: db.prepare(`INSERT INTO jobs (
          id, guild_id, channel_id, user_id, kind, parent_job_id, source_picture, params, channel_nsfw, guild_negative, state,
          interaction, message_id, reply_to_message_id, attempts, delivery_attempts, delivery_key, created_at, owner
        ) VALUES (
          @id, @guild_id, @channel_id, @user_id, @kind, @parent_job_id, @source_picture, @params, @channel_nsfw, @guild_negative, @state,
          @interaction, @message_id, @reply_to_message_id, @attempts, @delivery_attempts, @delivery_key, @created_at, @owner
        )`),
      insertInitImage: db.prepare('INSERT INTO job_init_images (job_id, bytes) VALUES (?, ?)'),
      initImage: db.prepare('SELECT bytes FROM job_init_images WHERE job_id = ?'),
      get: db.prepare('SELECT * FROM jobs WHERE id = ?'),
      byMessage: db.prepare(
        `SELECT * FROM jobs WHERE message_id = @id OR result_message_id = @id
           OR id = (SELECT job_id FROM job_messages WHERE message_id = @id)
         ORDER BY seq DESC LIMIT 1`,
      ),
      linkMessage: db.prepare('INSERT OR IGNORE INTO job_messages (message_id, job_id) VALUES (?, ?)'),
      byStates: db.prepare('SELECT * FROM jobs WHERE state IN (SELECT value FROM json_each(?)) ORDER BY seq'),
      byOwnerStates: db.prepare(
        'SELECT * FROM jobs WHERE owner = ? AND state IN (SELECT value FROM json_each(?)) ORDER BY seq',
      ),
      delete: db.prepare(`DELETE FROM jobs WHERE id = ? AND state = 'queued'`),
      running: db.prepare(
        `UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ? WHERE id = ? AND state = 'queued'`,
      ),
      requeue: db.prepare(
        `UPDATE jobs SET state = 'queued', attempts = ?, started_at = NULL WHERE id = ? AND state IN ('running', 'queued')`,
      ),
      delivering: db.prepare(`UPDATE jobs SET state = 'delivering', result = ? WHERE id = ? AND state = 'running'`),
      beginDelivery: db.prepare(
        `UPDATE jobs SET delivery_attempts = delivery_attempts + 1 WHERE id = ? AND state = 'delivering'`,
      ),
      done: db.prepare(
        `UPDATE jobs SET state = 'done', result_message_id = ?, delivered_at = ?, finished_at = ?
         WHERE id = ? AND state = 'delivering'`,
      ),
      failed: db.prepare(
        `UPDATE jobs SET state = 'failed', error = ?, error_code = ?, finished_at = ?
         WHERE id = ? AND state IN ('queued', 'running', 'delivering')`,
      ),
      cancelled: db.prepare(
        `UPDATE jobs SET state = 'cancelled', error = ?, error_code = 'cancelled', cancelled_by = ?, finished_at = ?
         WHERE id = ? AND state IN ('queued', 'running')`,
      ),
      messageId: db.prepare('UPDATE jobs SET message_id = ? WHERE id = ?'),
      prune: db.prepare(
        `DELETE FROM jobs WHERE state IN ('done', 'failed', 'cancelled') AND finished_at IS NOT NULL AND finished_at < ?`,
      ),
    };
  }

  /**
   * Write a new job, and the picture an img2img job starts from (kept beside the job, never in its params JSON),
   * in one transaction; returns it with its journal `seq`.
   */
  insert(job: NewJob, initImage?: Uint8Array): JobRecord {
    if (initImage === undefined) return this.insertRow(job);
    return this.transaction(() => {
      const record = this.insertRow(job);
      this.statements.insertInitImage.run(job.id, Buffer.from(initImage.buffer, initImage.byteOffset, initImage.byteLength));
      return record;
    });
  }

  /** The picture an img2img job starts from; undefined for txt2img jobs (and jobs pruned since). */
  initImage(id: string): Uint8Array | undefined {
    const row = this.statements.initImage.get(id) as { bytes: Buffer } | undefined;
    return row === undefined ? undefined : new Uint8Array(row.bytes.buffer, row.bytes.byteOffset, row.bytes.byteLength);
  }

  private insertRow(job: NewJob): JobRecord {
    const info = this.statements.insert.run({
      id: job.id,
      guild_id: job.guildId,
      channel_id: job.channelId,
      user_id: job.userId,
      kind: job.kind,
      parent_job_id: job.parentJobId ?? null,
      source_picture: job.sourcePicture ?? null,
      params: JSON.stringify(job.params),
      channel_nsfw: job.channelNsfw === undefined ? null : Number(job.channelNsfw),
      guild_negative: job.guildNegative ?? null,
      state: job.state,
      interaction: job.interaction === undefined ? null : JSON.stringify(job.interaction),
      message_id: job.messageId ?? null,
      reply_to_message_id: job.replyToMessageId ?? null,
      attempts: job.attempts,
      delivery_attempts: job.deliveryAttempts,
      delivery_key: job.deliveryKey,
      created_at: job.createdAt,
      owner: job.owner ?? null,
    });
    return { ...job, seq: Number(info.lastInsertRowid) };
  }

  get(id: string): JobRecord | undefined {
    const row = this.statements.get.get(id) as JobRow | undefined;
    return row === undefined ? undefined : toRecord(row);
  }

  /** The newest job shown by, or delivered in, this message. */
  findByMessageId(messageId: string): JobRecord | undefined {
    const row = this.statements.byMessage.get({ id: messageId }) as JobRow | undefined;
    return row === undefined ? undefined : toRecord(row);
  }

  /**
   * Records another message that shows the job (the channel message posted once its interaction token died), so
   * ❌ and 🔁 on it find the job. The job's own `messageId` stays the interaction reply.
   */
  linkMessage(jobId: string, messageId: string): void {
    this.statements.linkMessage.run(messageId, jobId);
  }

  /** Jobs in any of these states, in submission order. */
  listByState(...states: JobState[]): JobRecord[] {
    return (this.statements.byStates.all(JSON.stringify(states)) as JobRow[]).map(toRecord);
  }

  /** The jobs of one bot process (scaled mode: `owner`) in any of these states, in submission order. */
  listByOwner(owner: string, ...states: JobState[]): JobRecord[] {
    return (this.statements.byOwnerStates.all(owner, JSON.stringify(states)) as JobRow[]).map(toRecord);
  }

  /** Undo a submit that could not be queued anywhere (scaled mode, Redis unreachable): only while still queued. */
  deleteQueued(id: string): boolean {
    return this.statements.delete.run(id).changes === 1;
  }

  /** The saved result metadata of a job in `delivering`. */
  savedResult(id: string): SavedResultMeta | undefined {
    const row = this.statements.get.get(id) as JobRow | undefined;
    return row?.result == null ? undefined : (JSON.parse(row.result) as SavedResultMeta);
  }

  /** queued → running, counting the attempt. False if the job was no longer queued. */
  markRunning(id: string, startedAt: number): boolean {
    return this.statements.running.run(startedAt, id).changes === 1;
  }

  /** running → queued (shutdown stopped it, or a restart reruns it), with the attempts count to keep. */
  markQueued(id: string, attempts: number): boolean {
    return this.statements.requeue.run(attempts, id).changes === 1;
  }

  markDelivering(id: string, result: SavedResultMeta): boolean {
    return this.statements.delivering.run(JSON.stringify(result), id).changes === 1;
  }

  /** Written before each delivery attempt, so a restart knows a post may already exist. */
  beginDelivery(id: string): boolean {
    return this.statements.beginDelivery.run(id).changes === 1;
  }

  markDone(id: string, resultMessageId: string, at: number): boolean {
    return this.statements.done.run(resultMessageId, at, at, id).changes === 1;
  }

  markFailed(id: string, error: string, code: Identifier | undefined, at: number): boolean {
    return this.statements.failed.run(error, code ?? null, at, id).changes === 1;
  }

  markCancelled(id: string, error: string, by: string | undefined, at: number): boolean {
    return this.statements.cancelled.run(error, by ?? null, at, id).changes === 1;
  }

  setMessageId(id: string, messageId: string): boolean {
    return this.statements.messageId.run(messageId, id).changes === 1;
  }

  /** Delete finished jobs older than `before` (epoch ms). Returns how many went. */
  prune(before: number): number {
    return this.statements.prune.run(before).changes;
  }

  /** Run `fn` in one transaction (e.g. to read caps and insert atomically). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }
}

function toRecord(row: JobRow): JobRecord {
  const job: JobRecord = {
    id: row.id,
    seq: row.seq,
    guildId: row.guild_id,
    channelId: row.channel_id,
    userId: row.user_id,
    kind: row.kind,
    params: withRecordedNoise(JSON.parse(row.params)),
    state: row.state,
    attempts: row.attempts,
    deliveryAttempts: row.delivery_attempts,
    deliveryKey: row.delivery_key,
    createdAt: row.created_at,
  };
  // Optional fields are left out rather than set to undefined, so records compare equal after a round trip.
  if (row.parent_job_id !== null) job.parentJobId = row.parent_job_id;
  if (row.source_picture !== null) job.sourcePicture = row.source_picture;
  if (row.channel_nsfw !== null) job.channelNsfw = row.channel_nsfw === 1;
  if (row.guild_negative !== null) job.guildNegative = row.guild_negative;
  if (row.interaction !== null) job.interaction = JSON.parse(row.interaction);
  if (row.message_id !== null) job.messageId = row.message_id;
  if (row.reply_to_message_id !== null) job.replyToMessageId = row.reply_to_message_id;
  if (row.result_message_id !== null) job.resultMessageId = row.result_message_id;
  if (row.error !== null) job.error = row.error;
  if (row.error_code !== null) job.errorCode = row.error_code as Identifier;
  if (row.cancelled_by !== null) job.cancelledBy = row.cancelled_by;
  if (row.started_at !== null) job.startedAt = row.started_at;
  if (row.finished_at !== null) job.finishedAt = row.finished_at;
  if (row.delivered_at !== null) job.deliveredAt = row.delivered_at;
  if (row.owner !== null) job.owner = row.owner;
  return job;
}
