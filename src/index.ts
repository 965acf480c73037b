/**
 * `npm start`: read the config (a bad one is one line and exit 1, before anything starts), start the bot, and
 * stop it gracefully on SIGTERM/SIGINT (exit 0; waiting jobs keep their place for the next start; past lifecycle.ts's
 * bound the journal is closed and the process ends itself with SIGKILL). An uncaught exception exits 1 after closing the journal.
 * With no DISCORD_TOKEN (or `npm run playground`, `--playground`) the same bot runs in the local playground.
 * With DISCORD_SHARDS above 1 (or `auto`; needs REDIS_URL) this process is only discord.js's ShardingManager: it
 * forks this same file once per gateway shard (each a normal scaled bot) and on SIGTERM/SIGINT passes SIGTERM on,
 * waits for every shard to stop, and exits 0. A shard that keeps exiting is given up on (src/discord/shard-restarts.ts);
 * with none left, the manager exits 1.
 */
import './node-version.js'; // first: an older Node gets one line before any dependency loads
import { fileURLToPath } from 'node:url';
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
  const [{ createLogger }, { guardProcess, SHUTDOWN_TIMEOUT_MS }] = await Promise.all([import('./log.js'), import('./lifecycle.js')]);
  const logger = createLogger({ level: config.logLevel });
  // ---- sharding (issue 11): the manager process; its shard processes run this file again, as bots ----
  const playground = config.discordToken === undefined || process.argv.includes('--playground');
  if (!playground && config.shards !== 1 && !config.shardProcess) {
    // The manager loads neither the app nor the engine: it only forks and watches the shard processes.
    const { startSharding } = await import('./discord/sharding.js');
    let sharded: Awaited<ReturnType<typeof startSharding>> | undefined;
    const guard = guardProcess({
      logger,
      stop: async () => sharded?.stop(),
      closeNow: () => sharded?.signalAll(),
      // Each shard stops within its own SHUTDOWN_TIMEOUT_MS (or ends itself): the manager waits a little longer.
      shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS + 5_000,
    });
    sharded = await startSharding({
      file: fileURLToPath(import.meta.url),
      execArgv: process.execArgv,
      token: config.discordToken!,
      apiUrl: config.discordApiUrl,
      totalShards: config.shards,
      logger,
      retryAfterGiveUpMs: config.shardRetryMs,
      // Every shard given up on (shard-restarts.ts): exit non-zero so a supervisor sees it and can start it again.
      onNoShardLeft: () => {
        logger.error('no shard left running; the manager exits with code 1');
        process.exit(1);
      },
    });
    guard.started();
    return;
  }
  // ---- end sharding ----
  const { startApp, startPlaygroundApp } = await import('./app.js');
  let app: Awaited<ReturnType<typeof startApp>> | undefined;
  const guard = guardProcess({
    logger,
    stop: async () => app?.stop(),
    closeNow: () => {
      try {
        if (app?.db.open) app.db.close();
      } catch {
        // Closing is best effort on the way out; SQLite's WAL keeps what was committed either way.
      }
    },
  });
  // ---- playground (issue 15): no token, or --playground ----
  if (playground) {
    if (config.shards !== 1) logger.warn('DISCORD_SHARDS is for Discord: the playground runs one gateway connection');
    logger.info(
      config.discordToken === undefined
        ? 'no DISCORD_TOKEN: starting the local playground instead of connecting to Discord'
        : '--playground: starting the local playground; DISCORD_TOKEN is not used',
    );
    const started = await startPlaygroundApp(config, { logger });
    app = started;
    process.stdout.write(`\nimagine playground: ${started.playground.url}\n${started.playground.notice}\n\n`);
  } else {
    app = await startApp(config, { logger });
  }
  // ---- end playground ----
  guard.started();
}

main().catch((error: unknown) => {
  // A ConfigError (a taken playground port) is the owner's to fix: one line, no stack.
  const text = error instanceof ConfigError ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error);
  process.stderr.write(`imagine: ${text}\n`);
  process.exit(1);
});
