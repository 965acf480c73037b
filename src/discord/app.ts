/**
 * The bot as one object: journal, settings, sampler, fair queue, delivery and the Discord client, started in
 * that order and stopped in reverse. src/index.ts runs it as a process; end-to-end tests run it in-process.
 */
import path from 'node:path';
import type { Client, ClientOptions } from 'discord.js';
import type { Config } from '../config.js';
import type { ModelInfo, Sampler } from '../diffusion/types.js';
import { JobMessenger, type Logger } from '../delivery/job-messenger.js';
import { FairQueue } from '../queue/fair-queue.js';
import type { ResumeReport, ShutdownReport } from '../queue/types.js';
import { openDatabase, type Db } from '../store/database.js';
import { SettingsStore } from '../store/settings.js';
import { attachHandlers } from './bot.js';
import { createClient, inviteUrl } from './client.js';
import { COMMANDS } from './commands.js';
import { createLogger } from './log.js';
import { createSampler } from './sampler.js';

/** Stable Diffusion's usual guidance, for models that do not say theirs. */
const SD_GUIDANCE = 7.5;

export interface AppOverrides {
  /** Use this sampler instead of the one the config names (tests share one worker pool). */
  sampler?: Sampler;
  /** Extra discord.js client options (tests skip the identify throttle). */
  clientOptions?: Partial<ClientOptions>;
  logger?: Logger;
}

export interface App {
  readonly config: Config;
  readonly client: Client;
  readonly queue: FairQueue;
  readonly messenger: JobMessenger;
  readonly settings: SettingsStore;
  readonly db: Db;
  readonly sampler: Sampler;
  readonly model: ModelInfo;
  /** What the journal held when the app started. */
  readonly resumed: ResumeReport;
  /**
   * Graceful stop: take no new jobs, stop the running one so it stays queued, tell waiting members their place
   * is kept, close the client, the sampler (unless it was passed in) and the database.
   */
  stop(): Promise<ShutdownReport>;
}

export async function startApp(config: Config, overrides: AppOverrides = {}): Promise<App> {
  const logger = overrides.logger ?? createLogger();
  const db = openDatabase({ dataDir: config.dataDir });
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
  const ownSampler = overrides.sampler === undefined;
  const sampler = overrides.sampler ?? (await createSampler(config, logger));
  const model = await sampler.info();
  logger.info('model ready', { model: model.name, width: model.width, height: model.height, sampler: config.sampler });

  const client = createClient({ apiUrl: config.discordApiUrl, extra: overrides.clientOptions });
  // Deliveries of jobs from before a restart may start before the gateway is up: REST needs the token now.
  client.rest.setToken(config.discordToken);

  let messenger: JobMessenger | undefined;
  const queue = new FairQueue({
    db,
    sampler,
    deliver: (job, result, context) => messenger!.deliver(job, result, context),
    resultsDir: path.join(config.dataDir, 'results'),
    concurrency: config.samplerWorkers,
    // The queue picks batches (fairly); the pool's own grouping stays off so it cannot bypass that order.
    maxBatchImages: config.batchImages,
    memberCap: (guildId) => settings.get(guildId).perMemberCap,
    globalCap: config.queueMaxTotal,
    jobTimeoutMs: config.jobTimeoutMs,
    logger,
  });
  messenger = new JobMessenger({
    rest: client.rest,
    queue,
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
    logger,
  });

  client.once('clientReady', (ready) => {
    logger.info('connected', { user: ready.user.tag, guilds: ready.guilds.cache.size, invite: inviteUrl(ready.application.id) });
  });
  // The journal first: a command that arrives the moment the gateway is up must find the queue already open.
  const resumed = await queue.resume();
  await client.login(config.discordToken);
  logger.info('ready', { ...resumed });

  let stopping: Promise<ShutdownReport> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      const report = await queue.shutdown();
      await messenger!.announceRestart(report.waiting);
      messenger!.close();
      await client.destroy();
      if (ownSampler) await sampler.close();
      db.close();
      logger.info('stopped', { waiting: report.waiting.length, requeued: report.requeued });
      return report;
    })());

  return { config, client, queue, messenger, settings, db, sampler, model, resumed, stop };
}
