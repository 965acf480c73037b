/**
 * Changes to the emulated world that a connected client hears of, as from Discord: a role, a channel, a thread, a
 * whole guild (on a chosen shard). DiscordEmulator's world-building methods (index.ts) are these, on its parts.
 */
import { GatewayDispatchEvents, type APIRole, type APITextChannel, type APIThreadChannel } from 'discord-api-types/v10';
import type { EmulatorDefaults } from './defaults.js';
import { shardOfGuild, type Gateway } from './gateway.js';
import { SnowflakeFactory } from './snowflake.js';
import { BOT_PERMISSIONS, type World } from './world.js';

/** The parts of an emulator that world building changes and tells. */
export interface WorldParts {
  readonly world: World;
  readonly gateway: Gateway;
  readonly ids: SnowflakeFactory;
  readonly defaults: EmulatorDefaults;
}

/** A role, then GUILD_ROLE_CREATE. */
export function createRole(parts: WorldParts, options: { name: string; permissions: bigint; guildId?: string }): APIRole {
  const guildId = options.guildId ?? parts.defaults.guildId;
  const role = parts.world.createRole(guildId, options);
  parts.gateway.dispatchIfConnected({ t: GatewayDispatchEvents.GuildRoleCreate, d: { guild_id: guildId, role } });
  return role;
}

/** A text channel, then CHANNEL_CREATE. */
export function createTextChannel(parts: WorldParts, options: { name: string; guildId?: string; nsfw?: boolean }): APITextChannel {
  const channel = parts.world.createTextChannel(options.guildId ?? parts.defaults.guildId, options);
  parts.gateway.dispatchIfConnected({ t: GatewayDispatchEvents.ChannelCreate, d: { ...channel, guild_id: channel.guild_id! } });
  return channel;
}

/** A public thread, then THREAD_CREATE. */
export function createThread(parts: WorldParts, options: { parentId: string; name: string; guildId?: string }): APIThreadChannel {
  const thread = parts.world.createThread(options.guildId ?? parts.defaults.guildId, options);
  parts.gateway.dispatchIfConnected({
    t: GatewayDispatchEvents.ThreadCreate,
    d: { ...structuredClone(thread), guild_id: thread.guild_id!, newly_created: true },
  });
  return thread;
}

/** A guild like the default one, its id on `shard` when given, then GUILD_CREATE (see DiscordEmulator.createGuild). */
export function createGuild(parts: WorldParts, options: { name: string; shard?: number }): { guildId: string; channelId: string } {
  const { world, gateway, ids, defaults } = parts;
  const numShards = gateway.recommendedShards;
  if (options.shard !== undefined && (!Number.isInteger(options.shard) || options.shard < 0 || options.shard >= numShards)) {
    throw new Error(`Expected \`shard\` to be an integer from 0 to ${numShards - 1} (the emulator's \`shards\` option), got \`${options.shard}\``);
  }
  let id = ids.next();
  // A snowflake's bits above 22 are its milliseconds: step back one ms at a time until the formula agrees.
  while (options.shard !== undefined && shardOfGuild(id, numShards) !== options.shard) {
    id = ids.next(SnowflakeFactory.timestamp(id) - 1);
  }
  const guild = world.createGuild({ id, name: options.name, ownerId: defaults.users.owner.id });
  const botRole = world.createRole(guild.id, { name: world.user(defaults.botUserId).username, permissions: BOT_PERMISSIONS, managed: true, botId: defaults.botUserId });
  const channel = world.createTextChannel(guild.id, { name: 'general' });
  world.addMember(guild.id, defaults.botUserId, [botRole.id]);
  for (const user of [defaults.users.owner, defaults.users.alice, defaults.users.bob]) world.addMember(guild.id, user.id);
  gateway.dispatchIfConnected({ t: GatewayDispatchEvents.GuildCreate, d: world.guildCreate(guild.id) });
  return { guildId: guild.id, channelId: channel.id };
}
