import {
  MessageFlags,
  MessageType,
  type APIAllowedMentions,
  type APIAttachment,
  type APIEmbed,
  type APIMessage,
  type RESTAPIMessageReference,
  type APIUser,
  type AllowedMentionsTypes,
} from 'discord-api-types/v10';
import { formError } from './api-error.js';
import type { UploadedFile } from './multipart.js';
import type { SnowflakeFactory } from './snowflake.js';

/** What a message-creating or -editing body may carry (channel messages, webhooks, interaction callbacks). */
export interface MessageBody {
  content?: string | null;
  embeds?: APIEmbed[] | null;
  components?: unknown[] | null;
  flags?: number | null;
  attachments?: { id: string | number; filename?: string; description?: string }[] | null;
  allowed_mentions?: APIAllowedMentions | null;
  message_reference?: RESTAPIMessageReference | null;
  tts?: boolean;
}

/** A message in the emulator's store: Discord's payload plus what a test wants to check. */
export interface StoredMessage {
  /** The message as Discord would return it now. */
  message: APIMessage;
  /** Attachment bytes by attachment id. */
  files: Map<string, { bytes: Buffer; contentType: string }>;
  /** User ids per emoji key (`🔁`, or `name:id` for custom emoji). */
  reactions: Map<string, Set<string>>;
  /** The `allowed_mentions` of the last create or edit, as sent. */
  allowedMentions: APIAllowedMentions | undefined;
  /** Earlier versions, oldest first, one per edit. */
  history: APIMessage[];
  /** The interaction it answers, for interaction responses and follow-ups. */
  interactionId?: string;
  deleted: boolean;
}

/** Reads width and height from a PNG's IHDR chunk, so attachments carry them like Discord's do. */
export function pngSize(bytes: Buffer): { width: number; height: number } | undefined {
  const signature = '89504e470d0a1a0a';
  if (bytes.length < 24 || bytes.subarray(0, 8).toString('hex') !== signature) return undefined;
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
}

/** Called after a message was created, edited, deleted or had its reactions changed. */
export type MessageListener = (stored: StoredMessage) => void;

/** Messages by id and channel, with Discord's rules for creating and editing them. */
export class MessageStore {
  readonly #byId = new Map<string, StoredMessage>();
  readonly #listeners = new Set<MessageListener>();

  constructor(
    private readonly ids: SnowflakeFactory,
    private readonly attachmentUrl: (channelId: string, attachmentId: string, filename: string) => string,
    private readonly resolveAttachmentUrls = false,
    private readonly onListenerError: (error: unknown) => void = () => {},
  ) {}

