import type { APIEmbed } from 'discord-api-types/v10';
import { errors, formError } from './api-error.js';
import type { UploadedFile } from './multipart.js';

/**
 * Discord's message limits (discord.com/developers/docs/resources/message#create-message and
 * .../resources/message#embed-object-embed-limits). Exported so tests can build bodies at the edge.
 */
export const MESSAGE_LIMITS = {
  content: 2000,
  embeds: 10,
  embedTitle: 256,
  embedDescription: 4096,
  embedFields: 25,
  embedFieldName: 256,
  embedFieldValue: 1024,
  embedFooterText: 2048,
  embedAuthorName: 256,
  embedTotal: 6000,
  /** Default per-file upload cap for a guild without boosts, and an interaction's default `attachment_size_limit`. */
  fileBytes: 10 * 1024 * 1024,
  /** Whole request cap (reference/discord-protocol.md). */
  requestBytes: 25 * 1024 * 1024,
  /**
   * Files on one message (discord.com/developers/docs/reference#uploading-files: up to 10); one more is answered
   * 400 with code 30015, "Maximum number of attachments in a message reached (10)" (discord/discord-api-docs#1486).
   */
  files: 10,
  /**
   * Buttons (discord.com/developers/docs/components/reference, "Action Row" and "Button"): 5 action rows a
   * message, 5 buttons a row, a custom_id of 1–100 characters, unique on the message, a label of at most 80.
   */
  actionRows: 5,
  buttonsPerRow: 5,
  customId: 100,
  buttonLabel: 80,
} as const;

const maxLength = (path: string, max: number) =>
  formError(path, 'BASE_TYPE_MAX_LENGTH', `Must be ${max} or fewer in length.`);

/**
 * Throws Discord's 50035 Invalid Form Body for content, embed, URL and allowed-mentions rules,
 * first violation wins.
 */
export function validateMessageBody(body: { content?: unknown; embeds?: unknown; allowed_mentions?: unknown; components?: unknown }): void {
  if (typeof body.content === 'string' && [...body.content].length > MESSAGE_LIMITS.content) {
    throw maxLength('content', MESSAGE_LIMITS.content);
  }
  validateAllowedMentions(body.allowed_mentions);
  validateComponents(body.components);
  if (body.embeds === undefined || body.embeds === null) return;
  if (!Array.isArray(body.embeds)) throw formError('embeds', 'LIST_TYPE_CONVERT', 'Only iterables may be used in a ListType');
  if (body.embeds.length > MESSAGE_LIMITS.embeds) throw maxLength('embeds', MESSAGE_LIMITS.embeds);
  let total = 0;
  for (const [i, embed] of (body.embeds as APIEmbed[]).entries()) {
    const at = `embeds.${i}`;
    const check = (value: string | undefined, path: string, max: number) => {
      if (value === undefined || value === null) return;
      const length = [...String(value)].length;
      if (length > max) throw maxLength(`${at}.${path}`, max);
      total += length;
    };
    checkUrl(embed.url, `${at}.url`, false);
    checkUrl(embed.image?.url, `${at}.image.url`, true);
    checkUrl(embed.thumbnail?.url, `${at}.thumbnail.url`, true);
    checkUrl(embed.author?.icon_url, `${at}.author.icon_url`, true);
    checkUrl(embed.footer?.icon_url, `${at}.footer.icon_url`, true);
    check(embed.title, 'title', MESSAGE_LIMITS.embedTitle);
    check(embed.description, 'description', MESSAGE_LIMITS.embedDescription);
    check(embed.footer?.text, 'footer.text', MESSAGE_LIMITS.embedFooterText);
    check(embed.author?.name, 'author.name', MESSAGE_LIMITS.embedAuthorName);
    const fields = embed.fields ?? [];
    if (fields.length > MESSAGE_LIMITS.embedFields) throw maxLength(`${at}.fields`, MESSAGE_LIMITS.embedFields);
    for (const [j, field] of fields.entries()) {
      if (typeof field.name !== 'string' || field.name.length === 0) {
        throw formError(`${at}.fields.${j}.name`, 'BASE_TYPE_REQUIRED', 'This field is required');
      }
      if (typeof field.value !== 'string' || field.value.length === 0) {
        throw formError(`${at}.fields.${j}.value`, 'BASE_TYPE_REQUIRED', 'This field is required');
      }
      check(field.name, `fields.${j}.name`, MESSAGE_LIMITS.embedFieldName);
      check(field.value, `fields.${j}.value`, MESSAGE_LIMITS.embedFieldValue);
    }
  }
  if (total > MESSAGE_LIMITS.embedTotal) {
    throw formError('embeds', 'MAX_EMBED_SIZE_EXCEEDED', `Embed size exceeds maximum size of ${MESSAGE_LIMITS.embedTotal}`);
  }
}

