/**
 * The discord.js client with what the bot needs and nothing more: no privileged intent, partials so reactions
 * on messages it never cached (older ones, or from before a restart) still arrive, and mentions off by default.
 */
import { Client, GatewayIntentBits, Partials, type ClientOptions } from 'discord.js';

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