  /** Hears of every change to a message (the playground's live page); returns the way to stop listening. */
  subscribe(listener: MessageListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Tells listeners that `stored` changed; a listener that throws cannot fail the request that changed it. */
  changed(stored: StoredMessage): void {
    for (const listener of this.#listeners) {
      try {
        listener(stored);
      } catch (error) {
        this.onListenerError(error);
      }
    }
  }

  get(messageId: string): StoredMessage | undefined {
    const stored = this.#byId.get(messageId);
    return stored && !stored.deleted ? stored : undefined;
  }

  /** Messages of a channel in the order they were stored; deleted ones left out unless asked for. */
  list(channelId?: string, includeDeleted = false): StoredMessage[] {
    return [...this.#byId.values()].filter(
      (m) => (channelId === undefined || m.message.channel_id === channelId) && (includeDeleted || !m.deleted),
    );
  }

  create(options: {
    channelId: string;
    guildId?: string;
    author: APIUser;
    body: MessageBody;
    files: UploadedFile[];
    type?: MessageType;
    webhookId?: string;
    applicationId?: string;
    interactionId?: string;
    extra?: Partial<APIMessage>;
    /** Backdates the message (id and timestamp); default now. */
    createdAt?: Date;
  }): StoredMessage {
    const id = this.ids.next(options.createdAt?.getTime());
    const { body } = options;
    const stored: StoredMessage = {
      message: {
        id,
        channel_id: options.channelId,
        author: options.author,
        content: body.content ?? '',
        timestamp: (options.createdAt ?? new Date()).toISOString(),
        edited_timestamp: null,
        tts: body.tts ?? false,
        mention_everyone: false,
        mentions: [],
        mention_roles: [],
        attachments: [],
        embeds: body.embeds ?? [],
        pinned: false,
        type: options.type ?? MessageType.Default,
        flags: (body.flags ?? 0) as MessageFlags,
        components: (body.components ?? []) as APIMessage['components'],
        ...(options.webhookId ? { webhook_id: options.webhookId } : {}),
        ...(options.applicationId ? { application_id: options.applicationId } : {}),
        ...options.extra,
      },
      files: new Map(),
      reactions: new Map(),
      allowedMentions: body.allowed_mentions ?? undefined,
      history: [],
      interactionId: options.interactionId,
      deleted: false,
    };
    if (options.guildId) (stored.message as APIMessage & { guild_id?: string }).guild_id = options.guildId;
    if (body.message_reference) this.#attachReference(stored, body.message_reference);
    this.#applyAttachments(stored, body, options.files, false);
    this.#resolveEmbedAttachments(stored);
    this.#applyMentions(stored);
    this.#byId.set(id, stored);
    this.changed(stored);
    return stored;
  }

  /** Applies a PATCH the way Discord does: only fields present change; `attachments` lists what stays. */
  edit(stored: StoredMessage, body: MessageBody, files: UploadedFile[]): StoredMessage {
    stored.history.push(structuredClone(stored.message));
    const message = stored.message;
    if (body.content !== undefined) message.content = body.content ?? '';
    if (body.embeds !== undefined) message.embeds = body.embeds ?? [];
    if (body.components !== undefined) message.components = (body.components ?? []) as APIMessage['components'];
    if (body.flags !== undefined && body.flags !== null) {
      // Only SuppressEmbeds can be toggled on edit; ephemeral and the rest are fixed at creation.
      const kept = (message.flags ?? 0) & ~MessageFlags.SuppressEmbeds;
      message.flags = (kept | (body.flags & MessageFlags.SuppressEmbeds)) as MessageFlags;
    }
    if (body.allowed_mentions !== undefined) stored.allowedMentions = body.allowed_mentions ?? undefined;
    this.#applyAttachments(stored, body, files, true);
    this.#resolveEmbedAttachments(stored);
    message.edited_timestamp = new Date().toISOString();
    this.#applyMentions(stored);
    this.changed(stored);
    return stored;
  }

  /** Edits a deferred ("thinking…") response into a real one: the loading flag goes, content arrives. */
  resolveLoading(stored: StoredMessage): void {
    if ((stored.message.flags ?? 0) & MessageFlags.Loading) {
      stored.message.flags = ((stored.message.flags ?? 0) & ~MessageFlags.Loading) as MessageFlags;
      this.changed(stored);
    }
  }

  delete(stored: StoredMessage): void {
    stored.deleted = true;
    this.changed(stored);
  }

  /** Puts a message in the store without any request, e.g. one posted before the bot started. */
  seed(message: APIMessage, files: Map<string, { bytes: Buffer; contentType: string }> = new Map()): StoredMessage {
    const stored: StoredMessage = { message, files, reactions: new Map(), allowedMentions: undefined, history: [], deleted: false };
    this.#byId.set(message.id, stored);
    this.changed(stored);
    return stored;
  }

  #attachReference(stored: StoredMessage, reference: RESTAPIMessageReference): void {
    const target = reference.message_id ? this.get(reference.message_id) : undefined;
    if (!target) {
      if (reference.fail_if_not_exists === false) return;
      throw formError('message_reference', 'MESSAGE_REFERENCE_UNKNOWN_MESSAGE', 'Unknown message');
    }
    stored.message.type = MessageType.Reply;
    stored.message.message_reference = {
      type: 0,
      message_id: target.message.id,
      channel_id: target.message.channel_id,
      ...(reference.guild_id ? { guild_id: reference.guild_id } : {}),
    };
    stored.message.referenced_message = structuredClone(target.message);
  }

