/**
 * `npm run worker`: one image worker process for the scaled mode (README, "More than one GPU"). It needs
 * REDIS_URL, loads the models it serves (WORKER_MODELS, else every installed one), and makes pictures for every
 * bot process that shares that Redis. It never reads DISCORD_TOKEN. SIGTERM/SIGINT: take no new job, finish the
 * current one, leave, exit 0.
 */
import '../node-version.js';
import { ConfigError, loadConfig, type Config } from '../config.js';

function readConfigOrExit(): Config {
  try {
    const config = loadConfig();
    if (config.redisUrl === undefined) throw new ConfigError('`npm run worker` needs `REDIS_URL` (the Redis the bot uses; see the README, "More than one GPU")');
    return config;
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`imagine worker: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
}

async function main(): Promise<void> {
  const config = readConfigOrExit();
  const [{ createLogger }, { createEngine }, { engineModels }, { ImageWorker }, { stopWithin, SHUTDOWN_TIMEOUT_MS }] = await Promise.all([
    import('../log.js'),
    import('../diffusion/engine/create.js'),
    import('../models/library.js'),
    import('../scale/image-worker.js'),
    import('../lifecycle.js'),
  ]);
  const logger = createLogger({ level: config.logLevel });
  const engine = await createEngine(config, logger, engineModels(config.modelsDir));
  const worker = await ImageWorker.start({
    redis: { url: config.redisUrl! },
    engine,
    ...(config.workerModels !== undefined ? { models: config.workerModels } : {}),
    maxBatchImages: config.batchImages,
    jobTimeoutMs: config.jobTimeoutMs,
    lockDurationMs: config.workerLockMs,
    logger,
  });
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info('stopping: finishing the current picture, taking no new one', { signal });
    void stopWithin(
      async () => {
        await worker.close();
        await engine.close();
      },
      // A picture may take longer than the bot's shutdown bound; the job timeout bounds it instead.
      Math.max(SHUTDOWN_TIMEOUT_MS, config.jobTimeoutMs),
      logger,
    ).then((clean) => {
      logger.info('stopped', { clean });
      process.exit(clean ? 0 : 1);
    });
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((error: unknown) => {
  const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
  process.stderr.write(`imagine worker: ${text}\n`);
  process.exit(1);
});
