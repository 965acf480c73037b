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
 * ## The rest of the API: ./README.md
 * README.md, next to this file, is the guide to the whole API: the world
 * (`emulator.defaults`, `createUser`, `createRole`, `addMember`, `createTextChannel`, `createThread`), driving the
 * bot (`sendCommand` → {@link InteractionHandle}, `sendButton`, `addReaction`, `seedMessage`, `reconnect`,
 * `disconnect`, `invalidateSession`, `dropHeartbeatAcks`, `dispatch`), rules and faults (`advanceTime`, limits,
 * `rateLimits` / `setRateLimits`, `injectRateLimit`, `injectServerError`, `stats`), reading back (`waitUntil`,
 * `calls`, `waitForCall(s)`, `messages`, `message`, `commands`, `gatewayStats`), the playground's hooks
 * (`port`, `botUsername`, `guildName`, `servePages`, `store.subscribe`) and which file holds what.
 * Options: {@link EmulatorOptions} (options.ts); every member of {@link DiscordEmulator} is documented below.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type {
  APIApplicationCommand,
  APIAttachment,
  APIRole,
  APITextChannel,
  APIThreadChannel,
  APIUser,
} from 'discord-api-types/v10';
import { assembleEmulator } from './assemble.js';
import { CallLog, type RecordedCall } from './call-log.js';
import { EmulatorClock } from './clock.js';
import type { BotDriver, SeedMessageOptions } from './driver.js';
import type { EmulatorDefaults } from './defaults.js';
import { shardOfGuild, type DispatchInput, type Gateway, type GatewayStats } from './gateway.js';
import type { EmulatorStats, PageHandler } from './http.js';
import type { InteractionHandle, InteractionState, SendAutocompleteOptions, SendButtonOptions, SendCommandOptions } from './interactions.js';
import { pngSize, type MessageStore, type StoredMessage } from './message-store.js';
import type { EmulatorOptions } from './options.js';
import { Polls } from './polls.js';
import type { InjectedFault, RateLimiter, RateLimitRule, RequestMatcher } from './rate-limits.js';
import type { EmulatorCore } from './rest-routes.js';
import type { UploadedAttachment } from './routes/shared.js';
import type { SnowflakeFactory } from './snowflake.js';
import type { World } from './world.js';
import * as worldBuilding from './world-building.js';

