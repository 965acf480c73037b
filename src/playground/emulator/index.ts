/**
 * # Discord API emulator
 *
 * A protocol-level stand-in for Discord on 127.0.0.1 (ephemeral port): REST v10 over HTTP and the
 * gateway over WebSocket, payloads typed by discord-api-types. The real discord.js client connects
 * to it unchanged: the end-to-end tests run the bot against it, and so does the local playground
 * (`npm start` with no token, ../index.ts). It imports nothing of the bot's. It enforces the rules
 * a bot must live with (3 s first response, 15 min token, one initial response, rate limits with
 * headers and 429s, message/embed/upload limits).
 *
 * ## Start and connect
 * ```ts
 * const emulator = await DiscordEmulator.start();            // options: see EmulatorOptions
 * const client = new Client({
 *   intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessageReactions],
 *   partials: [Partials.Message, Partials.Reaction, Partials.Channel, Partials.User],
 *   rest: { api: emulator.apiUrl },                           // http://127.0.0.1:PORT/api
 *   ws: { buildIdentifyThrottler: () => ({ waitForIdentify: async () => {} }) }, // skip the 5 s re-identify wait
 * });
 * await client.login(emulator.token);                        // gateway found via GET /gateway/bot
 * // or with the bot's config: DISCORD_TOKEN=emulator.token, DISCORD_API_URL=emulator.apiUrl
 * await emulator.waitForReady();                             // READY + GUILD_CREATE sent
 * ...
 * await client.destroy(); await emulator.close();
 * ```
 *
 * ## The world
 * `emulator.defaults` holds ids: `guildId`, `channelId`, `applicationId`, `botUserId`, users
 * `owner`, `alice`, `bob` (plain members), `moderator` (role with Manage Messages), `otherBot`
 * (a bot user), and roles `everyone`, `moderator`, `bot`. Add more with `createUser`,
 * `createRole`, `addMember`, `createTextChannel` (`nsfw: true` for an age-restricted one) and `createThread`
 * (before login they are in GUILD_CREATE; after, CHANNEL_CREATE / THREAD_CREATE tell the client).
 *
 * ## Driving the bot
 * - `sendCommand({ name, options?, userId?, guildId?, channelId?, roles?, permissions?, attachmentSizeLimit? })`
 *   dispatches INTERACTION_CREATE (type 2) and returns an {@link InteractionHandle}:
 *   `status` (pending/acknowledged/failed), `responseDelayMs`, `waitForResponse()`,
 *   `waitForCall(pred)`, `waitForCalls(pred, n)`, `calls()`, `edits()`, `original()`,
 *   `followUps()`, `expireToken()`.
 *   Option types come from the deployed command definition if the bot registered one.
 * - `sendButton({ messageId, customId, userId? })`: a button click (type 3) on a stored message.
 * - `addReaction({ userId, channelId?, messageId, emoji, burst? })` / `removeReaction(...)`:
 *   MESSAGE_REACTION_ADD / REMOVE, also for messages the client never cached.
 * - `seedMessage({ channelId?, authorId?, content?, embeds?, files?, createdAt? })`: a message that exists
 *   without the client having seen it (e.g. posted before a restart).
 * - `reconnect()` (op 7), `disconnect(code?)` (socket closed, client resumes),
 *   `invalidateSession(resumable)` (op 9), `dropHeartbeatAcks(n)` (zombie connection → resume);
 *   missed events are replayed on RESUME.
 * - `dispatch({ t, d })`: any gateway event, type-checked against discord-api-types.
 * - Events are filtered by the identified intents; a privileged intent not switched on in
 *   `privilegedIntents` closes the gateway with 4014, and a `v` other than 10 with 4012.
 *
 * ## Rules and faults
 * - Interaction deadline `interactionDeadlineMs` (3000) and token lifetime `tokenLifetimeMs`
 *   (15 min), both on the emulator clock: `advanceTime(ms)` moves it. Late first response → 404
 *   10062; second initial response → 400 40060; webhook call with an expired token → 401 50027
 *   (Discord's answer; webhook routes use no bot token so discord.js keeps its own); webhook call
 *   before any response → 404 10015; deferred + first follow-up → the follow-up replaces the
 *   "thinking…" message, as on Discord.
 * - Limits: content 2000, 10 embeds, title 256, description 4096, 25 fields, footer 2048,
 *   total 6000 → 400 50035 with Discord's `errors` tree; empty message → 400 50006; a file over
 *   the interaction's `attachment_size_limit` (or `attachmentSizeLimit` for channel messages,
 *   10 MiB) → 413 40005; embed URLs must be http(s) (images may be `attachment://name`);
 *   `allowed_mentions` with `parse: ['users']` and a `users` list → 50035. Command definitions are
 *   validated on PUT/POST (names, 25 options, 8000 chars). `resolveAttachmentUrls: true` rewrites
 *   `attachment://` embed images to the upload URL as Discord does (off by default).
 * - Rate limits: every response has X-RateLimit-Limit/Remaining/Reset/Reset-After/Bucket; buckets
 *   from `rateLimits` (default `defaultRateLimitRules()`: webhook edits 5 per 5 s per message,
 *   channel messages 5 per 5 s per channel, reactions 1 per 250 ms; `channelWebhookEditRule()` adds
 *   the unpublished ~30 webhook edits a minute per channel; `setRateLimits(rules)` swaps them at
 *   run time). A request counts against every rule that matches; the tightest one's headers are
 *   sent. `injectRateLimit(matcher, { count, retryAfter, global })` and
 *   `injectServerError(matcher, { count, status })` queue faults; a matcher is a
 *   `"PATCH /webhooks/*"`-style glob, a RegExp or a function. 429s always carry Retry-After and
 *   `X-RateLimit-Scope`. `stats.requests` / `stats.rateLimited` / `stats.serverErrors` count them.
 *
 * ## Reading back
 * - `waitUntil(predicate, timeoutMs)` polls any condition (store contents, stats).
 * - `calls` (every REST call: method, route template, decoded path, params, query, headers,
 *   JSON body or `payload_json`, multipart `files` with bytes, status, response, responseHeaders),
 *   `waitForCall(pred, timeoutMs)`, `waitForCalls(pred, count, timeoutMs)`.
 * - `messages(channelId?)`, `message(id)` → {@link StoredMessage}: the APIMessage as Discord would
 *   return it, attachment bytes in `files`, `reactions` (emoji → user ids), `history` of edits,
 *   `allowedMentions`; `message.mention_everyone` / `mentions` say what would ping.
 * - `commands(guildId?)`: registered application commands. `gatewayStats`: connections, identifies,
 *   resumes (and those on `resume_gateway_url`), heartbeats, replayed events;
 *   `gateway.current.sent`: every dispatch of the session. Attachment URLs serve the bytes.
 * - Unknown routes answer 404 like Discord and print one `[discord-emulator] no route` warning.
 *
 * ## For the playground
 * `port`, `botUsername` and `guildName` options; `servePages(handler)` answers other paths on the same
 * port; `store.subscribe(listener)` hears every create, edit, delete and reaction change as it happens.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  GatewayDispatchEvents,
  InteractionType,
  MessageType,
  PermissionFlagsBits,
  type APIApplicationCommand,
  type APIEmbed,
  type APIRole,
  type APITextChannel,
  type APIThreadChannel,
  type APIUser,
} from 'discord-api-types/v10';
import { ApiError, errors } from './api-error.js';
import { CallLog, type RecordedCall } from './call-log.js';
import { EmulatorClock } from './clock.js';
import { Gateway, type DispatchInput, type GatewayStats } from './gateway.js';
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
import { MESSAGE_LIMITS } from './message-limits.js';
import { MessageStore, pngSize, type StoredMessage } from './message-store.js';
import { parseBody, type ParsedBody, type UploadedFile } from './multipart.js';
import { defaultRateLimitRules, RateLimiter, type InjectedFault, type RateLimitRule, type RequestMatcher } from './rate-limits.js';
import { addReaction, parseEmoji, registerRoutes, removeReaction, type EmulatorCore } from './rest-routes.js';
import { Router } from './router.js';
import { SnowflakeFactory } from './snowflake.js';
import { BOT_PERMISSIONS, World } from './world.js';

export type { RecordedCall } from './call-log.js';
export type { StoredMessage } from './message-store.js';
export type { UploadedFile } from './multipart.js';
export type { RateLimitRule, RequestMatcher, InjectedFault } from './rate-limits.js';
export type { SendCommandOptions, SendButtonOptions, SendAutocompleteOptions } from './interactions.js';
export { InteractionHandle } from './interactions.js';
export { channelWebhookEditRule, defaultRateLimitRules } from './rate-limits.js';
export { MESSAGE_LIMITS } from './message-limits.js';
export { COMMAND_LIMITS } from './command-limits.js';

/** Options for {@link DiscordEmulator.start}. */
export interface EmulatorOptions {
  /** The bot token clients must present. Default: a fake token in Discord's format whose first part is the bot's id. */
  token?: string;
  /** Time to the first interaction response, on the emulator clock. Default 3000 (Discord's 3 s). */
  interactionDeadlineMs?: number;
  /** Interaction token lifetime, on the emulator clock. Default 900 000 (Discord's 15 min). */
  tokenLifetimeMs?: number;
  /** HELLO's heartbeat interval. Default 41 250 (Discord's usual value). */
  heartbeatIntervalMs?: number;
  /** Rate-limit buckets. Default `defaultRateLimitRules()`; `[]` leaves only a generous default bucket. */
  rateLimits?: RateLimitRule[];
  /** Per-file upload cap for channel messages and new interactions. Default 10 MiB. */
  attachmentSizeLimit?: number;
  /** Whole-request body cap before the emulator answers 413. Default 30 MiB. */
  maxRequestBytes?: number;
  /**
   * Rewrite `attachment://name` in embed images to the upload's URL with its size, as Discord
   * returns them. Default false: embeds are stored as sent, so tests can read the reference back.
   */
  resolveAttachmentUrls?: boolean;
  /**
   * Privileged intents the application has switched on (GuildMembers, GuildPresences,
   * MessageContent). Default none: identifying with one closes the gateway with 4014, as Discord does.
   */
  privilegedIntents?: number;
  /** Port on 127.0.0.1. Default 0: an ephemeral port. A port in use rejects `start()` with EADDRINUSE. */
  port?: number;
  /** The bot user's name. Default `imagine-test-bot`. */
  botUsername?: string;
  /** The default guild's name. Default `Emulated Guild`. */
  guildName?: string;
}

