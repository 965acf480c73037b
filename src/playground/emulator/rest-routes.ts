import {
  GatewayDispatchEvents,
  InteractionResponseType,
  InteractionType,
  MessageFlags,
  MessageType,
  ApplicationCommandType,
  type APIApplication,
  type APIApplicationCommand,
  type APIInteractionResponse,
  type APIUser,
  type RESTGetAPIGatewayBotResult,
  type RESTPostAPIInteractionCallbackWithResponseResult,
} from 'discord-api-types/v10';
import { ApiError, errors, formError } from './api-error.js';
import type { EmulatorClock } from './clock.js';
import { validateCommand, validateCommands } from './command-limits.js';
import type { DispatchInput } from './gateway.js';
import { allowedResponseTypes, tokenExpired, type InteractionState } from './interactions.js';
import { validateFiles, validateMessageBody } from './message-limits.js';
import type { MessageBody, MessageStore, StoredMessage } from './message-store.js';
import type { UploadedFile } from './multipart.js';
import type { RouteContext, RouteResult, Router } from './router.js';
import type { SnowflakeFactory } from './snowflake.js';
import type { World } from './world.js';

/** What the REST routes need from the emulator. */
export interface EmulatorCore {
  token: string;
  applicationId: string;
  bot: APIUser;
  world: World;
  store: MessageStore;
  ids: SnowflakeFactory;
  clock: EmulatorClock;
  interactionsById: Map<string, InteractionState>;
  interactionsByToken: Map<string, InteractionState>;
  /** Registered commands: key `global` or a guild id. */
  commands: Map<string, APIApplicationCommand[]>;
  settings: { interactionDeadlineMs: number; tokenLifetimeMs: number; attachmentSizeLimit: number };
  gatewayUrl(): string;
  /** Dispatches when a gateway session exists; a no-op before login. */
  dispatch(event: DispatchInput): void;
}

const ok = (json: unknown, status = 200): RouteResult => ({ status, json });
const noContent = (): RouteResult => ({ status: 204 });

/** Registers every REST v10 route the emulator answers. */
export function registerRoutes(router: Router, core: EmulatorCore): void {
  const { world, store } = core;

  // Gateway discovery (reference/discord-protocol.md: `max_concurrency` is required).
  router.add('GET', '/gateway', () => ok({ url: core.gatewayUrl() }), { auth: false });
  router.add('GET', '/gateway/bot', () => {
    const result: RESTGetAPIGatewayBotResult = {
      url: core.gatewayUrl(),
      shards: 1,
      session_start_limit: { total: 1000, remaining: 999, reset_after: 14_400_000, max_concurrency: 1 },
    };
    return ok(result);
  });

  router.add('GET', '/users/@me', () => ok(core.bot));
  router.add('GET', '/users/:userId', ({ params }) => {
    const user = world.users.get(params.userId);
    if (!user) throw errors.unknownUser();
    return ok(user);
  });
  const application = (): APIApplication => ({
    id: core.applicationId,
    name: core.bot.username,
    icon: null,
    description: '',
    bot_public: true,
    bot_require_code_grant: false,
    bot: core.bot,
    summary: '',
    verify_key: '0'.repeat(64),
    team: null,
    flags: 0 as APIApplication['flags'],
    flags_new: '0',
    approximate_guild_count: world.guilds.size,
  });
  router.add('GET', '/applications/@me', () => ok(application()));
  router.add('GET', '/oauth2/applications/@me', () => ok(application()));

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

  // Application commands, global and per guild.
  for (const scope of ['global', 'guild'] as const) {
    const base = scope === 'global' ? '/applications/:applicationId/commands' : '/applications/:applicationId/guilds/:guildId/commands';
    const key = (params: Record<string, string>) => {
      if (params.applicationId !== core.applicationId) throw new ApiError(403, 50001, 'Missing Access');
      return scope === 'global' ? 'global' : requireGuild(core, params.guildId);
    };
    router.add('GET', base, ({ params }) => ok(core.commands.get(key(params)) ?? []));
    router.add('PUT', base, ({ params, body }) => {
      const scopeKey = key(params);
      const definitions = validateCommands(body.json);
      const previous = core.commands.get(scopeKey) ?? [];
      const saved = definitions.map((d) => toCommand(core, d, scopeKey, previous));
      core.commands.set(scopeKey, saved);
      return ok(saved);
    });
    router.add('POST', base, ({ params, body }) => {
      const scopeKey = key(params);
      const definition = (body.json ?? {}) as Record<string, any>;
      validateCommand(definition, '');
      const previous = core.commands.get(scopeKey) ?? [];
      const saved = toCommand(core, definition, scopeKey, previous);
      const existed = previous.some((c) => c.id === saved.id);
      core.commands.set(scopeKey, [...previous.filter((c) => c.id !== saved.id), saved]);
      return ok(saved, existed ? 200 : 201);
    });
    router.add('GET', `${base}/:commandId`, ({ params }) => {
      const found = (core.commands.get(key(params)) ?? []).find((c) => c.id === params.commandId);
      if (!found) throw errors.unknownCommand();
      return ok(found);
    });
    router.add('DELETE', `${base}/:commandId`, ({ params }) => {
      const scopeKey = key(params);
      const list = core.commands.get(scopeKey) ?? [];
      if (!list.some((c) => c.id === params.commandId)) throw errors.unknownCommand();
      core.commands.set(scopeKey, list.filter((c) => c.id !== params.commandId));
      return noContent();
    });
  }

  // The interaction callback: the first response, with the 3 s deadline and one-answer rule.
  router.add(
    'POST',
    '/interactions/:interactionId/:token/callback',
    (ctx) => interactionCallback(core, ctx),
    { auth: false },
  );

  // Interaction webhooks: follow-ups and edits through the token, no bot Authorization.
  router.add('POST', '/webhooks/:applicationId/:token', (ctx) => followUp(core, ctx), { auth: false });
  const messageRoute = '/webhooks/:applicationId/:token/messages/:messageId';
  router.add('GET', messageRoute, ({ params }) => ok(webhookMessage(core, params).message), { auth: false });
  router.add(
    'PATCH',
    messageRoute,
    ({ params, body }) => {
      const state = requireWebhookInteraction(core, params);
      const stored = webhookMessage(core, params, state);
      const json = asMessageBody(body.json);
      checkMessage(json, body.files, state.attachmentSizeLimit, false);
      store.edit(stored, json, body.files);
      store.resolveLoading(stored);
      announceUpdate(core, stored);
      return ok(stored.message);
    },
    { auth: false },
  );
  router.add(
    'DELETE',
    messageRoute,
    ({ params }) => {
      const stored = webhookMessage(core, params);
      store.delete(stored);
      announceDelete(core, stored);
      return noContent();
    },
    { auth: false },
  );
}

