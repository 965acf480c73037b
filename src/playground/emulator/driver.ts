import { GatewayDispatchEvents, InteractionType, MessageType, type APIApplicationCommand, type APIEmbed } from 'discord-api-types/v10';
import type { CallLog } from './call-log.js';
import type { EmulatorDefaults } from './defaults.js';
import type { Gateway } from './gateway.js';
import {
  baseGuildInteraction,
  buttonData,
  chatInputData,
  InteractionHandle,
  type InteractionState,
  type SendAutocompleteOptions,
  type SendButtonOptions,
  type SendCommandOptions,
} from './interactions.js';
import type { StoredMessage } from './message-store.js';
import type { UploadedFile } from './multipart.js';
import { addReaction, parseEmoji, removeReaction, type EmulatorCore } from './rest-routes.js';

/** Options of {@link BotDriver.seedMessage} (and `DiscordEmulator.seedMessage`). */
export interface SeedMessageOptions {
  channelId?: string;
  authorId?: string;
  content?: string;
  embeds?: APIEmbed[];
  files?: { name: string; bytes: Buffer; contentType?: string }[];
  referenceMessageId?: string;
  /** When it was posted; its snowflake encodes this time. Default now. */
  createdAt?: Date;
}

/**
 * What people do to the bot, behind `DiscordEmulator`'s "driving the bot" methods: slash commands and button
 * clicks (INTERACTION_CREATE with a handle on the responses), reactions, and messages seeded without an event.
 */
export class BotDriver {
  readonly #core: EmulatorCore;
  readonly #gateway: Gateway;
  readonly #log: CallLog;
  readonly #defaults: EmulatorDefaults;

  constructor(core: EmulatorCore, gateway: Gateway, log: CallLog, defaults: EmulatorDefaults) {
    this.#core = core;
    this.#gateway = gateway;
    this.#log = log;
    this.#defaults = defaults;
  }

