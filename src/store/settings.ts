import type { Db } from './database.js';

export type RerollWho = 'requester' | 'anyone';

/**
 * What happens to a picture the model's safety checker flags, outside age-restricted channels (the rule itself is
 * moderation/safety-rules.ts): `strict` holds it back, `spoiler` posts it behind a spoiler with a warning, `off`
 * leaves age-restricted channels unfiltered and still holds flagged pictures back everywhere else.
 */
export const SAFETY_MODES = ['strict', 'spoiler', 'off'] as const;
export type SafetyMode = (typeof SAFETY_MODES)[number];

/** One guild's rules. Read them through `SettingsStore.get` only. */
export interface GuildSettings {
  /** Steps used when /imagine omits them. */
  stepsDefault: number;
  /** Most steps a member may ask for (never above the owner's hard cap). */
  stepsMax: number;
  /** Waiting jobs one member may have in this guild. */
  perMemberCap: number;
  /** Normalized (lowercase, accents stripped) words or phrases refused in prompts. */
  bannedWords: string[];
  /** Who may 🔁 a finished image besides moderators. */
  rerollWho: RerollWho;
  /** Roles whose members may change settings and cancel any job, besides Manage Server / Administrator. */
  moderatorRoleIds: string[];
  /** The safety rule for flagged pictures outside age-restricted channels. Default `strict`. */
  safetyMode: SafetyMode;
  /** In `strict` mode: refuse requests outside age-restricted channels when the model has no safety checker. Default false. */
  refuseUnchecked: boolean;
  /** Added to every request's negative prompt ('' for none). Default ''. */
  negativeDefault: string;
  /** Pictures per /imagine when the member gives no `count`. Default 1. */
  countDefault: number;
  /** Most pictures one /imagine may ask for (never above COUNT_HARD_CAP). Default 4. */
  countMax: number;
  /** The model /imagine uses when the member names none ('' for the bot's default model). Default ''. */
  modelDefault: string;
  /** Channels' own default models, by channel id; they win over `modelDefault`. Default none. */
  channelModels: Record<string, string>;
  /** Models members of this server may not use, by name. Default none. */
  modelsDenied: string[];
  /** A V button's img2img strength: how far a variation moves from its picture (0 < s ≤ 1). Default 0.6. */
  variationStrength: number;
}

/**
 * Most pictures one request may make, whatever a server says: four pictures and their grid are five files of a
 * message (Discord allows ten), and /imagine's `count` option offers 1 to 4.
 */
export const COUNT_HARD_CAP = 4;

/** The safety settings of a guild that changed nothing; SettingsStoreOptions.defaults may leave them out. */
export const SAFETY_DEFAULTS = Object.freeze({
  safetyMode: 'strict',
  refuseUnchecked: false,
  negativeDefault: '',
} as const satisfies Pick<GuildSettings, 'safetyMode' | 'refuseUnchecked' | 'negativeDefault'>);
type SafetyKey = keyof typeof SAFETY_DEFAULTS;

/** Pictures per request for a guild that changed nothing; SettingsStoreOptions.defaults may leave them out. */
export const COUNT_DEFAULTS = Object.freeze({ countDefault: 1, countMax: COUNT_HARD_CAP } as const satisfies Pick<GuildSettings, 'countDefault' | 'countMax'>);
/** The model choice of a guild that changed nothing: the bot's default model, every model allowed. */
export const MODEL_DEFAULTS = Object.freeze({ modelDefault: '', channelModels: {}, modelsDenied: [] }) as Pick<
  GuildSettings,
  'modelDefault' | 'channelModels' | 'modelsDenied'
>;
/** A V button's strength for a guild that changed nothing (issue 13: "strength 0.6 (a server setting)"). */
export const VARIATION_DEFAULTS = Object.freeze({ variationStrength: 0.6 } as const satisfies Pick<GuildSettings, 'variationStrength'>);
type DefaultedKey = SafetyKey | keyof typeof COUNT_DEFAULTS | keyof typeof MODEL_DEFAULTS | keyof typeof VARIATION_DEFAULTS;

export const SETTING_KEYS = [
  'stepsDefault',
  'stepsMax',
  'perMemberCap',
  'bannedWords',
  'rerollWho',
  'moderatorRoleIds',
  'safetyMode',
  'refuseUnchecked',
  'negativeDefault',
  'countDefault',
  'countMax',
  'modelDefault',
  'channelModels',
  'modelsDenied',
  'variationStrength',
] as const satisfies readonly (keyof GuildSettings)[];
export type SettingKey = (typeof SETTING_KEYS)[number];

export interface SettingsStoreOptions {
  /**
   * What a guild that changed nothing gets (the owner's .env values); safety keys left out get SAFETY_DEFAULTS,
   * count keys COUNT_DEFAULTS.
   */
  defaults: Omit<GuildSettings, DefaultedKey> & Partial<Pick<GuildSettings, DefaultedKey>>;
  /** The owner's ceiling on steps. A stored max above it (the owner lowered it later) reads as the cap. */
  hardStepsCap: number;
}

