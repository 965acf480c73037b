/**
 * Text the bot sends, kept inside Discord's limits by construction, and member text echoed as plain text.
 *
 * Limits from Discord's developer docs ("Message Resource → Create Message": content 2000 characters; "Embed
 * Limits": description 4096, field value 1024, all embeds of a message together 6000).
 */
import { escapeMarkdown } from 'discord.js';

export const DISCORD_LIMITS = Object.freeze({
  content: 2000,
  embedDescription: 4096,
  embedFieldValue: 1024,
  embedTotal: 6000,
});

/**
 * Member text as Discord shows it literally: every Markdown construct escaped (bold, italics, code, spoilers,
 * headings, lists, masked links such as `[Free Nitro](https://…)`).
 */
export function echo(text: string): string {
  return escapeMarkdown(text, {
    codeBlock: true,
    inlineCode: true,
    bold: true,
    italic: true,
    underline: true,
    strikethrough: true,
    spoiler: true,
    codeBlockContent: true,
    inlineCodeContent: true,
    escape: true,
    heading: true,
    bulletedList: true,
    numberedList: true,
    maskedLink: true,
  });
}

/** `text` cut to at most `max` UTF-16 units with an ellipsis, never inside a surrogate pair. */
export function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = Math.max(0, max - 1);
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return `${text.slice(0, end)}…`;
}

/** The plain-text snippet of member text for a list line: cut first, then escaped, so no escape is split. */
export function echoSnippet(text: string, max: number): string {
  return echo(clip(text, max));
}

/** Member text escaped, and cut (before escaping) until the escaped form fits in `max`. */
export function echoWithin(text: string, max: number): string {
  let escaped = echo(text);
  let keep = text.length;
  while (escaped.length > max && keep > 1) {
    keep = Math.min(keep - 1, Math.floor((keep * max) / escaped.length));
    escaped = echo(clip(text, keep));
  }
  return escaped;
}

/**
 * Lines joined with newlines, as many as fit in `max` together with `footer`; the rest are summarised as
 * "… and N more". A single line longer than the room is clipped.
 */
export function fitLines(lines: readonly string[], options: { max?: number; footer?: string } = {}): string {
  const max = options.max ?? DISCORD_LIMITS.content;
  const footer = options.footer ? `\n${options.footer}` : '';
  const kept: string[] = [];
  let used = footer.length;
  for (let i = 0; i < lines.length; i++) {
    const rest = lines.length - i - 1;
    const more = rest > 0 ? `\n… and ${rest} more`.length : 0;
    const line = lines[i]!;
    const cost = (kept.length > 0 ? 1 : 0) + line.length;
    if (used + cost + more <= max) {
      kept.push(line);
      used += cost;
      continue;
    }
    if (kept.length === 0) {
      // Not even the first line fits whole: clip it so the reply still says something.
      const room = max - footer.length - `\n… and ${lines.length - 1} more`.length;
      kept.push(clip(line, Math.max(1, room)));
      if (lines.length > 1) kept.push(`… and ${lines.length - 1} more`);
      return kept.join('\n') + footer;
    }
    kept.push(`… and ${lines.length - i} more`);
    return kept.join('\n') + footer;
  }
  return kept.join('\n') + footer;
}

/** Items joined with `, ` after `prefix`, as many as fit in `max`; the rest summarised as "… and N more". */
export function fitList(prefix: string, items: readonly string[], max: number = DISCORD_LIMITS.content): string {
  let out = prefix;
  for (let i = 0; i < items.length; i++) {
    const piece = (i > 0 ? ', ' : '') + items[i];
    const rest = items.length - i - 1;
    const more = rest > 0 ? ` … and ${rest} more`.length : 0;
    if (out.length + piece.length + more > max) return `${out} … and ${items.length - i} more`;
    out += piece;
  }
  return out;
}