  #applyAttachments(stored: StoredMessage, body: MessageBody, files: UploadedFile[], editing: boolean): void {
    const listed = body.attachments ?? undefined;
    const byIndex = new Map<string, UploadedFile>();
    for (const [i, file] of files.entries()) {
      const match = /^files\[(\d+)\]$/.exec(file.field);
      byIndex.set(match ? match[1] : String(i), file);
    }
    const kept: APIAttachment[] = [];
    const used = new Set<string>();
    if (listed) {
      for (const entry of listed) {
        const key = String(entry.id);
        const existing = stored.message.attachments.find((a) => a.id === key);
        if (existing) {
          kept.push(existing);
          continue;
        }
        const file = byIndex.get(key);
        if (!file) throw formError('attachments', 'ATTACHMENT_NOT_FOUND', `Attachment \`${key}\` has no matching file`);
        used.add(key);
        kept.push(this.#store(stored, file, entry.filename, entry.description));
      }
    } else if (editing) {
      // No `attachments` field on an edit: existing attachments stay and new files are added.
      kept.push(...stored.message.attachments);
    }
    for (const [key, file] of byIndex) {
      if (!used.has(key)) kept.push(this.#store(stored, file));
    }
    for (const id of [...stored.files.keys()]) {
      if (!kept.some((a) => a.id === id)) stored.files.delete(id);
    }
    stored.message.attachments = kept;
  }

  /**
   * `attachment://name` in an embed image or thumbnail becomes that upload's URL (with its size),
   * as Discord serves it, so a test can check the embed shows the uploaded picture. A name with no
   * matching upload stays as sent: Discord then shows no image.
   */
  #resolveEmbedAttachments(stored: StoredMessage): void {
    if (!this.resolveAttachmentUrls) return;
    for (const embed of stored.message.embeds) {
      for (const key of ['image', 'thumbnail'] as const) {
        const media = embed[key];
        const name = media?.url.startsWith('attachment://') ? media.url.slice('attachment://'.length) : undefined;
        const attachment = name ? stored.message.attachments.find((a) => a.filename === name) : undefined;
        if (media && attachment) {
          embed[key] = {
            ...media,
            url: attachment.url,
            proxy_url: attachment.proxy_url,
            ...(attachment.width ? { width: attachment.width, height: attachment.height ?? undefined } : {}),
          };
        }
      }
    }
  }

  #store(stored: StoredMessage, file: UploadedFile, filename?: string, description?: string): APIAttachment {
    const id = this.ids.next();
    const name = filename ?? file.name;
    const url = this.attachmentUrl(stored.message.channel_id, id, name);
    const size = pngSize(file.bytes);
    stored.files.set(id, { bytes: file.bytes, contentType: file.contentType });
    return {
      id,
      filename: name,
      size: file.bytes.length,
      url,
      proxy_url: url,
      content_type: file.contentType,
      ...(size ?? {}),
      ...(description ? { description } : {}),
    };
  }

  /**
   * Which mentions would ping, from the content and `allowed_mentions` (default: parse all).
   * The sender's Mention Everyone permission is not checked, so `mention_everyone` reads
   * "would ping if allowed": a bot that disables mentions shows false here.
   */
  #applyMentions(stored: StoredMessage): void {
    const content = stored.message.content;
    const allowed = stored.allowedMentions;
    const parse = new Set<AllowedMentionsTypes | string>(allowed ? (allowed.parse ?? []) : ['users', 'roles', 'everyone']);
    stored.message.mention_everyone = /@(everyone|here)/.test(content) && parse.has('everyone');
    const userIds = [...content.matchAll(/<@!?(\d+)>/g)].map((m) => m[1]);
    const pingedUsers = userIds.filter((id) => parse.has('users') || (allowed?.users ?? []).includes(id));
    const replied = stored.message.referenced_message?.author;
    const users = new Map<string, APIUser>();
    for (const id of pingedUsers) users.set(id, { id, username: id, discriminator: '0', global_name: null, avatar: null });
    // A reply pings its target unless `replied_user: false` (discord.com/developers/docs/resources/message#allowed-mentions-object).
    if (replied && (allowed?.replied_user ?? !allowed)) users.set(replied.id, replied);
    stored.message.mentions = [...users.values()];
    const roleIds = [...content.matchAll(/<@&(\d+)>/g)].map((m) => m[1]);
    stored.message.mention_roles = roleIds.filter((id) => parse.has('roles') || (allowed?.roles ?? []).includes(id));
  }
}
