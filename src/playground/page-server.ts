/**
 * The playground's page and its API, served on the emulator's own port (loopback only). The page acts as the
 * members' Discord client: it sends slash commands, reactions and button clicks into the emulator, which hands
 * them to the bot over the gateway exactly as Discord would, and it hears every message change through a
 * server-sent event stream. Nothing here talks to the bot directly.
 *
 * Routes: `GET /` (the page), `GET /playground/{page.js,page.css}`, `GET /playground/state`,
 * `GET /playground/events` (SSE: `snapshot`, then `message` and `notice`), `POST /playground/command`
 * `{ userId, text }`, `POST /playground/reaction` `{ userId, messageId, emoji, add }`,
 * `POST /playground/button` `{ userId, messageId, customId }`.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { MessageFlags, type APIApplicationCommand } from 'discord-api-types/v10';
import type { Logger } from '../log.js';
import { CommandLineError, parseCommandLine, type Mentionables } from './command-line.js';
import type { DiscordEmulator, InteractionHandle, PageHandler, StoredMessage } from './emulator/index.js';
import { displayName, toView, type MessageView } from './message-view.js';

/** One of the members the page can act as. */
export interface PlaygroundMember {
  id: string;
  name: string;
  /** Manage Server: may change /settings and cancel anyone's picture. */
  moderator: boolean;
}

export interface PageServerOptions {
  emulator: DiscordEmulator;
  members: readonly PlaygroundMember[];
  /** Folder holding index.html, page.js and page.css. */
  pageDir: string;
  logger: Logger;
  /** Seconds between SSE keep-alive comments. Default 15. */
  keepAliveSeconds?: number;
}

export interface PageServer {
  handler: PageHandler;
  /** Ends the event streams and stops listening to the store. */
  close(): void;
}

const STATIC: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/playground/page.js': { file: 'page.js', type: 'text/javascript; charset=utf-8' },
  '/playground/page.css': { file: 'page.css', type: 'text/css; charset=utf-8' },
};

/** Largest JSON body the page sends (a prompt is at most a few thousand characters). */
const MAX_BODY_BYTES = 64 * 1024;

class BadRequest extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function createPageServer(options: PageServerOptions): PageServer {
  const { emulator, members, logger } = options;
  const { guildId, channelId } = emulator.defaults;
  const memberIds = new Set(members.map((m) => m.id));
  const streams = new Set<ServerResponse>();
  const pending = new Map<string, StoredMessage>();
  let flushing = false;
  let closed = false;

  const lookup = { interaction: (id: string) => emulator.interaction(id), user: (id: string) => emulator.world.users.get(id) };
  const view = (stored: StoredMessage): MessageView => toView(stored, lookup);

