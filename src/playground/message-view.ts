/**
 * A stored message as the playground's page draws it: Discord's payload reduced to what a channel shows, plus
 * who may see it (an ephemeral reply is visible only to the member whose command it answers) and the "Alice
 * used /imagine" line Discord puts above a command's reply.
 */
import { InteractionType, MessageFlags, type APIEmbed, type APIUser } from 'discord-api-types/v10';
import type { InteractionState, StoredMessage } from './emulator/index.js';

export interface MessageView {
  id: string;
  author: { id: string; name: string; bot: boolean };
  timestamp: string;
  edited: boolean;
  content: string;
  embeds: APIEmbed[];
  /** Attachments not already shown by an embed. */
  attachments: { id: string; url: string; filename: string; contentType: string | undefined; width: number | null; height: number | null }[];
  reactions: { emoji: string; userIds: string[] }[];
  /** Action rows of buttons, as Discord's payload. */
  components: unknown[];
  /** "imagine is thinking…": a deferred reply with nothing in it yet. */
  loading: boolean;
  ephemeral: boolean;
  /** Who sees it: a member id for an ephemeral reply, else null (everyone). */
  visibleTo: string | null;
  /** The command this message answers, as Discord shows it above the reply. */
  command: { userId: string; userName: string; line: string } | null;
  /** The message it replies to (🔁's new picture, a refusal to a reaction). */
  replyTo: { id: string; authorName: string; content: string } | null;
  deleted: boolean;
}

export function displayName(user: Pick<APIUser, 'username' | 'global_name'>): string {
  return user.global_name ?? user.username;
}

/** `/settings steps`: the command and the subcommands chosen, from the interaction that was sent. */
export function commandLineOf(state: InteractionState): string | undefined {
  if (state.type !== InteractionType.ApplicationCommand || !('name' in state.payload.data)) return undefined;
  const parts = [state.payload.data.name];
  let options = 'options' in state.payload.data ? state.payload.data.options : undefined;
  while (options?.length === 1 && 'options' in options[0]! && Array.isArray(options[0].options)) {
    parts.push(options[0].name);
    options = options[0].options as typeof options;
  }
  return `/${parts.join(' ')}`;
}

export function toView(
  stored: StoredMessage,
  lookup: { interaction(id: string): InteractionState | undefined; user(id: string): APIUser | undefined },
): MessageView {
  const { message } = stored;
  const flags = message.flags ?? 0;
  const state = stored.interactionId ? lookup.interaction(stored.interactionId) : undefined;
  const requester = state ? lookup.user(state.userId) : undefined;
  const ephemeral = (flags & MessageFlags.Ephemeral) !== 0;
  const line = state ? commandLineOf(state) : undefined;
  const inEmbeds = new Set(
    message.embeds.flatMap((embed) => [embed.image?.url, embed.thumbnail?.url]).filter((url): url is string => url !== undefined),
  );
  const reference = message.referenced_message;
  return {
    id: message.id,
    author: { id: message.author.id, name: displayName(message.author), bot: message.author.bot === true },
    timestamp: message.timestamp,
    edited: message.edited_timestamp !== null,
    content: message.content,
    embeds: message.embeds,
    attachments: message.attachments
      .filter((a) => !inEmbeds.has(a.url) && !inEmbeds.has(`attachment://${a.filename}`))
      .map((a) => ({ id: a.id, url: a.url, filename: a.filename, contentType: a.content_type, width: a.width ?? null, height: a.height ?? null })),
    reactions: [...stored.reactions.entries()].map(([emoji, users]) => ({ emoji, userIds: [...users] })),
    components: message.components ?? [],
    loading: (flags & MessageFlags.Loading) !== 0,
    ephemeral,
    visibleTo: ephemeral && state ? state.userId : null,
    command: state && requester && line ? { userId: requester.id, userName: displayName(requester), line } : null,
    replyTo: reference
      ? { id: reference.id, authorName: displayName(reference.author), content: reference.content.slice(0, 120) }
      : null,
    deleted: stored.deleted,
  };
}