  /** Sends a slash command as INTERACTION_CREATE and returns a handle on its responses. */
  sendCommand(options: SendCommandOptions): InteractionHandle {
    const guildId = options.guildId ?? this.#defaults.guildId;
    const command = this.#findCommand(options.name, guildId);
    const state = this.#newInteraction(InteractionType.ApplicationCommand, options, guildId, options.channelId ?? this.#defaults.channelId);
    state.payload = {
      ...this.#interactionBase(state, options),
      type: InteractionType.ApplicationCommand,
      data: chatInputData(options.name, command, options.options, this.#core.ids.next(), this.#core.uploads),
    };
    return this.#send(state);
  }

  /**
   * Sends an autocomplete (INTERACTION_CREATE type 4): the command as typed so far, `focused` naming the option
   * being typed. The bot answers with type 8 (its choices are in `waitForResponse()`'s body).
   */
  sendAutocomplete(options: SendAutocompleteOptions): InteractionHandle {
    const guildId = options.guildId ?? this.#defaults.guildId;
    const command = this.#findCommand(options.name, guildId);
    const state = this.#newInteraction(InteractionType.ApplicationCommandAutocomplete, options, guildId, options.channelId ?? this.#defaults.channelId);
    const data = chatInputData(options.name, command, options.options, this.#core.ids.next());
    state.payload = {
      ...this.#interactionBase(state, options),
      type: InteractionType.ApplicationCommandAutocomplete,
      data: { ...data, options: focusOption(data.options ?? [], options.focused) },
    } as InteractionState['payload'];
    return this.#send(state);
  }

  /** Sends a button click (INTERACTION_CREATE type 3) on a stored message. */
  sendButton(options: SendButtonOptions): InteractionHandle {
    const stored = this.#core.store.get(options.messageId);
    if (!stored) throw new Error(`Expected a stored message id, got \`${options.messageId}\``);
    const channelId = stored.message.channel_id;
    const guildId = options.guildId ?? this.#core.world.findChannel(channelId)?.guild.id ?? this.#defaults.guildId;
    const state = this.#newInteraction(InteractionType.MessageComponent, options, guildId, channelId);
    state.payload = {
      ...this.#interactionBase(state, options),
      type: InteractionType.MessageComponent,
      message: stored.message,
      data: buttonData(options.customId),
    };
    return this.#send(state);
  }

  /** A member reacts: stores the reaction and dispatches MESSAGE_REACTION_ADD with `member`. */
  addReaction(options: { userId: string; messageId: string; emoji: string; channelId?: string; burst?: boolean }): void {
    const stored = this.#requireMessage(options.messageId, options.channelId);
    addReaction(this.#core, stored, parseEmoji(options.emoji), options.userId, options.burst ?? false);
  }

  removeReaction(options: { userId: string; messageId: string; emoji: string; channelId?: string }): void {
    const stored = this.#requireMessage(options.messageId, options.channelId);
    removeReaction(this.#core, stored, parseEmoji(options.emoji), options.userId);
  }

  /**
   * Puts a message in a channel without telling the client (no MESSAGE_CREATE), like one sent
   * before the bot started. Default author: the bot; `files` become attachments.
   */
  seedMessage(options: SeedMessageOptions): StoredMessage {
    const channelId = options.channelId ?? this.#defaults.channelId;
    const found = this.#core.world.findChannel(channelId);
    if (!found) throw new Error(`Expected a known channel id, got \`${channelId}\``);
    const files: UploadedFile[] = (options.files ?? []).map((f, i) => ({
      field: `files[${i}]`,
      name: f.name,
      contentType: f.contentType ?? 'image/png',
      bytes: f.bytes,
    }));
    return this.#core.store.create({
      channelId,
      guildId: found.guild.id,
      author: this.#core.world.user(options.authorId ?? this.#defaults.botUserId),
      body: {
        content: options.content ?? '',
        embeds: options.embeds ?? [],
        ...(options.referenceMessageId ? { message_reference: { message_id: options.referenceMessageId } } : {}),
      },
      files,
      type: MessageType.Default,
      createdAt: options.createdAt,
    });
  }

  #findCommand(name: string, guildId: string): APIApplicationCommand | undefined {
    const byName = (c: APIApplicationCommand) => c.name === name && c.type === 1;
    return this.#core.commands.get(guildId)?.find(byName) ?? this.#core.commands.get('global')?.find(byName);
  }

  #newInteraction(type: InteractionType, options: SendCommandOptions | SendButtonOptions, guildId: string, channelId: string): InteractionState {
    const id = this.#core.ids.next();
    // Real tokens are long opaque strings; keep the shape so URL handling is exercised.
    const token = `aW50ZXJhY3Rpb246${id}:${Buffer.from(id).toString('base64url')}${'x'.repeat(120)}`;
    const state: InteractionState = {
      id,
      token,
      type,
      applicationId: this.#defaults.applicationId,
      guildId,
      channelId,
      userId: options.userId ?? this.#defaults.users.alice.id,
      createdAt: this.#core.clock.now(),
      attachmentSizeLimit: options.attachmentSizeLimit ?? this.#core.settings.attachmentSizeLimit,
      payload: undefined as never,
      response: undefined,
      originalMessageId: undefined,
      followUpIds: [],
      forcedExpired: false,
      failed: false,
    };
    return state;
  }

  #interactionBase(state: InteractionState, options: SendCommandOptions | SendButtonOptions) {
    return baseGuildInteraction(this.#core.world, {
      id: state.id,
      token: state.token,
      applicationId: state.applicationId,
      botUserId: this.#defaults.botUserId,
      guildId: state.guildId,
      channelId: state.channelId,
      userId: state.userId,
      roles: options.roles,
      permissions: options.permissions,
      appPermissions: options.appPermissions,
      attachmentSizeLimit: state.attachmentSizeLimit,
      locale: options.locale,
    });
  }

  #send(state: InteractionState): InteractionHandle {
    this.#core.interactionsById.set(state.id, state);
    this.#core.interactionsByToken.set(state.token, state);
    // The deadline starts when Discord sends the event, as here.
    state.createdAt = this.#core.clock.now();
    this.#gateway.dispatch({ t: GatewayDispatchEvents.InteractionCreate, d: state.payload });
    return new InteractionHandle(state, this.#log, this.#core.store, this.#core.clock, () => this.#core.settings.interactionDeadlineMs);
  }

  #requireMessage(messageId: string, channelId?: string): StoredMessage {
    const stored = this.#core.store.get(messageId);
    if (!stored || (channelId !== undefined && stored.message.channel_id !== channelId)) {
      throw new Error(`Expected a stored message \`${messageId}\`${channelId ? ` in channel \`${channelId}\`` : ''}`);
    }
    return stored;
  }
}

/** The options with `focused: true` on the one named `name`, at any depth (subcommands nest options). */
function focusOption<O extends { name: string; options?: unknown }>(list: readonly O[], name: string): O[] {
  return list.map((o) => {
    if (Array.isArray(o.options)) return { ...o, options: focusOption(o.options as O[], name) };
    return o.name === name ? { ...o, focused: true } : o;
  });
}