  const send = (event: string, data: unknown) => {
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const stream of streams) stream.write(frame);
  };
  // An edit and its "no longer loading" arrive in one tick: one frame per message per tick.
  const flush = () => {
    flushing = false;
    const changed = [...pending.values()];
    pending.clear();
    for (const stored of changed) send('message', view(stored));
  };
  const unsubscribe = emulator.store.subscribe((stored) => {
    if (stored.message.channel_id !== channelId) return;
    pending.set(stored.message.id, stored);
    if (!flushing) {
      flushing = true;
      setImmediate(flush);
    }
  });
  const keepAlive = setInterval(() => {
    for (const stream of streams) stream.write(': keep-alive\n\n');
  }, (options.keepAliveSeconds ?? 15) * 1000);
  keepAlive.unref();

  const notice = (userId: string, text: string) => send('notice', { userId, text, at: new Date().toISOString() });

  /** Says so on the page when the bot misses Discord's 3 seconds, as Discord's client does. */
  const watch = (handle: InteractionHandle, userId: string) => {
    handle.waitForResponse(emulator.settings.interactionDeadlineMs + 1000).catch(() => {
      if (!closed && handle.status !== 'acknowledged') notice(userId, 'The application did not respond.');
    });
  };

  const commands = (): APIApplicationCommand[] => {
    const byName = new Map<string, APIApplicationCommand>();
    for (const command of [...emulator.commands(), ...emulator.commands(guildId)]) byName.set(command.name, command);
    return [...byName.values()].filter((c) => c.type === 1);
  };

  const guild = () => emulator.world.guild(guildId);
  const mentionables: Mentionables = {
    role(text) {
      const wanted = text.trim().replace(/^<@&(\d+)>$/, '$1').replace(/^@/, '').toLowerCase();
      return guild().roles.find((r) => r.id === wanted || r.name.toLowerCase() === wanted)?.id;
    },
    user(text) {
      const wanted = text.trim().replace(/^<@!?(\d+)>$/, '$1').replace(/^@/, '').toLowerCase();
      const ids = [...guild().members.keys()];
      return ids.find((id) => {
        const user = emulator.world.users.get(id);
        return id === wanted || user?.username.toLowerCase() === wanted || user?.global_name?.toLowerCase() === wanted;
      });
    },
  };

  const state = () => {
    const people: Record<string, string> = {};
    for (const id of guild().members.keys()) {
      const user = emulator.world.users.get(id);
      if (user) people[id] = displayName(user);
    }
    return {
      guild: { id: guildId, name: guild().name },
      channel: { id: channelId, name: guild().channels.find((c) => c.id === channelId)?.name ?? 'general' },
      bot: { id: emulator.defaults.botUserId, name: displayName(emulator.world.user(emulator.defaults.botUserId)) },
      members,
      people,
      roles: Object.fromEntries(guild().roles.map((r) => [r.id, r.name])),
      commands: commands(),
    };
  };

  const requireMember = (userId: unknown): string => {
    if (typeof userId !== 'string' || !memberIds.has(userId)) throw new BadRequest(400, 'Expected `userId` to be one of the playground members');
    return userId;
  };
  const requireVisibleMessage = (messageId: unknown): StoredMessage => {
    const stored = typeof messageId === 'string' ? emulator.message(messageId) : undefined;
    if (!stored || stored.message.channel_id !== channelId) throw new BadRequest(404, 'No such message');
    if ((stored.message.flags ?? 0) & MessageFlags.Ephemeral) throw new BadRequest(400, 'Ephemeral messages take no reactions or clicks');
    return stored;
  };

  /** Interactions go through the bot's gateway session, which exists once it has identified. */
  const requireBot = () => {
    if (!emulator.gateway.current) throw new BadRequest(503, 'The bot has not connected yet: try again in a moment');
  };

  const actions: Record<string, (body: Record<string, unknown>) => unknown> = {
    '/playground/command': (body) => {
      const userId = requireMember(body.userId);
      if (typeof body.text !== 'string') throw new BadRequest(400, 'Expected `text`');
      const parsed = parseCommandLine(body.text, commands(), mentionables);
      requireBot();
      const handle = emulator.sendCommand({ name: parsed.name, options: parsed.options, userId });
      watch(handle, userId);
      return { interactionId: handle.id, command: parsed.path };
    },
    '/playground/reaction': (body) => {
      const userId = requireMember(body.userId);
      const stored = requireVisibleMessage(body.messageId);
      if (typeof body.emoji !== 'string') throw new BadRequest(400, 'Expected `emoji`');
      const reaction = { userId, messageId: stored.message.id, emoji: body.emoji };
      if (body.add === false) emulator.removeReaction(reaction);
      else emulator.addReaction(reaction);
      return {};
    },
    '/playground/button': (body) => {
      const userId = requireMember(body.userId);
      const stored = requireVisibleMessage(body.messageId);
      if (typeof body.customId !== 'string') throw new BadRequest(400, 'Expected `customId`');
      requireBot();
      const handle = emulator.sendButton({ messageId: stored.message.id, customId: body.customId, userId });
      watch(handle, userId);
      return { interactionId: handle.id };
    },
  };

  const handler: PageHandler = async (req, res, url) => {
    const method = req.method ?? 'GET';
    const page = STATIC[url.pathname];
    const action = actions[url.pathname];
    const known = page || action || url.pathname === '/playground/state' || url.pathname === '/playground/events' || url.pathname === '/favicon.ico';
    if (!known) return false;
    // Loopback only, and only this page: another site open in the browser cannot drive the bot (DNS rebinding,
    // cross-site form posts).
    if (!sameHost(req, emulator.port)) return reply(res, 403, { error: 'The playground answers only on 127.0.0.1 / localhost' });
    try {
      if (method === 'GET' && page) {
        const body = await readFile(path.join(options.pageDir, page.file));
        res.writeHead(200, { 'Content-Type': page.type, 'Cache-Control': 'no-store' });
        res.end(body);
        return true;
      }
      if (method === 'GET' && url.pathname === '/favicon.ico') {
        res.writeHead(204).end();
        return true;
      }
      if (method === 'GET' && url.pathname === '/playground/state') return reply(res, 200, state());
      if (method === 'GET' && url.pathname === '/playground/events') {
        res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
        res.write(`event: snapshot\ndata: ${JSON.stringify({ messages: emulator.store.list(channelId).map(view) })}\n\n`);
        streams.add(res);
        req.on('close', () => streams.delete(res));
        return true;
      }
      if (method === 'POST' && action) {
        if (!String(req.headers['content-type'] ?? '').startsWith('application/json')) throw new BadRequest(415, 'Expected JSON');
        const body = await readJson(req);
        return reply(res, 200, action(body));
      }
      return reply(res, 405, { error: 'Method not allowed' });
    } catch (error) {
      if (error instanceof BadRequest) return reply(res, error.status, { error: error.message });
      if (error instanceof CommandLineError) return reply(res, 400, { error: error.message });
      // The emulator's own refusals (an emoji that is none) carry Discord's message.
      const apiMessage = (error as { body?: { message?: unknown } }).body?.message;
      if (typeof apiMessage === 'string') return reply(res, 400, { error: apiMessage });
      logger.error('playground request failed', { path: url.pathname, error });
      return reply(res, 500, { error: 'The playground failed; see the log' });
    }
  };

  return {
    handler,
    close() {
      closed = true;
      unsubscribe();
      clearInterval(keepAlive);
      for (const stream of streams) stream.end();
      streams.clear();
    },
  };
}

function reply(res: ServerResponse, status: number, json: unknown): true {
  const text = JSON.stringify(json);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
  res.end(text);
  return true;
}

/** Host (and Origin, when the browser sends one) name this machine and this port. */
function sameHost(req: IncomingMessage, port: number): boolean {
  const hosts = new Set([`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]);
  if (!hosts.has(String(req.headers.host ?? ''))) return false;
  const origin = req.headers.origin;
  return origin === undefined || [...hosts].some((host) => origin === `http://${host}`);
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new BadRequest(413, 'Body too large');
    chunks.push(chunk);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new BadRequest(400, 'Expected a JSON body');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new BadRequest(400, 'Expected a JSON object');
  return parsed as Record<string, unknown>;
}