export interface AuditEntry {
  id: number;
  guildId: string;
  actorId: string;
  key: SettingKey;
  oldValue: unknown;
  newValue: unknown;
  /** Epoch milliseconds. */
  at: number;
}

export interface SettingsUpdate {
  before: GuildSettings;
  after: GuildSettings;
  /** One entry per key that changed; empty if the change was a no-op. */
  changes: AuditEntry[];
}

/**
 * Guild settings over SQLite: one row per key a guild has set (the owner's defaults fill the rest, so a later
 * change of a default reaches every guild that never touched it). Every write is one IMMEDIATE transaction that
 * reads, changes and audits, so two moderators changing settings at once cannot lose an update.
 */
export class SettingsStore {
  private readonly selectAll;
  private readonly upsert;
  private readonly insertAudit;
  private readonly selectAudit;

  constructor(
    private readonly db: Db,
    private readonly options: SettingsStoreOptions,
  ) {
    if (!Number.isInteger(options.hardStepsCap) || options.hardStepsCap < 1) {
      throw new RangeError(`Expected \`hardStepsCap\` to be a positive integer, got \`${options.hardStepsCap}\``);
    }
    this.selectAll = db.prepare('SELECT key, value FROM guild_settings WHERE guild_id = ?');
    this.upsert = db.prepare(`INSERT INTO guild_settings (guild_id, key, value, updated_by, updated_at)
      VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (guild_id, key) DO UPDATE SET value = excluded.value, updated_by = excluded.updated_by,
        updated_at = excluded.updated_at`);
    this.insertAudit = db.prepare(
      'INSERT INTO audit_log (guild_id, actor_id, key, old_value, new_value, at) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.selectAudit = db.prepare(
      'SELECT * FROM audit_log WHERE guild_id = ? AND id < ? ORDER BY id DESC LIMIT ?',
    );
  }

  get hardStepsCap(): number {
    return this.options.hardStepsCap;
  }

  /** The one way to read a guild's settings. */
  get(guildId: string): GuildSettings {
    const settings: GuildSettings = structuredClone({
      ...SAFETY_DEFAULTS,
      ...COUNT_DEFAULTS,
      ...MODEL_DEFAULTS,
      ...VARIATION_DEFAULTS,
      ...this.options.defaults,
    });
    for (const row of this.selectAll.all(guildId) as { key: string; value: string }[]) {
      if ((SETTING_KEYS as readonly string[]).includes(row.key)) {
        (settings as unknown as Record<string, unknown>)[row.key] = JSON.parse(row.value);
      }
    }
    // The owner's cap wins over a value stored before it was lowered.
    settings.stepsMax = Math.min(settings.stepsMax, this.options.hardStepsCap);
    settings.stepsDefault = Math.min(settings.stepsDefault, settings.stepsMax);
    settings.countMax = Math.min(settings.countMax, COUNT_HARD_CAP);
    settings.countDefault = Math.min(settings.countDefault, settings.countMax);
    return settings;
  }

  /**
   * Change a guild's settings atomically: `mutate` gets the current settings and returns the new ones (throw a
   * UserError to refuse; nothing is written). Each changed key is audited with who, old → new, and when.
   */
  update(guildId: string, actorId: string, mutate: (current: GuildSettings) => GuildSettings): SettingsUpdate {
    const run = this.db.transaction((): SettingsUpdate => {
      const before = this.get(guildId);
      const after = mutate(structuredClone(before));
      const at = Date.now();
      const changes: AuditEntry[] = [];
      for (const key of SETTING_KEYS) {
        const oldJson = JSON.stringify(before[key]);
        const newJson = JSON.stringify(after[key]);
        if (oldJson === newJson) continue;
        this.upsert.run(guildId, key, newJson, actorId, at);
        const info = this.insertAudit.run(guildId, actorId, key, oldJson, newJson, at);
        changes.push({
          id: Number(info.lastInsertRowid),
          guildId,
          actorId,
          key,
          oldValue: before[key],
          newValue: after[key],
          at,
        });
      }
      return { before, after: this.get(guildId), changes };
    });
    return run.immediate();
  }

  /** The guild's audit log, newest first. Page with `beforeId` (the last id of the previous page). */
  audit(guildId: string, options: { limit?: number; beforeId?: number } = {}): AuditEntry[] {
    const limit = options.limit ?? 20;
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
      throw new RangeError(`Expected \`limit\` to be an integer from 1 to 100, got \`${limit}\``);
    }
    const rows = this.selectAudit.all(guildId, options.beforeId ?? Number.MAX_SAFE_INTEGER, limit) as {
      id: number;
      guild_id: string;
      actor_id: string;
      key: SettingKey;
      old_value: string | null;
      new_value: string | null;
      at: number;
    }[];
    return rows.map((row) => ({
      id: row.id,
      guildId: row.guild_id,
      actorId: row.actor_id,
      key: row.key,
      oldValue: row.old_value === null ? undefined : JSON.parse(row.old_value),
      newValue: row.new_value === null ? undefined : JSON.parse(row.new_value),
      at: row.at,
    }));
  }
}