function interactionCallback(core: EmulatorCore, { params, query, body }: RouteContext): RouteResult {
  const state = core.interactionsById.get(params.interactionId);
  if (!state || state.token !== params.token) throw errors.unknownInteraction();
  if (state.response) throw errors.alreadyAcknowledged();
  if (state.failed || core.clock.now() - state.createdAt > core.settings.interactionDeadlineMs) {
    // Past 3 s Discord has already shown "The application did not respond" and forgotten the token.
    state.failed = true;
    throw errors.unknownInteraction();
  }
  const response = (body.json ?? {}) as APIInteractionResponse;
  if (!allowedResponseTypes(state.type).includes(response.type)) {
    throw formError('type', 'INTERACTION_RESPONSE_TYPE_INVALID', `Value must be one of ${JSON.stringify(allowedResponseTypes(state.type))}.`);
  }
  const data = asMessageBody('data' in response ? response.data : undefined);
  let message: StoredMessage | undefined;
  switch (response.type) {
    case InteractionResponseType.ChannelMessageWithSource:
      checkMessage(data, body.files, state.attachmentSizeLimit, true);
      message = createInteractionMessage(core, state, data, body.files, false);
      state.originalMessageId = message.message.id;
      break;
    case InteractionResponseType.DeferredChannelMessageWithSource:
      // The "<bot> is thinking…" placeholder; only its ephemeral flag can be chosen now.
      message = createInteractionMessage(core, state, { content: '', flags: MessageFlags.Loading | ((data.flags ?? 0) & MessageFlags.Ephemeral) }, [], false);
      state.originalMessageId = message.message.id;
      break;
    case InteractionResponseType.DeferredMessageUpdate:
      message = core.store.get(componentMessageId(state));
      state.originalMessageId = componentMessageId(state);
      break;
    case InteractionResponseType.UpdateMessage: {
      checkMessage(data, body.files, state.attachmentSizeLimit, false);
      const target = core.store.get(componentMessageId(state));
      if (!target) throw errors.unknownMessage();
      message = core.store.edit(target, data, body.files);
      state.originalMessageId = target.message.id;
      announceUpdate(core, target);
      break;
    }
    default:
      break;
  }
  state.response = { type: response.type, at: core.clock.now() };
  if (message && response.type !== InteractionResponseType.DeferredMessageUpdate && response.type !== InteractionResponseType.UpdateMessage) {
    announceCreate(core, message);
  }
  if (query.get('with_response') !== 'true') return noContent();
  const result: RESTPostAPIInteractionCallbackWithResponseResult = {
    interaction: {
      id: state.id,
      type: state.type,
      ...(message
        ? {
            response_message_id: message.message.id,
            response_message_loading: Boolean((message.message.flags ?? 0) & MessageFlags.Loading),
            response_message_ephemeral: isEphemeral(message),
          }
        : {}),
    },
    ...(message ? { resource: { type: response.type, message: message.message } } : {}),
  };
  return ok(result);
}

