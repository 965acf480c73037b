/**
 * The bot as one object: journal, settings, engine, fair queue, delivery and the Discord client, started in
 * that order and stopped in reverse. src/index.ts runs it as a process; end-to-end tests run it in-process;
 * startPlaygroundApp (below) runs it against the local playground when there is no token.
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import type { Client, ClientOptions } from 'discord.js';
import type { Config } from './config.js';
import type { ModelInfo, ImageEngine } from './diffusion/types.js';
import { JobMessenger } from './delivery/job-messenger.js';
import { FairQueue } from './queue/fair-queue.js';
import type { DeliverFn, JobQueue, ResumeReport, ShutdownReport } from './queue/types.js';
import { journalWritable, openDatabase, type Db } from './store/database.js';
import { startJournalSweeps } from './store/housekeeping.js';
import { SettingsStore } from './store/settings.js';
import { ModerationLog } from './store/moderation-log.js';
import { attachHandlers } from './discord/bot.js';
import { channelAgeRestricted } from './discord/channel-age.js';
import { createClient, gatewayConnected, inviteUrl } from './discord/client.js';
import { COMMANDS } from '../commands/index.js';
import { createLogger, type Logger } from './log.js';
import { createEngine } from './diffusion/engine/create.js';
import { engineModels } from './models/library.js';
import { startMetricsServer, type MetricsServer } from './metrics/server.js';
import { startPlayground, type Playground } from './playground/start.js';

/** Stable Diffusion's usual guidance, for models that do not say theirs. */
const SD_GUIDANCE = 7.5;

export interface AppOverrides {
  /** Use this engine instead of the one the config names (tests share one worker pool). */
  engine?: ImageEngine;
  /** Extra discord.js client options (tests skip the identify throttle). */
  clientOptions?: Partial<ClientOptions>;
  logger?: Logger;
}

export interface App {
  readonly config: Config;
  readonly client: Client;
  /** The embedded FairQueue, or with REDIS_URL the scaled RedisJobQueue. */
  readonly queue: JobQueue;
  readonly messenger: JobMessenger;
  readonly settings: SettingsStore;
  readonly db: Db;
  readonly engine: ImageEngine;
  readonly model: ModelInfo;
  /** What the journal held when the app started. */
  readonly resumed: ResumeReport;
  /** The Prometheus metrics and /healthz endpoint, when `METRICS_PORT` is set. */
  readonly metrics: MetricsServer | undefined;
  /**
   * Graceful stop: take no new jobs, stop the running one so it stays queued, tell waiting members their place
   * is kept, close the client, the engine (unless it was passed in) and the database.
   */
  stop(): Promise<ShutdownReport>;
}

