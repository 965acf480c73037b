import { GatewayDispatchEvents } from 'discord-api-types/v10';
import type { EmulatorDefaults } from './defaults.js';
import { shardOfGuild, type GatewayOptions } from './gateway.js';
import type { World } from './world.js';

/** How the gateway greets a session from the world (READY, GUILD_CREATE) and answers REQUEST_GUILD_MEMBERS. */
export function worldGatewayHooks(
  world: World,
  defaults: EmulatorDefaults,
  resumeUrl: () => string,
): Pick<GatewayOptions, 'onIdentify' | 'onRequestGuildMembers'> {
  return {
    onIdentify: (session, gateway) => {
      // A shard is told only of the guilds it holds (https://discord.com/developers/docs/events/gateway#sharding).
      const [shardId, numShards] = session.shard;
      const guildIds = [...world.guilds.keys()].filter((id) => shardOfGuild(id, numShards) === shardId);
      gateway.dispatchTo(session, {
        t: GatewayDispatchEvents.Ready,
        d: {
          v: 10,
          user: world.user(defaults.botUserId),
          guilds: guildIds.map((id) => ({ id, unavailable: true })),
          session_id: session.id,
          resume_gateway_url: resumeUrl(),
          shard: [shardId, numShards],
          application: { id: defaults.applicationId, flags: 0 as never, flags_new: '0' },
        },
      });
      for (const id of guildIds) gateway.dispatchTo(session, { t: GatewayDispatchEvents.GuildCreate, d: world.guildCreate(id) });
    },
    onRequestGuildMembers: (session, data, gateway) => {
      const guild = world.guilds.get(data.guild_id);
      if (!guild) return;
      const wanted = 'user_ids' in data ? new Set([data.user_ids].flat()) : undefined;
      const query = 'query' in data ? data.query.toLowerCase() : '';
      const limit = 'limit' in data && data.limit > 0 ? data.limit : Number.POSITIVE_INFINITY;
      const ids = [...guild.members.keys()].filter((id) =>
        wanted ? wanted.has(id) : world.user(id).username.toLowerCase().startsWith(query),
      );
      gateway.dispatchTo(session, {
        t: GatewayDispatchEvents.GuildMembersChunk,
        d: {
          guild_id: guild.id,
          members: ids.slice(0, limit).map((id) => world.apiMember(guild.id, id)),
          chunk_index: 0,
          chunk_count: 1,
          ...(wanted ? { not_found: [...wanted].filter((id) => !guild.members.has(id)) } : {}),
          ...(data.nonce ? { nonce: data.nonce } : {}),
        },
      });
    },
  };
}