function followUp(core: EmulatorCore, { params, query, body }: RouteContext): RouteResult {
  const state = requireWebhookInteraction(core, params);
  const data = asMessageBody(body.json);
  checkMessage(data, body.files, state.attachmentSizeLimit, true);
  const original = state.originalMessageId ? core.store.get(state.originalMessageId) : undefined;
  let stored: StoredMessage;
  if (original && (original.message.flags ?? 0) & MessageFlags.Loading) {
    // Discord turns the first follow-up after a defer into the deferred message itself.
    core.store.edit(original, data, body.files);
    core.store.resolveLoading(original);
    announceUpdate(core, original);
    stored = original;
  } else {
    stored = createInteractionMessage(core, state, data, body.files, true);
    state.followUpIds.push(stored.message.id);
    announceCreate(core, stored);
  }
  return query.get('wait') === 'true' ? ok(stored.message) : noContent();
}

function createInteractionMessage(core: EmulatorCore, state: InteractionState, data: MessageBody, files: UploadedFile[], isFollowUp: boolean): StoredMessage {
  const user = core.world.user(state.userId);
  const allowedFlags = MessageFlags.Ephemeral | MessageFlags.SuppressEmbeds | MessageFlags.SuppressNotifications | MessageFlags.Loading | MessageFlags.IsComponentsV2;
  return core.store.create({
    channelId: state.channelId,
    guildId: state.guildId,
    author: core.bot,
    body: { ...data, flags: (data.flags ?? 0) & allowedFlags },
    files,
    type: state.type === InteractionType.ApplicationCommand ? MessageType.ChatInputCommand : MessageType.Default,
    webhookId: core.applicationId,
    applicationId: core.applicationId,
    interactionId: state.id,
    extra: {
      interaction_metadata: state.payload.type === InteractionType.ApplicationCommand
        ? {
            id: state.id,
            type: InteractionType.ApplicationCommand,
            user,
            authorizing_integration_owners: state.payload.authorizing_integration_owners,
            ...(isFollowUp && state.originalMessageId ? { original_response_message_id: state.originalMessageId } : {}),
          }
        : {
            id: state.id,
            type: InteractionType.MessageComponent,
            user,
            authorizing_integration_owners: state.payload.authorizing_integration_owners,
            // Only a component's interaction gets here with a message (an autocomplete never creates one).
            interacted_message_id: state.payload.message?.id ?? state.id,
            ...(isFollowUp && state.originalMessageId ? { original_response_message_id: state.originalMessageId } : {}),
          },
    },
  });
}

/** The interaction behind a webhook URL, with Discord's answers for a wrong, expired or unanswered token. */
function requireWebhookInteraction(core: EmulatorCore, params: Record<string, string>): InteractionState {
  if (params.applicationId !== core.applicationId) throw errors.unknownWebhook();
  const state = core.interactionsByToken.get(params.token);
  if (!state) throw errors.invalidWebhookToken();
  // Discord answers an expired interaction token with 401 / 50027 "Invalid Webhook Token"
  // (discord/discord-api-docs#6851: 404 inside the 15 min window for a bad token, 401 after it;
  // discordjs/discord.js#8335 shows the 50027). Webhook routes carry no bot token, so discord.js
  // (auth: false) keeps its own token.
  if (tokenExpired(state, core.clock, core.settings.tokenLifetimeMs)) throw errors.invalidWebhookToken();
  if (!state.response || state.failed) throw errors.unknownWebhook();
  return state;
}

