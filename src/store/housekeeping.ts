/**
 * What the journal keeps, and for how long. An interaction token is a credential for 15 minutes (Discord docs,
 * "Receiving and Responding"): past that it is blanked, since delivery no longer uses it. Finished jobs stay
 * `retentionDays` (🔁 on an old picture needs its parameters, found by message id), then go, and so do the
 * moderation log's events, which quote prompts.
 */
import type { Db } from './database.js';

/** Interaction tokens live 15 minutes (Discord docs, "Receiving and Responding"). */
const TOKEN_LIFETIME_MS = 15 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

export interface SweepOptions {
  /** Finished jobs older than this many days are deleted. */
  retentionDays: number;
  /** Clock (tests). Default Date.now(). */
  now?: number;
}

export interface SweepReport {
  tokensDropped: number;
  jobsPruned: number;
  /** Moderation-log events (blocked or deleted pictures, with their prompts) past retention. */
  moderationPruned: number;
}

/** Blanks dead interaction tokens and deletes finished jobs and moderation events past retention, in one transaction. */
export function sweepJournal(db: Db, options: SweepOptions): SweepReport {
  const now = options.now ?? Date.now();
  return db.transaction(() => {
    const tokens = db
      .prepare(
        `UPDATE jobs SET interaction = json_set(interaction, '$.token', '')
         WHERE interaction IS NOT NULL AND json_extract(interaction, '$.token') != ''
           AND json_extract(interaction, '$.createdAt') < ?`,
      )
      .run(now - TOKEN_LIFETIME_MS);
    const pruned = db
      .prepare(
        `DELETE FROM jobs WHERE state IN ('done', 'failed', 'cancelled')
           AND COALESCE(finished_at, created_at) < ?`,
      )
      .run(now - options.retentionDays * DAY_MS);
    const moderation = db.prepare('DELETE FROM moderation_log WHERE at < ?').run(now - options.retentionDays * DAY_MS);
    return { tokensDropped: tokens.changes, jobsPruned: pruned.changes, moderationPruned: moderation.changes };
  })();
}

/**
 * Sweeps now and then every `everyMs` (default hourly) until the returned stop function is called. The timer
 * does not keep the process alive.
 */
export function startJournalSweeps(
  db: Db,
  options: SweepOptions & { everyMs?: number; onSweep?: (report: SweepReport) => void; onError?: (error: unknown) => void },
): () => void {
  const sweep = () => {
    try {
      const report = sweepJournal(db, { retentionDays: options.retentionDays });
      if (report.tokensDropped + report.jobsPruned + report.moderationPruned > 0) options.onSweep?.(report);
    } catch (error) {
      options.onError?.(error);
    }
  };
  sweep();
  const timer = setInterval(sweep, options.everyMs ?? 60 * 60 * 1000);
  timer.unref();
  return () => clearInterval(timer);
}
