import { GatewayDispatchEvents, MessageFlags, type APIApplicationCommand, type APIAttachment, type APIUser } from 'discord-api-types/v10';
import { errors, formError } from '../api-error.js';
import type { EmulatorClock } from '../clock.js';
import type { DispatchInput } from '../gateway.js';
import type { InteractionState } from '../interactions.js';
import { validateFiles, validateMessageBody } from '../message-limits.js';
import type { MessageBody, MessageStore, StoredMessage } from '../message-store.js';
import type { UploadedFile } from '../multipart.js';
import type { RouteResult } from '../router.js';
import type { SnowflakeFactory } from '../snowflake.js';
import type { World } from '../world.js';

/** A member's file for an attachment option, as the CDN serves it. */
export interface UploadedAttachment {
  attachment: APIAttachment;
  bytes: Buffer;
  contentType: string;
  /** The CDN waits this long before answering (a slow download). */
  delayMs: number;
}

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
  /** Files members attached to slash command options (`uploadAttachment`), by attachment id. */
  uploads: Map<string, UploadedAttachment>;
  gatewayUrl(): string;
  /** `GET /gateway/bot`'s recommended shard count (the emulator's `shards` option). */
  shards: number;
  /** Dispatches when a gateway session exists; a no-op before login. */
  dispatch(event: DispatchInput): void;
}

export const ok = (json: unknown, status = 200): RouteResult => ({ status, json });
export const noContent = (): RouteResult => ({ status: 204 });

export function requireGuild(core: EmulatorCore, guildId: string): string {
  if (!core.world.guilds.has(guildId)) throw errors.unknownGuild();
  return guildId;
}

export function requireChannel(core: EmulatorCore, channelId: string) {
  const found = core.world.findChannel(channelId);
  if (!found) throw errors.unknownChannel();
  return found;
}

/** A message of that channel that the bot can see (ephemeral ones are not fetchable by channel routes). */
export function requireChannelMessage(core: EmulatorCore, params: Record<string, string>): StoredMessage {
  requireChannel(core, params.channelId);
  const stored = core.store.get(params.messageId);
  if (!stored || stored.message.channel_id !== params.channelId || isEphemeral(stored)) throw errors.unknownMessage();
  return stored;
}

export function isEphemeral(stored: StoredMessage): boolean {
  return Boolean((stored.message.flags ?? 0) & MessageFlags.Ephemeral);
}

export function asMessageBody(json: unknown): MessageBody {
  if (json === undefined || json === null) return {};
  if (typeof json !== 'object' || Array.isArray(json)) throw formError('', 'DICT_TYPE_CONVERT', 'Only dictionaries may be used in a DictType');
  return json as MessageBody;
}

/** Limits, upload size and (for new messages) Discord's "Cannot send an empty message". */
export function checkMessage(body: MessageBody, files: UploadedFile[], fileLimit: number, creating: boolean): void {
  validateMessageBody(body);
  validateFiles(files, fileLimit);
  if (!creating) return;
  const hasContent = typeof body.content === 'string' && body.content.trim().length > 0;
  const hasEmbeds = Array.isArray(body.embeds) && body.embeds.length > 0;
  const hasComponents = Array.isArray(body.components) && body.components.length > 0;
  const hasStickers = Array.isArray((body as { sticker_ids?: unknown[] }).sticker_ids) && (body as { sticker_ids: unknown[] }).sticker_ids.length > 0;
  if (!hasContent && !hasEmbeds && !hasComponents && !hasStickers && files.length === 0) throw errors.emptyMessage();
}

export function announceCreate(core: EmulatorCore, stored: StoredMessage): void {
  if (isEphemeral(stored)) return;
  const guildId = core.world.findChannel(stored.message.channel_id)?.guild.id;
  core.dispatch({ t: GatewayDispatchEvents.MessageCreate, d: { ...stored.message, ...(guildId ? { guild_id: guildId } : {}) } });
}

export function announceUpdate(core: EmulatorCore, stored: StoredMessage): void {
  if (isEphemeral(stored)) return;
  const guildId = core.world.findChannel(stored.message.channel_id)?.guild.id;
  core.dispatch({ t: GatewayDispatchEvents.MessageUpdate, d: { ...stored.message, ...(guildId ? { guild_id: guildId } : {}) } });
}

export function announceDelete(core: EmulatorCore, stored: StoredMessage): void {
  if (isEphemeral(stored)) return;
  const guildId = core.world.findChannel(stored.message.channel_id)?.guild.id;
  core.dispatch({
    t: GatewayDispatchEvents.MessageDelete,
    d: { id: stored.message.id, channel_id: stored.message.channel_id, ...(guildId ? { guild_id: guildId } : {}) },
  });
}