/**
 * Answers an HTTP request outside `/api/`, `/attachments/` and the gateway (the playground's page); resolves
 * false to leave it to the emulator (404).
 */
export type PageHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => boolean | Promise<boolean>;

/** Ids of the world every emulator starts with. */
export interface EmulatorDefaults {
  applicationId: string;
  botUserId: string;
  guildId: string;
  channelId: string;
  users: { owner: APIUser; alice: APIUser; bob: APIUser; moderator: APIUser; otherBot: APIUser };
  roles: { everyone: APIRole; moderator: APIRole; bot: APIRole };
}

/** Counts of what the emulator served. */
export interface EmulatorStats {
  requests: number;
  rateLimited: number;
  serverErrors: number;
}

/**
 * A token in Discord's shape: base64 of the bot's user id, a timestamp part and an HMAC part.
 * Tools that read the application id out of the token's first part get the right one.
 */
function fakeToken(botUserId: string): string {
  return `${Buffer.from(botUserId).toString('base64').replace(/=+$/, '')}.GEmUla.emulator-token-for-tests-only-00000000000`;
}

/** A Discord API and gateway on 127.0.0.1 for the tests and the playground; see the file header for the whole API. */
export class DiscordEmulator {
  readonly token: string;
  readonly clock = new EmulatorClock();
  readonly world: World;
  readonly store: MessageStore;
  readonly log = new CallLog();
  readonly gateway: Gateway;
  readonly rateLimiter: RateLimiter;
  readonly stats: EmulatorStats = { requests: 0, rateLimited: 0, serverErrors: 0 };
  readonly defaults: EmulatorDefaults;
  /** Interaction deadline, token lifetime and upload cap in force; may be changed between tests. */
  readonly settings: EmulatorCore['settings'];

