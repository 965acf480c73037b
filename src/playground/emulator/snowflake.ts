import type { EmulatorClock } from './clock.js';

/** 2015-01-01T00:00:00Z, the epoch of Discord snowflakes (discord.com/developers/docs/reference#snowflakes). */
const DISCORD_EPOCH = 1_420_070_400_000n;

/**
 * Makes real-looking snowflakes (19 digits today), increasing and unique within one emulator, so
 * discord.js's rate-limit buckets and `SnowflakeUtil.timestampFrom` behave as against Discord.
 */
export class SnowflakeFactory {
  #increment = 0n;

  constructor(private readonly clock: EmulatorClock) {}

  /** A new id; `atMs` (ms since the Unix epoch) backdates it, e.g. for a message sent yesterday. */
  next(atMs?: number): string {
    const ms = BigInt(Math.floor(atMs ?? this.clock.now())) - DISCORD_EPOCH;
    // Worker id 1, process id 0, 12-bit increment: the layout Discord documents.
    const id = (ms << 22n) | (1n << 17n) | (this.#increment++ & 0xfffn);
    return id.toString();
  }

  /** The creation time encoded in a snowflake, in ms since the Unix epoch. */
  static timestamp(id: string): number {
    return Number((BigInt(id) >> 22n) + DISCORD_EPOCH);
  }
}
