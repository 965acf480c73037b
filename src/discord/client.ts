/**
 * The discord.js client with what the bot needs and nothing more: no privileged intent, partials so reactions
 * on messages it never cached (older ones, or from before a restart) still arrive, and mentions off by default.
 */
import { Client, GatewayIntentBits, Partials, PermissionFlagsBits, Status, type ClientOptions } from 'discord.js';

/** What the bot needs in a channel: see it, post, embed, attach the picture, react, and read replies' targets. */
export const BOT_PERMISSIONS =
  PermissionFlagsBits.ViewChannel |
  PermissionFlagsBits.SendMessages |
  PermissionFlagsBits.EmbedLinks |
  PermissionFlagsBits.AttachFiles |
  PermissionFlagsBits.AddReactions |
  PermissionFlagsBits.ReadMessageHistory;

/** The link a server owner opens to add the bot with exactly those permissions and its slash commands. */
export function inviteUrl(applicationId: string): string {
  const query = new URLSearchParams({
    client_id: applicationId,
    scope: 'bot applications.commands',
    permissions: BOT_PERMISSIONS.toString(),
  });
  return `https://discord.com/oauth2/authorize?${query}`;
}

export interface CreateClientOptions {
  /** REST base (DISCORD_API_URL); gateway discovery goes through it too. Undefined: Discord. */
  apiUrl?: string;
  /** Extra client options (tests pass a `ws` identify throttler). */
  extra?: Partial<ClientOptions>;
}

export function createClient(options: CreateClientOptions = {}): Client {
  const { extra = {} } = options;
  return new Client({
    intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessageReactions],
    partials: [Partials.Message, Partials.Reaction, Partials.Channel, Partials.User, Partials.GuildMember],
    allowedMentions: { parse: [], repliedUser: false },
    ...extra,
    rest: { ...(options.apiUrl ? { api: options.apiUrl } : {}), ...extra.rest },
  });
}

/** Every gateway shard is connected and ready (false while connecting, resuming, or after destroy). */
export function gatewayConnected(client: Client): boolean {
  const { shards } = client.ws;
  return shards.size > 0 && shards.every((shard) => shard.status === Status.Ready);
}