  readonly #ids: SnowflakeFactory;
  readonly #server: Server;
  readonly #router = new Router();
  readonly #interactionsById = new Map<string, InteractionState>();
  readonly #interactionsByToken = new Map<string, InteractionState>();
  readonly #commands = new Map<string, APIApplicationCommand[]>();
  readonly #maxRequestBytes: number;
  #port = 0;
  #closed = false;
  readonly #warned = new Set<string>();
  readonly #polls = new Set<{ timer: NodeJS.Timeout; reject: (error: Error) => void }>();
  readonly #listenPort: number;
  #pages: PageHandler | undefined;

  private constructor(options: EmulatorOptions) {
    this.settings = {
      interactionDeadlineMs: options.interactionDeadlineMs ?? 3_000,
      tokenLifetimeMs: options.tokenLifetimeMs ?? 15 * 60_000,
      attachmentSizeLimit: options.attachmentSizeLimit ?? MESSAGE_LIMITS.fileBytes,
    };
    this.#maxRequestBytes = options.maxRequestBytes ?? 30 * 1024 * 1024;
    this.#ids = new SnowflakeFactory(this.clock);
    this.world = new World(this.#ids);
    this.store = new MessageStore(
      this.#ids,
      (channelId, attachmentId, filename) => `${this.baseUrl}/attachments/${channelId}/${attachmentId}/${encodeURIComponent(filename)}`,
      options.resolveAttachmentUrls ?? false,
    );
    this.rateLimiter = new RateLimiter(options.rateLimits ?? defaultRateLimitRules());
    this.#listenPort = options.port ?? 0;
    this.defaults = this.#createDefaultWorld(options.botUsername ?? 'imagine-test-bot', options.guildName ?? 'Emulated Guild');
    this.token = options.token ?? fakeToken(this.defaults.botUserId);
    this.gateway = new Gateway({
      token: this.token,
      privilegedIntents: options.privilegedIntents ?? 0,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 41_250,
      resumeUrl: () => this.resumeGatewayUrl,
      newSessionId: () => this.#ids.next(),
      onIdentify: (session, gateway) => {
        const guildIds = [...this.world.guilds.keys()];
        gateway.dispatchTo(session, {
          t: GatewayDispatchEvents.Ready,
          d: {
            v: 10,
            user: this.world.user(this.defaults.botUserId),
            guilds: guildIds.map((id) => ({ id, unavailable: true })),
            session_id: session.id,
            resume_gateway_url: this.resumeGatewayUrl,
            shard: [0, 1],
            application: { id: this.defaults.applicationId, flags: 0 as never, flags_new: '0' },
          },
        });
        for (const id of guildIds) gateway.dispatchTo(session, { t: GatewayDispatchEvents.GuildCreate, d: this.world.guildCreate(id) });
      },
      onRequestGuildMembers: (session, data, gateway) => {
        const guild = this.world.guilds.get(data.guild_id);
        if (!guild) return;
        const wanted = 'user_ids' in data ? new Set([data.user_ids].flat()) : undefined;
        const query = 'query' in data ? data.query.toLowerCase() : '';
        const limit = 'limit' in data && data.limit > 0 ? data.limit : Number.POSITIVE_INFINITY;
        const ids = [...guild.members.keys()].filter((id) =>
          wanted ? wanted.has(id) : this.world.user(id).username.toLowerCase().startsWith(query),
        );
        gateway.dispatchTo(session, {
          t: GatewayDispatchEvents.GuildMembersChunk,
          d: {
            guild_id: guild.id,
            members: ids.slice(0, limit).map((id) => this.world.apiMember(guild.id, id)),
            chunk_index: 0,
            chunk_count: 1,
            ...(wanted ? { not_found: [...wanted].filter((id) => !guild.members.has(id)) } : {}),
            ...(data.nonce ? { nonce: data.nonce } : {}),
          },
        });
      },
    });
    const core: EmulatorCore = {
      token: this.token,
      applicationId: this.defaults.applicationId,
      bot: this.world.user(this.defaults.botUserId),
      world: this.world,
      store: this.store,
      ids: this.#ids,
      clock: this.clock,
      interactionsById: this.#interactionsById,
      interactionsByToken: this.#interactionsByToken,
      commands: this.#commands,
      settings: this.settings,
      gatewayUrl: () => this.gatewayUrl,
      dispatch: (event) => {
        if (this.gateway.current) this.gateway.dispatch(event);
      },
    };
    this.#core = core;
    registerRoutes(this.#router, core);
    this.#server = createServer((req, res) => void this.#onRequest(req, res));
    this.#server.on('upgrade', (req, socket, head) => {
      const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
      if (path === '/gateway' || path === '/gateway-resume') this.gateway.handleUpgrade(req, socket, head);
      else socket.destroy();
    });
  }