function webhookMessage(core: EmulatorCore, params: Record<string, string>, state = requireWebhookInteraction(core, params)): StoredMessage {
  const id = params.messageId === '@original' ? state.originalMessageId : params.messageId;
  const known = id !== undefined && (id === state.originalMessageId || state.followUpIds.includes(id));
  const stored = known ? core.store.get(id) : undefined;
  if (!stored) throw errors.unknownMessage();
  return stored;
}

function componentMessageId(state: InteractionState): string {
  const message = 'message' in state.payload ? state.payload.message : undefined;
  if (!message) throw errors.unknownMessage();
  return message.id;
}

function requireGuild(core: EmulatorCore, guildId: string): string {
  if (!core.world.guilds.has(guildId)) throw errors.unknownGuild();
  return guildId;
}

function requireChannel(core: EmulatorCore, channelId: string) {
  const found = core.world.findChannel(channelId);
  if (!found) throw errors.unknownChannel();
  return found;
}

/** A message of that channel that the bot can see (ephemeral ones are not fetchable by channel routes). */
function requireChannelMessage(core: EmulatorCore, params: Record<string, string>): StoredMessage {
  requireChannel(core, params.channelId);
  const stored = core.store.get(params.messageId);
  if (!stored || stored.message.channel_id !== params.channelId || isEphemeral(stored)) throw errors.unknownMessage();
  return stored;
}

function isEphemeral(stored: StoredMessage): boolean {
  return Boolean((stored.message.flags ?? 0) & MessageFlags.Ephemeral);
}

function asMessageBody(json: unknown): MessageBody {
  if (json === undefined || json === null) return {};
  if (typeof json !== 'object' || Array.isArray(json)) throw formError('', 'DICT_TYPE_CONVERT', 'Only dictionaries may be used in a DictType');
  return json as MessageBody;
}

/** Limits, upload size and (for new messages) Discord's "Cannot send an empty message". */
function checkMessage(body: MessageBody, files: UploadedFile[], fileLimit: number, creating: boolean): void {
  validateMessageBody(body);
  validateFiles(files, fileLimit);
  if (!creating) return;
  const hasContent = typeof body.content === 'string' && body.content.trim().length > 0;
  const hasEmbeds = Array.isArray(body.embeds) && body.embeds.length > 0;
  const hasComponents = Array.isArray(body.components) && body.components.length > 0;
  const hasStickers = Array.isArray((body as { sticker_ids?: unknown[] }).sticker_ids) && (body as { sticker_ids: unknown[] }).sticker_ids.length > 0;
  if (!hasContent && !hasEmbeds && !hasComponents && !hasStickers && files.length === 0) throw errors.emptyMessage();
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

function announceCreate(core: EmulatorCore, stored: StoredMessage): void {
  if (isEphemeral(stored)) return;
  const guildId = core.world.findChannel(stored.message.channel_id)?.guild.id;
  core.dispatch({ t: GatewayDispatchEvents.MessageCreate, d: { ...stored.message, ...(guildId ? { guild_id: guildId } : {}) } });
}

function announceUpdate(core: EmulatorCore, stored: StoredMessage): void {
  if (isEphemeral(stored)) return;
  const guildId = core.world.findChannel(stored.message.channel_id)?.guild.id;
  core.dispatch({ t: GatewayDispatchEvents.MessageUpdate, d: { ...stored.message, ...(guildId ? { guild_id: guildId } : {}) } });
}

function announceDelete(core: EmulatorCore, stored: StoredMessage): void {
  if (isEphemeral(stored)) return;
  const guildId = core.world.findChannel(stored.message.channel_id)?.guild.id;
  core.dispatch({
    t: GatewayDispatchEvents.MessageDelete,
    d: { id: stored.message.id, channel_id: stored.message.channel_id, ...(guildId ? { guild_id: guildId } : {}) },
  });
}

function toCommand(core: EmulatorCore, definition: Record<string, any>, scopeKey: string, previous: APIApplicationCommand[]): APIApplicationCommand {
  const type = definition.type ?? ApplicationCommandType.ChatInput;
  const existing = previous.find((c) => c.name === definition.name && c.type === type);
  return {
    ...definition,
    id: existing?.id ?? core.ids.next(),
    application_id: core.applicationId,
    ...(scopeKey === 'global' ? {} : { guild_id: scopeKey }),
    type,
    name: definition.name,
    description: definition.description ?? '',
    default_member_permissions: definition.default_member_permissions ?? null,
    version: core.ids.next(),
  } as APIApplicationCommand;
}
