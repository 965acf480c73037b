import {
  ApplicationCommandOptionType,
  ApplicationCommandType,
  ApplicationIntegrationType,
  ChannelType,
  ComponentType,
  InteractionContextType,
  InteractionResponseType,
  InteractionType,
  Locale,
  type APIApplicationCommand,
  type APIAttachment,
  type APIApplicationCommandInteractionDataOption,
  type APIApplicationCommandOption,
  type APIApplicationCommandAutocompleteGuildInteraction,
  type APIChatInputApplicationCommandGuildInteraction,
  type APIMessageComponentGuildInteraction,
  type APITextChannel,
  type APIThreadChannel,
} from 'discord-api-types/v10';
import type { CallLog, RecordedCall } from './call-log.js';
import type { EmulatorClock } from './clock.js';
import type { MessageStore, StoredMessage } from './message-store.js';
import type { World } from './world.js';

/** A value for one option in {@link SendCommandOptions.options}. */
export type OptionValue = string | number | boolean;

/** Options for `emulator.sendCommand()`. */
export interface SendCommandOptions {
  /** The slash command's name. */
  name: string;
  /**
   * Option values by name. Types come from the registered command when one was deployed
   * (so `guidance: 7` is sent as a Number option if declared so), else from the JS value.
   * Or pass Discord's own option array.
   */
  options?: Record<string, OptionValue> | APIApplicationCommandInteractionDataOption<InteractionType.ApplicationCommand>[];
  /** Default: the default guild. */
  guildId?: string;
  /** Default: the default text channel. */
  channelId?: string;
  /** Who runs it, by user id. Default: `defaults.users.alice`. The user must be a member of the guild. */
  userId?: string;
  /** Member role ids sent with the interaction. Default: the member's roles. */
  roles?: string[];
  /** The member's computed permissions. Default: computed from @everyone and the member's roles. */
  permissions?: bigint;
  /** The bot's permissions in the channel. Default: computed for the bot's member. */
  appPermissions?: bigint;
  /** Per-file upload cap in bytes that the interaction carries. Default: the emulator's `attachmentSizeLimit`. */
  attachmentSizeLimit?: number;
  locale?: Locale;
}

/** Options for `emulator.sendButton()`: a click on a button of a message the bot sent. */
/** Options for `emulator.sendAutocomplete()`: a command being typed, with the option whose value is being typed. */
export interface SendAutocompleteOptions extends SendCommandOptions {
  /** The focused option's name, at any depth of `options`; its value is what was typed so far. */
  focused: string;
}

export interface SendButtonOptions extends Omit<SendCommandOptions, 'name' | 'options' | 'channelId'> {
  messageId: string;
  customId: string;
}

/** Server-side state of one interaction. */
export interface InteractionState {
  id: string;
  token: string;
  type: InteractionType;
  applicationId: string;
  guildId: string;
  channelId: string;
  userId: string;
  /** Emulator-clock time it was sent. */
  createdAt: number;
  attachmentSizeLimit: number;
  payload: APIChatInputApplicationCommandGuildInteraction | APIMessageComponentGuildInteraction | APIApplicationCommandAutocompleteGuildInteraction;
  /** The first (initial) response, once one was accepted. */
  response: { type: InteractionResponseType; at: number } | undefined;
  /** The message `@original` refers to. */
  originalMessageId: string | undefined;
  followUpIds: string[];
  /** Set by `expireToken()`. */
  forcedExpired: boolean;
  /** Set when a callback came after the deadline. */
  failed: boolean;
}

/**
 * What `sendCommand()` returns: the interaction as sent, and ways to wait for and read what the
 * bot answered through its token.
 */
export class InteractionHandle {
  constructor(
    readonly state: InteractionState,
    private readonly log: CallLog,
    private readonly store: MessageStore,
    private readonly clock: EmulatorClock,
    private readonly deadlineMs: () => number,
  ) {}

  /**
   * `acknowledged` once an initial response was accepted; `failed` when the deadline passed
   * without one (Discord shows "The application did not respond"); else `pending`.
   */
  get status(): 'pending' | 'acknowledged' | 'failed' {
    if (this.state.response) return 'acknowledged';
    if (this.state.failed || this.clock.now() - this.state.createdAt > this.deadlineMs()) return 'failed';
    return 'pending';
  }

  /** Emulator-clock milliseconds from INTERACTION_CREATE to the accepted initial response. */
  get responseDelayMs(): number | undefined {
    return this.state.response ? this.state.response.at - this.state.createdAt : undefined;
  }