  readonly #core: EmulatorCore;

  /** Starts an emulator on 127.0.0.1, on an ephemeral port unless `options.port` names one. */
  static async start(options: EmulatorOptions = {}): Promise<DiscordEmulator> {
    const emulator = new DiscordEmulator(options);
    await new Promise<void>((resolve, reject) => {
      emulator.#server.once('error', reject);
      emulator.#server.listen(emulator.#listenPort, '127.0.0.1', () => resolve());
    });
    emulator.#port = (emulator.#server.address() as AddressInfo).port;
    return emulator;
  }

  /** Serves other paths on the same port (one handler; a second call replaces it). */
  servePages(handler: PageHandler): void {
    this.#pages = handler;
  }

  get port(): number {
    return this.#port;
  }

  /** `http://127.0.0.1:PORT`, where attachments are served. */
  get baseUrl(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** The value for discord.js's `rest.api` and the bot's DISCORD_API_URL. */
  get apiUrl(): string {
    return `${this.baseUrl}/api`;
  }

  get gatewayUrl(): string {
    return `ws://127.0.0.1:${this.#port}/gateway`;
  }

  /** READY's `resume_gateway_url`: a different path, so tests can tell a resume from a fresh connect. */
  get resumeGatewayUrl(): string {
    return `ws://127.0.0.1:${this.#port}/gateway-resume`;
  }

  get calls(): readonly RecordedCall[] {
    return this.log.calls;
  }

  /** Resolves when a client has identified and got READY and every GUILD_CREATE. */
  waitForReady(timeoutMs = 30_000): Promise<void> {
    return this.gateway.waitUntil(() => this.gateway.current?.live === true, timeoutMs, 'a client to identify');
  }

  /**
   * Resolves once `predicate()` holds, checked every 10 ms; for state with no event of its own
   * (store contents, stats). Rejects with `description` after `timeoutMs`.
   */
  waitUntil(predicate: () => boolean, timeoutMs = 10_000, description = 'a condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    return new Promise((resolve, reject) => {
      const poll = { timer: setTimeout(() => check(), 0), reject };
      this.#polls.add(poll);
      const check = () => {
        if (predicate()) {
          this.#polls.delete(poll);
          return resolve();
        }
        if (Date.now() > deadline) {
          this.#polls.delete(poll);
          return reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${description}`));
        }
        poll.timer = setTimeout(check, 10);
      };
    });
  }

  /** Resolves with the first REST call, past or future, that matches. */
  waitForCall(predicate: (call: RecordedCall) => boolean, timeoutMs = 10_000): Promise<RecordedCall> {
    return this.log.waitFor(predicate, timeoutMs);
  }

  /** Resolves with the first `count` matching calls once that many arrived. */
  waitForCalls(predicate: (call: RecordedCall) => boolean, count: number, timeoutMs = 10_000): Promise<RecordedCall[]> {
    return this.log.waitForCount(predicate, count, timeoutMs);
  }

  /** Moves the emulator clock (interaction deadlines and token lifetimes) forward. */
  advanceTime(ms: number): void {
    this.clock.advance(ms);
  }

  // World building ---------------------------------------------------------------------------

  createUser(options: { username: string; bot?: boolean; globalName?: string }): APIUser {
    return this.world.createUser(options);
  }

  /** Adds a role; after login the client hears of it through GUILD_ROLE_CREATE, as from Discord. */
  createRole(options: { name: string; permissions: bigint; guildId?: string }): APIRole {
    const guildId = options.guildId ?? this.defaults.guildId;
    const role = this.world.createRole(guildId, options);
    if (this.gateway.current) this.gateway.dispatch({ t: GatewayDispatchEvents.GuildRoleCreate, d: { guild_id: guildId, role } });
    return role;
  }

  /** Adds a text channel (`nsfw`: age-restricted); after login the client hears of it through CHANNEL_CREATE. */
  createTextChannel(options: { name: string; guildId?: string; nsfw?: boolean }): APITextChannel {
    const channel = this.world.createTextChannel(options.guildId ?? this.defaults.guildId, options);
    if (this.gateway.current) this.gateway.dispatch({ t: GatewayDispatchEvents.ChannelCreate, d: { ...channel, guild_id: channel.guild_id! } });
    return channel;
  }

  /** Adds a public thread of a text channel (as age-restricted as its parent); after login, THREAD_CREATE. */
  createThread(options: { parentId: string; name: string; guildId?: string }): APIThreadChannel {
    const thread = this.world.createThread(options.guildId ?? this.defaults.guildId, options);
    if (this.gateway.current) {
      this.gateway.dispatch({ t: GatewayDispatchEvents.ThreadCreate, d: { ...structuredClone(thread), guild_id: thread.guild_id!, newly_created: true } });
    }
    return thread;
  }

  /**
   * Adds a member, or replaces an existing member's roles. No event is sent: GUILD_MEMBER_* need the
   * privileged GuildMembers intent; the bot sees the new roles in the next interaction or reaction.
   */
  addMember(options: { userId: string; roles?: string[]; guildId?: string }): void {
    this.world.addMember(options.guildId ?? this.defaults.guildId, options.userId, options.roles ?? []);
  }

  // Driving the bot ----------------------------------------------------------------------------

  /** Dispatches any gateway event to the connected (or resuming) session. */
  dispatch(event: DispatchInput): void {
    this.gateway.dispatch(event);
  }

  /** Sends a slash command as INTERACTION_CREATE and returns a handle on its responses. */
  sendCommand(options: SendCommandOptions): InteractionHandle {
    const guildId = options.guildId ?? this.defaults.guildId;
    const command = this.#findCommand(options.name, guildId);
    const state = this.#newInteraction(InteractionType.ApplicationCommand, options, guildId, options.channelId ?? this.defaults.channelId);
    state.payload = {
      ...this.#interactionBase(state, options),
      type: InteractionType.ApplicationCommand,
      data: chatInputData(options.name, command, options.options, this.#ids.next()),
    };
    return this.#send(state);
  }

  /**
   * Sends an autocomplete (INTERACTION_CREATE type 4): the command as typed so far, `focused` naming the option
   * being typed. The bot answers with type 8 (its choices are in `waitForResponse()`'s body).
   */
  sendAutocomplete(options: SendAutocompleteOptions): InteractionHandle {
    const guildId = options.guildId ?? this.defaults.guildId;
    const command = this.#findCommand(options.name, guildId);
    const state = this.#newInteraction(InteractionType.ApplicationCommandAutocomplete, options, guildId, options.channelId ?? this.defaults.channelId);
    const data = chatInputData(options.name, command, options.options, this.#ids.next());
    state.payload = {
      ...this.#interactionBase(state, options),
      type: InteractionType.ApplicationCommandAutocomplete,
      data: { ...data, options: focusOption(data.options ?? [], options.focused) },
    } as InteractionState['payload'];
    return this.#send(state);
  }

  /** Sends a button click (INTERACTION_CREATE type 3) on a stored message. */
  sendButton(options: SendButtonOptions): InteractionHandle {
    const stored = this.store.get(options.messageId);
    if (!stored) throw new Error(`Expected a stored message id, got \`${options.messageId}\``);
    const channelId = stored.message.channel_id;
    const guildId = options.guildId ?? this.world.findChannel(channelId)?.guild.id ?? this.defaults.guildId;
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
  seedMessage(options: {
    channelId?: string;
    authorId?: string;
    content?: string;
    embeds?: APIEmbed[];
    files?: { name: string; bytes: Buffer; contentType?: string }[];
    referenceMessageId?: string;
    /** When it was posted; its snowflake encodes this time. Default now. */
    createdAt?: Date;
  }): StoredMessage {
    const channelId = options.channelId ?? this.defaults.channelId;
    const found = this.world.findChannel(channelId);
    if (!found) throw new Error(`Expected a known channel id, got \`${channelId}\``);
    const files: UploadedFile[] = (options.files ?? []).map((f, i) => ({
      field: `files[${i}]`,
      name: f.name,
      contentType: f.contentType ?? 'image/png',
      bytes: f.bytes,
    }));
    return this.store.create({
      channelId,
      guildId: found.guild.id,
      author: this.world.user(options.authorId ?? this.defaults.botUserId),
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

  /** Op 7 RECONNECT: the client resumes on `resume_gateway_url`; events meanwhile are replayed. */
  reconnect(): void {
    this.gateway.reconnect();
  }

  /** Closes the gateway socket with `code` (default 4000, resumable). */
  disconnect(code?: number): void {
    this.gateway.disconnect(code);
  }

  /** Leaves the next `count` heartbeats without ACK; discord.js closes the zombie connection and resumes. */
  dropHeartbeatAcks(count = 1): void {
    this.gateway.dropHeartbeatAcks(count);
  }

  /** Replaces the rate-limit buckets (and resets their counters), e.g. `[]` for the generous default only. */
  setRateLimits(rules: RateLimitRule[]): void {
    this.rateLimiter.setRules(rules);
  }

  /** Op 9 INVALID_SESSION. */
  invalidateSession(resumable: boolean): void {
    this.gateway.invalidateSession(resumable);
  }

  /** The next `count` (default 1) matching requests are answered 429 with Retry-After `retryAfter` s (default 1). */
  injectRateLimit(match: RequestMatcher, options: Omit<InjectedFault, 'match' | 'status'> = {}): void {
    this.rateLimiter.inject('429', { ...options, match });
  }

  /** The next `count` (default 1) matching requests are answered `status` (default 500). */
  injectServerError(match: RequestMatcher, options: Pick<InjectedFault, 'count' | 'status'> = {}): void {
    this.rateLimiter.inject('5xx', { ...options, match });
  }

  // Reading back --------------------------------------------------------------------------------

  /** Messages in a channel (default: every channel) in the order they were stored, deleted ones left out. */
  messages(channelId?: string): StoredMessage[] {
    return this.store.list(channelId);
  }

  message(messageId: string): StoredMessage | undefined {
    return this.store.get(messageId);
  }

  /** Bytes of an attachment of a stored message. */
  attachmentBytes(messageId: string, index = 0): Buffer | undefined {
    const stored = this.store.get(messageId);
    const attachment = stored?.message.attachments[index];
    return attachment ? stored.files.get(attachment.id)?.bytes : undefined;
  }

  /** Registered application commands: global by default, or one guild's. */
  commands(guildId?: string): APIApplicationCommand[] {
    return this.#commands.get(guildId ?? 'global') ?? [];
  }

  interaction(id: string): InteractionState | undefined {
    return this.#interactionsById.get(id);
  }

  get gatewayStats(): GatewayStats {
    return this.gateway.stats;
  }

  /** Stops the server, drops every socket and pending waiter. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.log.close();
    for (const poll of this.#polls) {
      clearTimeout(poll.timer);
      poll.reject(new Error('The Discord emulator was closed while waiting'));
    }
    this.#polls.clear();
    await this.gateway.close();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // Internals ------------------------------------------------------------------------------------

  #createDefaultWorld(botUsername: string, guildName: string): EmulatorDefaults {
    const botUser = this.world.createUser({ username: botUsername, bot: true });
    const applicationId = botUser.id; // Discord gives a bot's application the same id as its user.
    const owner = this.world.createUser({ username: 'owner' });
    const alice = this.world.createUser({ username: 'alice', globalName: 'Alice' });
    const bob = this.world.createUser({ username: 'bob', globalName: 'Bob' });
    const moderator = this.world.createUser({ username: 'moderator', globalName: 'Mod' });
    const otherBot = this.world.createUser({ username: 'other-bot', bot: true });
    const guild = this.world.createGuild({ name: guildName, ownerId: owner.id });
    const moderatorRole = this.world.createRole(guild.id, {
      name: 'Moderator',
      permissions: PermissionFlagsBits.ManageMessages | PermissionFlagsBits.KickMembers,
    });
    const botRole = this.world.createRole(guild.id, { name: botUser.username, permissions: BOT_PERMISSIONS, managed: true, botId: botUser.id });
    const channel = this.world.createTextChannel(guild.id, { name: 'general' });
    this.world.addMember(guild.id, botUser.id, [botRole.id]);
    this.world.addMember(guild.id, owner.id);
    this.world.addMember(guild.id, alice.id);
    this.world.addMember(guild.id, bob.id);
    this.world.addMember(guild.id, moderator.id, [moderatorRole.id]);
    this.world.addMember(guild.id, otherBot.id);
    return {
      applicationId,
      botUserId: botUser.id,
      guildId: guild.id,
      channelId: channel.id,
      users: { owner, alice, bob, moderator, otherBot },
      roles: { everyone: guild.roles[0], moderator: moderatorRole, bot: botRole },
    };
  }

  #findCommand(name: string, guildId: string): APIApplicationCommand | undefined {
    const byName = (c: APIApplicationCommand) => c.name === name && c.type === 1;
    return this.#commands.get(guildId)?.find(byName) ?? this.#commands.get('global')?.find(byName);
  }

  #newInteraction(type: InteractionType, options: SendCommandOptions | SendButtonOptions, guildId: string, channelId: string): InteractionState {
    const id = this.#ids.next();
    // Real tokens are long opaque strings; keep the shape so URL handling is exercised.
    const token = `aW50ZXJhY3Rpb246${id}:${Buffer.from(id).toString('base64url')}${'x'.repeat(120)}`;
    const state: InteractionState = {
      id,
      token,
      type,
      applicationId: this.defaults.applicationId,
      guildId,
      channelId,
      userId: options.userId ?? this.defaults.users.alice.id,
      createdAt: this.clock.now(),
      attachmentSizeLimit: options.attachmentSizeLimit ?? this.settings.attachmentSizeLimit,
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
    return baseGuildInteraction(this.world, {
      id: state.id,
      token: state.token,
      applicationId: state.applicationId,
      botUserId: this.defaults.botUserId,
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
    this.#interactionsById.set(state.id, state);
    this.#interactionsByToken.set(state.token, state);
    // The deadline starts when Discord sends the event, as here.
    state.createdAt = this.clock.now();
    this.gateway.dispatch({ t: GatewayDispatchEvents.InteractionCreate, d: state.payload });
    return new InteractionHandle(state, this.log, this.store, this.clock, () => this.settings.interactionDeadlineMs);
  }

  #requireMessage(messageId: string, channelId?: string): StoredMessage {
    const stored = this.store.get(messageId);
    if (!stored || (channelId !== undefined && stored.message.channel_id !== channelId)) {
      throw new Error(`Expected a stored message \`${messageId}\`${channelId ? ` in channel \`${channelId}\`` : ''}`);
    }
    return stored;
  }

  async #onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.baseUrl);
    const method = (req.method ?? 'GET').toUpperCase();
    if (method === 'GET' && url.pathname.startsWith('/attachments/')) return this.#serveAttachment(url, res);
    if (this.#pages && !url.pathname.startsWith('/api/')) {
      try {
        if (await this.#pages(req, res, url)) return;
      } catch (error) {
        console.error('[discord-emulator] page handler crashed', method, url.pathname, error);
        if (!res.headersSent) res.statusCode = 500;
        res.end();
        return;
      }
    }

    let raw: Buffer;
    try {
      raw = await readBody(req, this.#maxRequestBytes);
    } catch {
      return this.#finish(res, this.#blankCall(method, url), { status: 413, json: errors.tooLarge().body }, {});
    }

    const apiMatch = /^\/api\/v(\d+)(\/.*)?$/.exec(url.pathname);
    const segments = (apiMatch?.[2] ?? '').split('/').filter(Boolean).map(safeDecode);
    const path = `/${segments.join('/')}`;
    const matched = apiMatch?.[1] === '10' ? this.#router.match(method, segments) : undefined;
    const route = matched && 'route' in matched ? matched.route : undefined;
    const params = matched && 'params' in matched ? matched.params : {};
    const call: RecordedCall = {
      ...this.#blankCall(method, url),
      route: route?.template ?? '(unknown)',
      path,
      params,
      headers: req.headers,
    };
    let headers: Record<string, string> = {};
    try {
      let body: ParsedBody = { json: undefined, files: [], multipart: false };
      try {
        body = await parseBody(req.headers['content-type'], raw);
      } finally {
        call.body = body.json;
        call.files = body.files;
        call.multipart = body.multipart;
      }
      if (!apiMatch) throw errors.notFound();
      if (apiMatch[1] !== '10') throw new ApiError(400, 50041, 'Invalid API version');
      if (!matched) {
        this.#warnUnknown(`${method} ${path}`);
        throw errors.notFound();
      }
      if (!route) throw new ApiError(405, 0, '405: Method Not Allowed');
      if (route.auth && req.headers.authorization !== `Bot ${this.token}`) throw errors.unauthorized();
      const channelId = params.channelId ?? this.#interactionsByToken.get(params.token ?? '')?.channelId;
      const decision = this.rateLimiter.decide({ method, route: route.template, path, params, channelId });
      headers = decision.headers;
      if (decision.serverError !== undefined) {
        this.stats.serverErrors++;
        throw errors.serverError(decision.serverError);
      }
      if (decision.limited) {
        this.stats.rateLimited++;
        const json = { message: 'You are being rate limited.', retry_after: decision.limited.retryAfter, global: decision.limited.global };
        return this.#finish(res, call, { status: 429, json }, headers);
      }
      const result = await route.handler({ method, route: route.template, path, params, query: url.searchParams, headers: req.headers, body });
      return this.#finish(res, call, result, headers);
    } catch (error) {
      if (error instanceof ApiError) return this.#finish(res, call, { status: error.status, json: error.body }, headers);
      // A bug in the emulator: answer like Discord's 500 and say so loudly in the test output.
      console.error('[discord-emulator] handler crashed', method, path, error);
      return this.#finish(res, call, { status: 500, json: { message: '500: Internal Server Error', code: 0 } }, headers);
    }
  }

  /** Says once per path that the emulator has no such route, so a test author sees the gap at once. */
  #warnUnknown(what: string): void {
    if (this.#warned.has(what)) return;
    this.#warned.add(what);
    console.warn(`[discord-emulator] no route for ${what}; answered 404 like an unknown Discord route`);
  }

  #blankCall(method: string, url: URL): RecordedCall {
    return {
      seq: 0,
      at: 0,
      method,
      route: '(unknown)',
      path: url.pathname,
      params: {},
      query: Object.fromEntries(url.searchParams),
      headers: {},
      body: undefined,
      files: [],
      multipart: false,
      status: 0,
      response: undefined,
      responseHeaders: {},
    };
  }

  #finish(res: ServerResponse, call: RecordedCall, result: { status: number; json?: unknown }, headers: Record<string, string>): void {
    this.stats.requests++;
    for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
    res.setHeader('Via', '1.1 google'); // Discord sits behind Google's front end; harmless, realistic.
    if (result.status === 204 || result.json === undefined) {
      // A 204 must carry no Content-Type: discord.js would try to parse the empty body as JSON.
      res.statusCode = result.status === 200 ? 204 : result.status;
      res.end();
    } else {
      const text = JSON.stringify(result.json);
      res.statusCode = result.status;
      res.setHeader('Content-Type', 'application/json');
      res.setHeader('Content-Length', Buffer.byteLength(text));
      res.end(text);
    }
    call.status = res.statusCode;
    call.response = result.json;
    call.responseHeaders = Object.fromEntries(Object.entries(res.getHeaders()).map(([k, v]) => [k.toLowerCase(), String(v)]));
    call.at = Date.now();
    call.seq = this.log.calls.length + 1;
    this.log.add(call);
  }

  #serveAttachment(url: URL, res: ServerResponse): void {
    const [, , , attachmentId] = url.pathname.split('/');
    for (const stored of this.store.list(undefined, true)) {
      const file = stored.files.get(attachmentId ?? '');
      if (file) {
        res.statusCode = 200;
        res.setHeader('Content-Type', file.contentType);
        res.setHeader('Content-Length', file.bytes.length);
        res.end(file.bytes);
        return;
      }
    }
    res.statusCode = 404;
    res.end();
  }
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Buffers a request body, refusing more than `limit` bytes. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new Error('too large'));
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export { pngSize };
export type { InteractionState };

/** Marks the option named `name` focused, at any depth (an option of a subcommand of a group). */
function focusOption<O extends { name: string; options?: unknown }>(list: readonly O[], name: string): O[] {
  return list.map((o) => {
    if (Array.isArray(o.options)) return { ...o, options: focusOption(o.options as O[], name) };
    return o.name === name ? { ...o, focused: true } : o;
  });
}