export async function startApp(config: Config, overrides: AppOverrides = {}): Promise<App> {
  const token = config.discordToken;
  if (token === undefined) throw new Error('startApp needs DISCORD_TOKEN; with none, start the playground (startPlaygroundApp)');
  const logger = overrides.logger ?? createLogger({ level: config.logLevel });
  const db = openDatabase({ dataDir: config.dataDir });
  const stopSweeps = startJournalSweeps(db, {
    retentionDays: config.jobRetentionDays,
    onSweep: (report) => logger.info('journal swept', { ...report }),
    onError: (error) => logger.warn('journal sweep failed', { error }),
  });
  const settings = new SettingsStore(db, {
    defaults: {
      stepsDefault: config.stepsDefault,
      stepsMax: config.stepsMax,
      perMemberCap: config.queueMaxPerMember,
      bannedWords: [],
      rerollWho: 'requester',
      moderatorRoleIds: [],
    },
    hardStepsCap: config.stepsHardCap,
  });
  const ownEngine = overrides.engine === undefined;
  let messenger: JobMessenger | undefined;
  const deliver: DeliverFn = (job, result, context) => messenger!.deliver(job, result, context);
  let engine: ImageEngine;
  let queue: JobQueue;
  if (config.redisUrl !== undefined && overrides.engine === undefined) {
    // Scaled mode (issue 11): this process talks to Discord and loads no model; `npm run worker` processes
    // make the pictures through Redis. The model facts come from what the workers published.
    const { RedisJobQueue } = await import('./scale/redis-queue.js');
    const { RemoteEngine, publishedDefaultModel } = await import('./scale/remote-engine.js');
    const redis = { url: config.redisUrl };
    const defaultModel = await publishedDefaultModel(redis, logger);
    const scaled = new RedisJobQueue({
      redis,
      db,
      deliver,
      resultsDir: path.join(config.dataDir, 'results'),
      instance: config.botInstance,
      memberCap: (guildId) => settings.get(guildId).perMemberCap,
      globalCap: config.queueMaxTotal,
      logger,
    });
    queue = scaled;
    engine = new RemoteEngine(defaultModel, scaled);
  } else {
    engine = overrides.engine ?? (await createEngine(config, logger, engineModels(config.modelsDir)));
    queue = new FairQueue({
      db,
      engine,
      deliver,
      resultsDir: path.join(config.dataDir, 'results'),
      concurrency: config.engineWorkers,
      // The queue picks batches (fairly); the pool's own grouping stays off so it cannot bypass that order.
      maxBatchImages: config.batchImages,
      memberCap: (guildId) => settings.get(guildId).perMemberCap,
      globalCap: config.queueMaxTotal,
      jobTimeoutMs: config.jobTimeoutMs,
      logger,
    });
  }
  const model = await engine.info();
  logger.info('model ready', { model: model.name, width: model.width, height: model.height, engine: config.redisUrl ? 'redis' : config.engine });

  const client = createClient({ apiUrl: config.discordApiUrl, extra: overrides.clientOptions });
  // Deliveries of jobs from before a restart may start before the gateway is up: REST needs the token now.
  client.rest.setToken(token);

  // Safety (issue 14): the server's rules at delivery, the log of held-back and deleted pictures.
  const moderationLog = new ModerationLog(db);
  messenger = new JobMessenger({
    rest: client.rest,
    queue,
    settings,
    moderationLog,
    modelChecked: model.safetyChecker === true,
    editIntervalMs: config.editIntervalMs,
    channelEditsPerMinute: config.editsPerChannelPerMinute,
    logger,
  });
  attachHandlers(client, COMMANDS, {
    config,
    queue,
    messenger,
    settings,
    model,
    guidanceDefault: config.guidanceDefault ?? model.defaultGuidance ?? SD_GUIDANCE,
    models: async () =>
      engine.models ? engine.models() : [{ name: model.name, dir: '', bytes: 0, isDefault: true, estimatedBytes: 0, info: model }],
    logger,
    moderationLog,
    channelAgeRestricted: (channelId) => channelAgeRestricted(client, channelId),
  });

  client.once('clientReady', (ready) => {
    logger.info('connected', { user: ready.user.tag, guilds: ready.guilds.cache.size, invite: inviteUrl(ready.application.id) });
  });
  // Metrics (METRICS_PORT) listen before resume(), so the jobs it carries over are counted; /healthz says 503
  // until the gateway is up.
  const metrics =
    config.metricsPort === undefined
      ? undefined
      : await startMetricsServer({
          host: config.metricsHost,
          port: config.metricsPort,
          queue,
          engine,
          rest: client.rest,
          checks: {
            gateway: () => gatewayConnected(client),
            journal: () => journalWritable(db),
          },
          logger,
        });
  // The journal first: a command that arrives the moment the gateway is up must find the queue already open.
  const resumed = await queue.resume();
  await client.login(token);
  logger.info('ready', { ...resumed });

  let stopping: Promise<ShutdownReport> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await metrics?.close();
      const report = await queue.shutdown();
      await messenger!.announceRestart(report.waiting);
      messenger!.close();
      await client.destroy();
      if (ownEngine) await engine.close();
      stopSweeps();
      db.close();
      logger.info('stopped', { waiting: report.waiting.length, requeued: report.requeued });
      return report;
    })());

  return { config, client, queue, messenger, settings, db, engine, model, resumed, metrics, stop };
}

// ---- The local playground (issue 15) ---------------------------------------------------------------------------

export interface PlaygroundApp extends App {
  readonly playground: Playground;
}

/**
 * The same bot against the built-in Discord emulator: the emulator and its page start on 127.0.0.1
 * (`PLAYGROUND_PORT`), the commands are registered in it, and startApp runs with its token and URL. The journal
 * is `DATA_DIR/playground`, emptied at each start because the emulated server is new each time. `stop()` stops
 * the bot, then the playground.
 */
export async function startPlaygroundApp(config: Config, overrides: AppOverrides = {}): Promise<PlaygroundApp> {
  const logger = overrides.logger ?? createLogger({ level: config.logLevel });
  const playground = await startPlayground({
    port: config.playgroundPort,
    commands: [...COMMANDS.values()].map((command) => command.data),
    logger,
  });
  let app: App | undefined;
  try {
    const dataDir = path.join(config.dataDir, 'playground');
    rmSync(dataDir, { recursive: true, force: true });
    const local = Object.freeze({ ...config, discordToken: playground.token, discordApiUrl: playground.apiUrl, dataDir });
    app = await startApp(local, { ...overrides, logger });
    await playground.waitForBot();
  } catch (error) {
    await app?.stop();
    await playground.close();
    throw error;
  }
  const started = app;
  logger.info('local playground ready', { url: playground.url, note: playground.notice });
  return {
    ...started,
    playground,
    async stop() {
      const report = await started.stop();
      await playground.close();
      return report;
    },
  };
}