  get id(): string {
    return this.state.id;
  }

  get token(): string {
    return this.state.token;
  }

  /** The INTERACTION_CREATE payload that was dispatched. */
  get payload(): InteractionState['payload'] {
    return this.state.payload;
  }

  /** REST calls made with this interaction's id or token, in order. */
  calls(): RecordedCall[] {
    return this.log.calls.filter((c) => this.#mine(c));
  }

  /** Resolves with the first accepted initial response (the callback call answered 2xx). */
  waitForResponse(timeoutMs = 10_000): Promise<RecordedCall> {
    return this.waitForCall((c) => c.route === '/interactions/:interactionId/:token/callback' && c.status < 300, timeoutMs, 'the interaction response');
  }

  /** Resolves with the first call with this interaction's token that matches. */
  waitForCall(predicate: (call: RecordedCall) => boolean, timeoutMs = 10_000, description = 'a call for this interaction'): Promise<RecordedCall> {
    return this.log.waitFor((c) => this.#mine(c) && predicate(c), timeoutMs, `${description} (interaction ${this.id})`);
  }

  /** Resolves with the first `count` matching calls with this token, once that many arrived. */
  async waitForCalls(predicate: (call: RecordedCall) => boolean, count: number, timeoutMs = 10_000): Promise<RecordedCall[]> {
    await this.log.waitForCount((c) => this.#mine(c) && predicate(c), count, timeoutMs);
    return this.calls().filter(predicate).slice(0, count);
  }

  /** Accepted edits of `@original` (PATCH answered 200), in order. */
  edits(): RecordedCall[] {
    return this.calls().filter((c) => c.method === 'PATCH' && c.params.messageId === '@original' && c.status === 200);
  }

  /** The message `@original` refers to now, if any. */
  original(): StoredMessage | undefined {
    return this.state.originalMessageId ? this.store.get(this.state.originalMessageId) : undefined;
  }

  /** Follow-up messages, oldest first (a follow-up that replaced a deferred original is the original). */
  followUps(): StoredMessage[] {
    return this.state.followUpIds.map((id) => this.store.get(id)).filter((m): m is StoredMessage => m !== undefined);
  }

  /** Makes the token expire now, as if 15 minutes had passed for this interaction only. */
  expireToken(): void {
    this.state.forcedExpired = true;
  }

  #mine(call: RecordedCall): boolean {
    return call.params.token === this.state.token || call.params.interactionId === this.state.id;
  }
}

/**
 * Builds `data.options` from plain values, typed by the registered command's option list
 * when there is one.
 */
export function buildOptions(
  values: SendCommandOptions['options'],
  command: APIApplicationCommand | undefined,
): APIApplicationCommandInteractionDataOption<InteractionType.ApplicationCommand>[] | undefined {
  if (values === undefined) return undefined;
  if (Array.isArray(values)) return values;
  return Object.entries(values).map(([name, value]) => {
    const declared = command?.options?.find((o: APIApplicationCommandOption) => o.name === name);
    const type = declared?.type ?? inferType(value);
    switch (type) {
      case ApplicationCommandOptionType.String:
        return { name, type, value: String(value) };
      case ApplicationCommandOptionType.Integer:
      case ApplicationCommandOptionType.Number:
        return { name, type, value: Number(value) };
      case ApplicationCommandOptionType.Boolean:
        return { name, type, value: Boolean(value) };
      case ApplicationCommandOptionType.Attachment:
        // The id `uploadAttachment()` returned; the file itself goes in `data.resolved.attachments`.
        return { name, type, value: String(value) };
      default:
        throw new Error(`Option \`${name}\` has type ${type}, which sendCommand() cannot build from a plain value; pass Discord's option array`);
    }
  });
}

function inferType(value: OptionValue): ApplicationCommandOptionType {
  if (typeof value === 'string') return ApplicationCommandOptionType.String;
  if (typeof value === 'boolean') return ApplicationCommandOptionType.Boolean;
  return Number.isInteger(value) ? ApplicationCommandOptionType.Integer : ApplicationCommandOptionType.Number;
}

/** Fields every guild interaction carries; without `entitlements` or `authorizing_integration_owners` discord.js drops it. */
export function baseGuildInteraction(world: World, options: {
  id: string;
  token: string;
  applicationId: string;
  botUserId: string;
  guildId: string;
  channelId: string;
  userId: string;
  roles?: string[];
  permissions?: bigint;
  appPermissions?: bigint;
  attachmentSizeLimit: number;
  locale?: Locale;
}) {
  const found = world.findChannel(options.channelId);
  if (!found || found.guild.id !== options.guildId) {
    throw new Error(`Expected channel \`${options.channelId}\` to be a text channel of guild \`${options.guildId}\``);
  }
  const member = world.apiMember(options.guildId, options.userId);
  if (options.roles) member.roles = [...options.roles];
  const permissions = options.permissions ?? world.memberPermissions(options.guildId, options.userId);
  const appPermissions = options.appPermissions ?? world.memberPermissions(options.guildId, options.botUserId);
  return {
    id: options.id,
    application_id: options.applicationId,
    token: options.token,
    version: 1 as const,
    guild_id: options.guildId,
    guild: { id: options.guildId, features: [], locale: Locale.EnglishUS },
    channel: interactionChannel(found.channel),
    channel_id: found.channel.id,
    member: { ...member, permissions: permissions.toString() },
    app_permissions: appPermissions.toString(),
    locale: options.locale ?? Locale.EnglishUS,
    guild_locale: Locale.EnglishUS,
    entitlements: [],
    authorizing_integration_owners: { [ApplicationIntegrationType.GuildInstall]: options.guildId },
    context: InteractionContextType.Guild,
    attachment_size_limit: options.attachmentSizeLimit,
  };
}

export function chatInputData(
  name: string,
  command: APIApplicationCommand | undefined,
  options: SendCommandOptions['options'],
  fallbackId: string,
  uploads?: ReadonlyMap<string, { attachment: APIAttachment }>,
) {
  const built = buildOptions(options, command);
  // Discord sends the files of attachment options resolved beside the options, keyed by the option's value.
  const attachments: Record<string, APIAttachment> = {};
  for (const option of built ?? []) {
    if (option.type !== ApplicationCommandOptionType.Attachment) continue;
    const upload = uploads?.get(String(option.value));
    if (!upload) throw new Error(`Option \`${option.name}\` names attachment \`${String(option.value)}\`, which uploadAttachment() did not make`);
    attachments[upload.attachment.id] = upload.attachment;
  }
  return {
    id: command?.id ?? fallbackId,
    name,
    type: ApplicationCommandType.ChatInput as const,
    ...(command?.guild_id ? { guild_id: command.guild_id } : {}),
    ...(built ? { options: built } : {}),
    ...(Object.keys(attachments).length > 0 ? { resolved: { attachments } } : {}),
  };
}

export function buttonData(customId: string) {
  return { custom_id: customId, component_type: ComponentType.Button as const };
}

/** True when the token can no longer be used (15 minutes by default, or `expireToken()`). */
export function tokenExpired(state: InteractionState, clock: EmulatorClock, lifetimeMs: number): boolean {
  return state.forcedExpired || clock.now() - state.createdAt >= lifetimeMs;
}

/** Response types Discord accepts as the first answer, per interaction type. */
export function allowedResponseTypes(type: InteractionType): InteractionResponseType[] {
  if (type === InteractionType.ApplicationCommandAutocomplete) return [InteractionResponseType.ApplicationCommandAutocompleteResult];
  return type === InteractionType.MessageComponent
    ? [
        InteractionResponseType.ChannelMessageWithSource,
        InteractionResponseType.DeferredChannelMessageWithSource,
        InteractionResponseType.DeferredMessageUpdate,
        InteractionResponseType.UpdateMessage,
        InteractionResponseType.Modal,
      ]
    : [InteractionResponseType.ChannelMessageWithSource, InteractionResponseType.DeferredChannelMessageWithSource, InteractionResponseType.Modal];
}

/**
 * The partial channel an interaction carries: a text channel's `nsfw`, a thread's `parent_id` (a thread has no
 * age restriction of its own), as Discord sends them.
 */
function interactionChannel(channel: APITextChannel | APIThreadChannel) {
  if (channel.type === ChannelType.GuildText) {
    return { id: channel.id, type: ChannelType.GuildText as const, guild_id: channel.guild_id, name: channel.name, nsfw: channel.nsfw ?? false };
  }
  return {
    id: channel.id,
    type: ChannelType.PublicThread as const,
    guild_id: channel.guild_id,
    name: channel.name,
    ...(channel.parent_id ? { parent_id: channel.parent_id } : {}),
  };
}
