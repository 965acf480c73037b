import { GatewayDispatchEvents } from 'discord-api-types/v10';
import { ApiError, errors } from '../api-error.js';
import type { StoredMessage } from '../message-store.js';
import type { Router } from '../router.js';
import {
  announceDelete,
  announceUpdate,
  asMessageBody,
  checkMessage,
  isEphemeral,
  noContent,
  ok,
  requireChannel,
  requireChannelMessage,
  requireGuild,
  type EmulatorCore,
} from './shared.js';

/** Guilds (read-only), channels, their messages and reactions. */
export function registerChannelRoutes(router: Router, core: EmulatorCore): void {
  const { world, store } = core;

  // Guilds, read-only.
  router.add('GET', '/guilds/:guildId', ({ params }) => ok(world.apiGuild(requireGuild(core, params.guildId))));
  router.add('GET', '/guilds/:guildId/roles', ({ params }) => ok(world.guild(requireGuild(core, params.guildId)).roles));
  router.add('GET', '/guilds/:guildId/channels', ({ params }) => ok(world.guild(requireGuild(core, params.guildId)).channels));
  router.add('GET', '/guilds/:guildId/members/:userId', ({ params }) => {
    const guild = world.guild(requireGuild(core, params.guildId));
    if (!guild.members.has(params.userId)) throw errors.unknownMember();
    return ok(world.apiMember(guild.id, params.userId));
  });

  // Channels and their messages.
  router.add('GET', '/channels/:channelId', ({ params }) => ok(requireChannel(core, params.channelId).channel));
  router.add('GET', '/channels/:channelId/messages', ({ params, query }) => {
    requireChannel(core, params.channelId);
    const limit = Math.min(Number(query.get('limit') ?? 50), 100);
    const before = query.get('before');
    const after = query.get('after');
    // Newest first by snowflake, like Discord; `before` / `after` page by id.
    const visible = store
      .list(params.channelId)
      .filter((m) => !isEphemeral(m))
      .filter((m) => (before ? BigInt(m.message.id) < BigInt(before) : true) && (after ? BigInt(m.message.id) > BigInt(after) : true))
      .sort((a, b) => (BigInt(b.message.id) > BigInt(a.message.id) ? 1 : -1));
    return ok(visible.slice(0, limit).map((m) => m.message));
  });
  router.add('POST', '/channels/:channelId/messages', ({ params, body }) => {
    const { guild } = requireChannel(core, params.channelId);
    const json = asMessageBody(body.json);
    checkMessage(json, body.files, core.settings.attachmentSizeLimit, true);
    const stored = store.create({ channelId: params.channelId, guildId: guild.id, author: core.bot, body: json, files: body.files });
    core.dispatch({ t: GatewayDispatchEvents.MessageCreate, d: { ...stored.message, guild_id: guild.id } });
    return ok(stored.message);
  });
  router.add('GET', '/channels/:channelId/messages/:messageId', ({ params }) => ok(requireChannelMessage(core, params).message));
  router.add('PATCH', '/channels/:channelId/messages/:messageId', ({ params, body }) => {
    const stored = requireChannelMessage(core, params);
    if (stored.message.author.id !== core.bot.id) {
      throw new ApiError(403, 50005, 'Cannot edit a message authored by another user');
    }
    const json = asMessageBody(body.json);
    checkMessage(json, body.files, core.settings.attachmentSizeLimit, false);
    store.edit(stored, json, body.files);
    announceUpdate(core, stored);
    return ok(stored.message);
  });
  router.add('DELETE', '/channels/:channelId/messages/:messageId', ({ params }) => {
    const stored = requireChannelMessage(core, params);
    store.delete(stored);
    announceDelete(core, stored);
    return noContent();
  });

  // Reactions: the emoji segment arrives URL-encoded and is decoded by the router.
  const reactionRoute = '/channels/:channelId/messages/:messageId/reactions/:emoji';
  router.add('PUT', `${reactionRoute}/@me`, ({ params }) => {
    const stored = requireChannelMessage(core, params);
    const emoji = parseEmoji(params.emoji);
    addReaction(core, stored, emoji, core.bot.id);
    return noContent();
  });
  router.add('DELETE', `${reactionRoute}/@me`, ({ params }) => {
    const stored = requireChannelMessage(core, params);
    removeReaction(core, stored, parseEmoji(params.emoji), core.bot.id);
    return noContent();
  });
  router.add('DELETE', `${reactionRoute}/:userId`, ({ params }) => {
    const stored = requireChannelMessage(core, params);
    removeReaction(core, stored, parseEmoji(params.emoji), params.userId);
    return noContent();
  });
  router.add('GET', reactionRoute, ({ params }) => {
    const stored = requireChannelMessage(core, params);
    const users = [...(stored.reactions.get(parseEmoji(params.emoji).key) ?? [])];
    return ok(users.map((id) => world.users.get(id)).filter(Boolean));
  });
}

