/**
 * Wiring only: config → store → sampler → queue → delivery → Discord client, and a graceful shutdown.
 */
import path from 'node:path';
import { ConfigError, loadConfig, type Config } from './config.js';

function readConfigOrExit(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`imagine: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
}

async function main(): Promise<void> {
  const config = readConfigOrExit();
  // Loaded after the config check, so a bad .env fails in milliseconds, before discord.js or onnxruntime load.
  const [
    { createLogger },
    { openDatabase },
    { SettingsStore },
    { createSampler },
    { FairQueue },
    { JobMessenger },
    { createClient },
    { attachHandlers },
    { COMMANDS },
  ] = await Promise.all([
    import('./discord/log.js'),
    import('./store/database.js'),
    import('./store/settings.js'),
    import('./discord/sampler.js'),
    import('./queue/fair-queue.js'),
    import('./delivery/job-messenger.js'),
    import('./discord/client.js'),
    import('./discord/bot.js'),
    import('./discord/commands.js'),
  ]);
  const logger = createLogger();
  process.on('unhandledRejection', (reason) => logger.error('unhandled rejection', { error: String(reason) }));

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
  const sampler = await createSampler(config, logger);
  const model = await sampler.info();
  logger.info('model loaded', { model: model.name, width: model.width, height: model.height, sampler: config.sampler });

  const client = createClient({ apiUrl: config.discordApiUrl });
  // Deliveries of jobs from before a restart may start before the gateway is up: REST needs the token now.
  client.rest.setToken(config.discordToken);

  let messenger: InstanceType<typeof JobMessenger> | undefined;
  const queue = new FairQueue({
    db,
    sampler,
    deliver: (job, result, context) => messenger!.deliver(job, result, context),
    resultsDir: path.join(config.dataDir, 'results'),
    concurrency: config.samplerWorkers,
    memberCap: (guildId) => settings.get(guildId).perMemberCap,
    globalCap: config.queueMaxTotal,
    jobTimeoutMs: config.jobTimeoutMs,
    logger,
  });
  messenger = new JobMessenger({ rest: client.rest, queue, editIntervalMs: config.editIntervalMs, logger });

  attachHandlers(client, COMMANDS, {
    config,
    queue,
    messenger,
    settings,
    model,
    guidanceDefault: config.guidanceDefault,
    logger,
  });

  let stopping = false;
  const stop = async (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info('shutting down', { signal });
    try {
      const report = await queue.shutdown();
      await messenger!.announceRestart(report.waiting);
      logger.info('stopped', { waiting: report.waiting.length, requeued: report.requeued });
    } catch (error) {
      logger.error('shutdown did not finish cleanly', { error: String(error) });
    }
    messenger!.close();
    await client.destroy();
    await sampler.close();
    db.close();
    process.exit(0);
  };
  process.once('SIGTERM', (signal) => void stop(signal));
  process.once('SIGINT', (signal) => void stop(signal));

  await client.login(config.discordToken);
  const report = await queue.resume();
  logger.info('ready', { ...report });
}

main().catch((error: unknown) => {
  process.stderr.write(`imagine: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
