/**
 * What the bot and moderators did to pictures: a picture the safety rules held back, a posted picture a moderator
 * deleted with ❌. Moderators read it with /settings audit, next to the settings changes. It keeps who, when,
 * where, the prompt and the rule — never the picture.
 */
import type { Db } from './database.js';

export type ModerationKind = 'picture-blocked' | 'picture-deleted';

export interface ModerationEvent {
  id: number;
  guildId: string;
  kind: ModerationKind;
  /** Who acted: the moderator who deleted; absent when the bot held a picture back by the server's rules. */
  actorId?: string;
  /** Whose picture it was. */
  userId: string;
  jobId: string;
  channelId: string;
  /** The job's prompt, as the member typed it. */
  prompt: string;
  /** For a blocked picture, which rule (see moderation/safety-rules.ts `BlockRule`). */
  rule?: string;
  /** Epoch milliseconds. */
  at: number;
}

export type NewModerationEvent = Omit<ModerationEvent, 'id'>;

interface Row {
  id: number;
  guild_id: string;
  kind: ModerationKind;
  actor_id: string | null;
  user_id: string;
  job_id: string;
  channel_id: string;
  prompt: string;
  rule: string | null;
  at: number;
}

/**
 * The moderation log over SQLite. One event per kind and job: a delivery repeated after a restart records nothing
 * new. Events hold members' prompts, so the journal sweep deletes them with the jobs (store/housekeeping.ts).
 */
export class ModerationLog {
  private readonly insert;
  private readonly select;

  constructor(db: Db) {
    this.insert = db.prepare(`INSERT OR IGNORE INTO moderation_log
      (guild_id, kind, actor_id, user_id, job_id, channel_id, prompt, rule, at)
      VALUES (@guildId, @kind, @actorId, @userId, @jobId, @channelId, @prompt, @rule, @at)`);
    this.select = db.prepare('SELECT * FROM moderation_log WHERE guild_id = ? AND id < ? ORDER BY id DESC LIMIT ?');
  }

  /** Records an event; false when this job already has one of this kind. */
  record(event: NewModerationEvent): boolean {
    return (
      this.insert.run({ ...event, actorId: event.actorId ?? null, rule: event.rule ?? null }).changes === 1
    );
  }

  /** The guild's events, newest first. Page with `beforeId`. */
  list(guildId: string, options: { limit?: number; beforeId?: number } = {}): ModerationEvent[] {
    const limit = options.limit ?? 20;
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
      throw new RangeError(`Expected \`limit\` to be an integer from 1 to 100, got \`${limit}\``);
    }
    const rows = this.select.all(guildId, options.beforeId ?? Number.MAX_SAFE_INTEGER, limit) as Row[];
    return rows.map((row) => {
      const event: ModerationEvent = {
        id: row.id,
        guildId: row.guild_id,
        kind: row.kind,
        userId: row.user_id,
        jobId: row.job_id,
        channelId: row.channel_id,
        prompt: row.prompt,
        at: row.at,
      };
      if (row.actor_id !== null) event.actorId = row.actor_id;
      if (row.rule !== null) event.rule = row.rule;
      return event;
    });
  }
}