export interface ParsedEmoji {
  key: string;
  id: string | null;
  name: string;
  animated: boolean;
}

/** `🔁` or `name:id` / `a:name:id`; anything else is Discord's 10014 Unknown Emoji. */
export function parseEmoji(raw: string): ParsedEmoji {
  const custom = /^(a:)?([\w~]{2,32}):(\d{17,20})$/.exec(raw);
  if (custom) return { key: `${custom[2]}:${custom[3]}`, id: custom[3], name: custom[2], animated: Boolean(custom[1]) };
  // A unicode emoji has at least one non-ASCII code point; plain words like `repeat` are refused.
  if (raw.length === 0 || /^[\x00-\x7f]*$/.test(raw) || /\s/.test(raw)) throw errors.unknownEmoji();
  return { key: raw, id: null, name: raw, animated: false };
}

/** Stores a reaction and sends MESSAGE_REACTION_ADD, as Discord does for every reaction, the bot's own included. */
export function addReaction(core: EmulatorCore, stored: StoredMessage, emoji: ParsedEmoji, userId: string, burst = false): void {
  const users = stored.reactions.get(emoji.key) ?? new Set<string>();
  if (users.has(userId)) return;
  users.add(userId);
  stored.reactions.set(emoji.key, users);
  syncReactions(core, stored);
  const guildId = core.world.findChannel(stored.message.channel_id)?.guild.id;
  const member = guildId && core.world.guild(guildId).members.has(userId) ? core.world.apiMember(guildId, userId) : undefined;
  core.dispatch({
    t: GatewayDispatchEvents.MessageReactionAdd,
    d: {
      user_id: userId,
      channel_id: stored.message.channel_id,
      message_id: stored.message.id,
      ...(guildId ? { guild_id: guildId } : {}),
      ...(member ? { member } : {}),
      emoji: { id: emoji.id, name: emoji.name, ...(emoji.id ? { animated: emoji.animated } : {}) },
      message_author_id: stored.message.author.id,
      burst,
      burst_colors: [],
      type: burst ? 1 : 0,
    },
  });
}

export function removeReaction(core: EmulatorCore, stored: StoredMessage, emoji: ParsedEmoji, userId: string): void {
  const users = stored.reactions.get(emoji.key);
  if (!users?.delete(userId)) return;
  if (users.size === 0) stored.reactions.delete(emoji.key);
  syncReactions(core, stored);
  const guildId = core.world.findChannel(stored.message.channel_id)?.guild.id;
  core.dispatch({
    t: GatewayDispatchEvents.MessageReactionRemove,
    d: {
      user_id: userId,
      channel_id: stored.message.channel_id,
      message_id: stored.message.id,
      ...(guildId ? { guild_id: guildId } : {}),
      emoji: { id: emoji.id, name: emoji.name },
      burst: false,
      type: 0,
    },
  });
}

/** Keeps `message.reactions` (what GET returns) in step with the reaction sets. */
function syncReactions(core: EmulatorCore, stored: StoredMessage): void {
  const reactions = [...stored.reactions.entries()].map(([key, users]) => {
    const [name, id] = key.includes(':') ? key.split(':') : [key, null];
    return {
      count: users.size,
      count_details: { burst: 0, normal: users.size },
      me: users.has(core.bot.id),
      me_burst: false,
      burst_colors: [],
      emoji: { id: id ?? null, name },
    };
  });
  if (reactions.length > 0) stored.message.reactions = reactions;
  else delete stored.message.reactions;
  core.store.changed(stored);
}
