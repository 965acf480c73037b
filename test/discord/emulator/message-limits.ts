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
} as const;

const maxLength = (path: string, max: number) =>
  formError(path, 'BASE_TYPE_MAX_LENGTH', `Must be ${max} or fewer in length.`);

/** Throws Discord's 50035 Invalid Form Body for content and embed limits, first violation wins. */
export function validateMessageBody(body: { content?: unknown; embeds?: unknown }): void {
  if (typeof body.content === 'string' && [...body.content].length > MESSAGE_LIMITS.content) {
    throw maxLength('content', MESSAGE_LIMITS.content);
  }
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

/** Throws 413 / 40005 when one file is over `perFileLimit` bytes or all together over the request cap. */
export function validateFiles(files: readonly UploadedFile[], perFileLimit: number): void {
  let total = 0;
  for (const file of files) {
    if (file.bytes.length > perFileLimit) throw errors.tooLarge();
    total += file.bytes.length;
  }
  if (total > MESSAGE_LIMITS.requestBytes) throw errors.tooLarge();
}
