import type { Logger } from '../../log.js';
import type { RateLimitRule } from './rate-limits.js';

/** Options for `DiscordEmulator.start` (index.ts). */
export interface EmulatorOptions {
  /** The bot token clients must present. Default: a fake token in Discord's format whose first part is the bot's id. */
  token?: string;
  /** Time to the first interaction response, on the emulator clock. Default 3000 (Discord's 3 s). */
  interactionDeadlineMs?: number;
  /** Interaction token lifetime, on the emulator clock. Default 900 000 (Discord's 15 min). */
  tokenLifetimeMs?: number;
  /** HELLO's heartbeat interval. Default 41 250 (Discord's usual value). */
  heartbeatIntervalMs?: number;
  /** Rate-limit buckets. Default `defaultRateLimitRules()`; `[]` leaves only a generous default bucket. */
  rateLimits?: RateLimitRule[];
  /** Per-file upload cap for channel messages and new interactions. Default 10 MiB. */
  attachmentSizeLimit?: number;
  /** Whole-request body cap before the emulator answers 413. Default 30 MiB. */
  maxRequestBytes?: number;
  /**
   * Rewrite `attachment://name` in embed images to the upload's URL with its size, as Discord
   * returns them. Default false: embeds are stored as sent, so tests can read the reference back.
   */
  resolveAttachmentUrls?: boolean;
  /**
   * Privileged intents the application has switched on (GuildMembers, GuildPresences,
   * MessageContent). Default none: identifying with one closes the gateway with 4014, as Discord does.
   */
  privilegedIntents?: number;
  /**
   * `GET /gateway/bot`'s recommended shard count. Default 1. Each IDENTIFY names its own `shard: [id, count]`;
   * guild events go only to the session of shard `(guild_id >> 22) % count`, others (DMs) to shard 0.
   */
  shards?: number;
  /** Port on 127.0.0.1. Default 0: an ephemeral port. A port in use rejects `start()` with EADDRINUSE. */
  port?: number;
  /** The bot user's name. Default `imagine-test-bot`. */
  botUsername?: string;
  /** The default guild's name. Default `Emulated Guild`. */
  guildName?: string;
  /** Where the emulator reports its own trouble (a handler that crashed, a route it does not know). Default: the project's logger at `warn`. */
  logger?: Logger;
}