/** Action rows of buttons (the legacy components, not Components V2): Discord's counts and lengths. */
function validateComponents(value: unknown): void {
  if (value === undefined || value === null) return;
  if (!Array.isArray(value)) throw formError('components', 'LIST_TYPE_CONVERT', 'Only iterables may be used in a ListType');
  if (value.length > MESSAGE_LIMITS.actionRows) throw maxLength('components', MESSAGE_LIMITS.actionRows);
  const ids = new Set<string>();
  for (const [i, row] of (value as { type?: number; components?: unknown }[]).entries()) {
    if (row?.type !== 1 || !Array.isArray(row.components)) {
      throw formError(`components.${i}`, 'UNION_TYPE_CHOICES', 'Value of field "type" must be one of (1,).');
    }
    if (row.components.length === 0 || row.components.length > MESSAGE_LIMITS.buttonsPerRow) {
      throw formError(`components.${i}.components`, 'BASE_TYPE_BAD_LENGTH', `Must be between 1 and ${MESSAGE_LIMITS.buttonsPerRow} in length.`);
    }
    for (const [j, button] of (row.components as { type?: number; style?: number; label?: string; custom_id?: string }[]).entries()) {
      const at = `components.${i}.components.${j}`;
      if (button?.type !== 2) continue; // select menus and others: not checked here
      if (button.label !== undefined && [...button.label].length > MESSAGE_LIMITS.buttonLabel) throw maxLength(`${at}.label`, MESSAGE_LIMITS.buttonLabel);
      if (button.style === 5) continue; // a link button has a url, no custom_id
      if (typeof button.custom_id !== 'string' || button.custom_id.length === 0) {
        throw formError(`${at}.custom_id`, 'BASE_TYPE_REQUIRED', 'This field is required');
      }
      if (button.custom_id.length > MESSAGE_LIMITS.customId) throw maxLength(`${at}.custom_id`, MESSAGE_LIMITS.customId);
      if (ids.has(button.custom_id)) throw formError(`${at}.custom_id`, 'COMPONENT_CUSTOM_ID_DUPLICATED', 'Component custom id cannot be duplicated');
      ids.add(button.custom_id);
    }
  }
}

/** Embed URLs must be http(s); image fields may also name an upload as `attachment://file.png`. */
function checkUrl(value: unknown, path: string, allowAttachment: boolean): void {
  if (value === undefined || value === null) return;
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(String(value))?.[1]?.toLowerCase();
  const allowed = allowAttachment ? ['http', 'https', 'attachment'] : ['http', 'https'];
  if (!scheme || !allowed.includes(scheme)) {
    throw formError(path, 'URL_TYPE_INVALID_SCHEME', `Scheme "${scheme ?? value}" is not supported. Scheme must be one of ${allowed.map((s) => `'${s}'`).join(', ')}.`);
  }
}

/**
 * `parse: ['users']` together with a `users` list (or roles with roles) is refused by Discord as
 * mutually exclusive; lists hold at most 100 ids (discord.com/developers/docs/resources/message#allowed-mentions-object).
 */
function validateAllowedMentions(value: unknown): void {
  if (value === undefined || value === null) return;
  const allowed = value as { parse?: string[]; users?: string[]; roles?: string[] };
  for (const kind of ['users', 'roles'] as const) {
    const list = allowed[kind];
    if (list && list.length > 100) throw maxLength(`allowed_mentions.${kind}`, 100);
    if (list && list.length > 0 && allowed.parse?.includes(kind)) {
      throw formError('allowed_mentions', 'MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE', `parse:["${kind}"] and ${kind}: [ids...] are mutually exclusive.`);
    }
  }
}

/**
 * Throws 400 / 30015 for more than 10 files, 413 / 40005 when one file is over `perFileLimit` bytes or all
 * together over the request cap.
 */
export function validateFiles(files: readonly UploadedFile[], perFileLimit: number): void {
  if (files.length > MESSAGE_LIMITS.files) throw errors.tooManyAttachments();
  let total = 0;
  for (const file of files) {
    if (file.bytes.length > perFileLimit) throw errors.tooLarge();
    total += file.bytes.length;
  }
  if (total > MESSAGE_LIMITS.requestBytes) throw errors.tooLarge();
}