export type { RecordedCall } from './call-log.js';
export type { StoredMessage } from './message-store.js';
export type { UploadedFile } from './multipart.js';
export type { RateLimitRule, RequestMatcher, InjectedFault } from './rate-limits.js';
export type { SendCommandOptions, SendButtonOptions, SendAutocompleteOptions } from './interactions.js';
export { InteractionHandle } from './interactions.js';
export { channelWebhookEditRule, defaultRateLimitRules } from './rate-limits.js';
export { MESSAGE_LIMITS } from './message-limits.js';
export { COMMAND_LIMITS } from './command-limits.js';
export type { EmulatorDefaults } from './defaults.js';
export type { EmulatorStats, PageHandler } from './http.js';
export type { EmulatorOptions } from './options.js';

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
  readonly #interactionsById: Map<string, InteractionState>;
  readonly #commands: Map<string, APIApplicationCommand[]>;
  readonly #uploads: Map<string, UploadedAttachment>;
  readonly #driver: BotDriver;
  #port = 0;
  #closed = false;
  readonly #polls = new Polls();
  readonly #listenPort: number;
  #pages: PageHandler | undefined;

  /** What world building changes and tells (world-building.ts). */
  get #worldParts(): worldBuilding.WorldParts {
    return { world: this.world, gateway: this.gateway, ids: this.#ids, defaults: this.defaults };
  }

  private constructor(options: EmulatorOptions) {
    const { core, defaults, gateway, rateLimiter, driver, server } = assembleEmulator(options, this, {
      baseUrl: () => this.baseUrl,
      gatewayUrl: () => this.gatewayUrl,
      resumeGatewayUrl: () => this.resumeGatewayUrl,
      pages: () => this.#pages,
    });
    this.token = core.token;
    this.world = core.world;
    this.store = core.store;
    this.settings = core.settings;
    this.defaults = defaults;
    this.gateway = gateway;
    this.rateLimiter = rateLimiter;
    this.#ids = core.ids;
    this.#interactionsById = core.interactionsById;
    this.#commands = core.commands;
    this.#uploads = core.uploads;
    this.#driver = driver;
    this.#server = server;
    this.#listenPort = options.port ?? 0;
  }

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

  /**
   * Resolves when a client has identified and got READY and every GUILD_CREATE; sharded, when every shard of
   * the count the latest IDENTIFY gave has a live session.
   */
  waitForReady(timeoutMs = 30_000): Promise<void> {
    return this.gateway.waitUntil(() => this.gateway.allShardsLive, timeoutMs, 'a client to identify');
  }

  /** `[shard_id, num_shards]` of every IDENTIFY so far, in order. */
  get identifiedShards(): ReadonlyArray<readonly [number, number]> {
    return this.gateway.identifiedShards;
  }

  /** The shard that holds `guildId` out of `numShards`: `(guild_id >> 22) % num_shards`. */
  shardOf(guildId: string, numShards = this.gateway.recommendedShards): number {
    return shardOfGuild(guildId, numShards);
  }

  /**
   * Resolves once `predicate()` holds, checked every 10 ms; for state with no event of its own
   * (store contents, stats). Rejects with `description` after `timeoutMs`.
   */
  waitUntil(predicate: () => boolean, timeoutMs = 10_000, description = 'a condition'): Promise<void> {
    return this.#polls.waitUntil(predicate, timeoutMs, description);
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
    return worldBuilding.createRole(this.#worldParts, options);
  }

  /** Adds a text channel (`nsfw`: age-restricted); after login the client hears of it through CHANNEL_CREATE. */
  createTextChannel(options: { name: string; guildId?: string; nsfw?: boolean }): APITextChannel {
    return worldBuilding.createTextChannel(this.#worldParts, options);
  }

  /** Adds a public thread of a text channel (as age-restricted as its parent); after login, THREAD_CREATE. */
  createThread(options: { parentId: string; name: string; guildId?: string }): APIThreadChannel {
    return worldBuilding.createThread(this.#worldParts, options);
  }

  /**
   * Adds a member, or replaces an existing member's roles. No event is sent: GUILD_MEMBER_* need the
   * privileged GuildMembers intent; the bot sees the new roles in the next interaction or reaction.
   */
  addMember(options: { userId: string; roles?: string[]; guildId?: string }): void {
    this.world.addMember(options.guildId ?? this.defaults.guildId, options.userId, options.roles ?? []);
  }

  /**
   * Adds a guild like the default one: the owner, the bot (with its managed role), alice, bob and a #general.
   * `shard` (with the emulator's `shards` option) picks an id that `(guild_id >> 22) % shards` maps to that
   * shard. After login, the shard that holds it hears of it through GUILD_CREATE.
   */
  createGuild(options: { name: string; shard?: number }): { guildId: string; channelId: string } {
    return worldBuilding.createGuild(this.#worldParts, options);
  }

  // Driving the bot ----------------------------------------------------------------------------

  /** Dispatches any gateway event to the connected (or resuming) session. */
  dispatch(event: DispatchInput): void {
    this.gateway.dispatch(event);
  }

  /** Sends a slash command as INTERACTION_CREATE and returns a handle on its responses. */
  sendCommand(options: SendCommandOptions): InteractionHandle {
    return this.#driver.sendCommand(options);
  }

  /**
   * Sends an autocomplete (INTERACTION_CREATE type 4): the command as typed so far, `focused` naming the option
   * being typed. The bot answers with type 8 (its choices are in `waitForResponse()`'s body).
   */
  sendAutocomplete(options: SendAutocompleteOptions): InteractionHandle {
    return this.#driver.sendAutocomplete(options);
  }

  /**
   * A file a member attaches to a slash command's attachment option: pass the returned attachment's `id` as that
   * option's value in `sendCommand`, and the interaction carries it in `data.resolved.attachments`, as Discord's
   * does. Served at its `url` by this emulator's CDN (after `delayMs`, for a slow download), unless `url` names
   * another address (an unreachable one). `size` and `contentType` default to the bytes' length and image/png.
   */
  uploadAttachment(options: { filename: string; bytes: Buffer | Uint8Array; contentType?: string; size?: number; url?: string; delayMs?: number }): APIAttachment {
    const id = this.#ids.next();
    const bytes = Buffer.from(options.bytes);
    const contentType = options.contentType ?? 'image/png';
    const url = options.url ?? `${this.baseUrl}/attachments/uploads/${id}/${encodeURIComponent(options.filename)}`;
    const size = pngSize(bytes);
    const attachment: APIAttachment = {
      id,
      filename: options.filename,
      size: options.size ?? bytes.length,
      url,
      proxy_url: url,
      content_type: contentType,
      ...(size ? { width: size.width, height: size.height } : {}),
      ephemeral: true,
    };
    this.#uploads.set(id, { attachment, bytes, contentType, delayMs: options.delayMs ?? 0 });
    return attachment;
  }

  /** Sends a button click (INTERACTION_CREATE type 3) on a stored message. */
  sendButton(options: SendButtonOptions): InteractionHandle {
    return this.#driver.sendButton(options);
  }

  /** A member reacts: stores the reaction and dispatches MESSAGE_REACTION_ADD with `member`. */
  addReaction(options: { userId: string; messageId: string; emoji: string; channelId?: string; burst?: boolean }): void {
    this.#driver.addReaction(options);
  }

  removeReaction(options: { userId: string; messageId: string; emoji: string; channelId?: string }): void {
    this.#driver.removeReaction(options);
  }

  /**
   * Puts a message in a channel without telling the client (no MESSAGE_CREATE), like one sent
   * before the bot started. Default author: the bot; `files` become attachments.
   */
  seedMessage(options: SeedMessageOptions): StoredMessage {
    return this.#driver.seedMessage(options);
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
    this.#polls.close();
    await this.gateway.close();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

export { pngSize };
export type { InteractionState };
