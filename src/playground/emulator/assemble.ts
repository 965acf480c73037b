/**
 * The emulator's parts wired together: ids and world, message store, rate limiter, gateway, REST routes, the bot
 * driver and the HTTP server with its WebSocket upgrade. DiscordEmulator (index.ts) builds them through this and
 * stays its public API.
 */
import { createServer, type Server } from 'node:http';
import type { APIApplicationCommand } from 'discord-api-types/v10';
import { createLogger } from '../../log.js';
import type { CallLog } from './call-log.js';
import type { EmulatorClock } from './clock.js';
import { BotDriver } from './driver.js';
import { createDefaultWorld, fakeToken, type EmulatorDefaults } from './defaults.js';
import { Gateway } from './gateway.js';
import { worldGatewayHooks } from './gateway-hooks.js';
import { EmulatorHttp, type EmulatorStats, type PageHandler } from './http.js';
import type { InteractionState } from './interactions.js';
import { MESSAGE_LIMITS } from './message-limits.js';
import { MessageStore } from './message-store.js';
import type { EmulatorOptions } from './options.js';
import { defaultRateLimitRules, RateLimiter } from './rate-limits.js';
import { registerRoutes, type EmulatorCore } from './rest-routes.js';
import type { UploadedAttachment } from './routes/shared.js';
import { Router } from './router.js';
import { SnowflakeFactory } from './snowflake.js';
import { World } from './world.js';

/** What the emulator owns before its parts exist (its clock, call log and counters are fields of its own). */
export interface EmulatorShared {
  readonly clock: EmulatorClock;
  readonly log: CallLog;
  readonly stats: EmulatorStats;
}

/** The emulator's addresses, known once it listens, and the pages it serves; read when a request needs them. */
export interface EmulatorUrls {
  baseUrl(): string;
  gatewayUrl(): string;
  resumeGatewayUrl(): string;
  pages(): PageHandler | undefined;
}

export interface EmulatorParts {
  core: EmulatorCore;
  defaults: EmulatorDefaults;
  gateway: Gateway;
  rateLimiter: RateLimiter;
  driver: BotDriver;
  server: Server;
}

/** Builds and wires every part of an emulator; nothing listens yet. */
export function assembleEmulator(options: EmulatorOptions, shared: EmulatorShared, urls: EmulatorUrls): EmulatorParts {
  const logger = options.logger ?? createLogger({ level: 'warn' });
  const settings = {
    interactionDeadlineMs: options.interactionDeadlineMs ?? 3_000,
    tokenLifetimeMs: options.tokenLifetimeMs ?? 15 * 60_000,
    attachmentSizeLimit: options.attachmentSizeLimit ?? MESSAGE_LIMITS.fileBytes,
  };
  const ids = new SnowflakeFactory(shared.clock);
  const world = new World(ids);
  const store = new MessageStore(
    ids,
    (channelId, attachmentId, filename) => `${urls.baseUrl()}/attachments/${channelId}/${attachmentId}/${encodeURIComponent(filename)}`,
    options.resolveAttachmentUrls ?? false,
    (error) => logger.error('discord emulator: a message listener failed', { error }),
  );
  const rateLimiter = new RateLimiter(options.rateLimits ?? defaultRateLimitRules());
  const defaults = createDefaultWorld(world, options.botUsername ?? 'imagine-test-bot', options.guildName ?? 'Emulated Guild');
  const token = options.token ?? fakeToken(defaults.botUserId);
  const gateway = new Gateway({
    token,
    privilegedIntents: options.privilegedIntents ?? 0,
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? 41_250,
    resumeUrl: () => urls.resumeGatewayUrl(),
    newSessionId: () => ids.next(),
    shards: options.shards ?? 1,
    ...worldGatewayHooks(world, defaults, () => urls.resumeGatewayUrl()),
  });
  const interactionsByToken = new Map<string, InteractionState>();
  const uploads = new Map<string, UploadedAttachment>();
  const core: EmulatorCore = {
    token,
    applicationId: defaults.applicationId,
    bot: world.user(defaults.botUserId),
    world,
    store,
    ids,
    clock: shared.clock,
    interactionsById: new Map<string, InteractionState>(),
    interactionsByToken,
    commands: new Map<string, APIApplicationCommand[]>(),
    settings,
    uploads,
    gatewayUrl: () => urls.gatewayUrl(),
    shards: options.shards ?? 1,
    dispatch: (event) => gateway.dispatchIfConnected(event),
  };
  const driver = new BotDriver(core, gateway, shared.log, defaults);
  const router = new Router();
  registerRoutes(router, core);
  const http = new EmulatorHttp({
    router,
    token,
    maxRequestBytes: options.maxRequestBytes ?? 30 * 1024 * 1024,
    rateLimiter,
    stats: shared.stats,
    log: shared.log,
    store,
    uploads,
    logger,
    baseUrl: () => urls.baseUrl(),
    pages: () => urls.pages(),
    channelOfToken: (token) => interactionsByToken.get(token)?.channelId,
  });
  const server = createServer((req, res) => void http.handle(req, res));
  server.on('upgrade', (req, socket, head) => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    if (path === '/gateway' || path === '/gateway-resume') gateway.handleUpgrade(req, socket, head);
    else socket.destroy();
  });
  return { core, defaults, gateway, rateLimiter, driver, server };
}
