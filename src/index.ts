/**
 * `npm start`: read the config (a bad one is one line and exit 1, before anything starts), start the bot, and
 * stop it gracefully on SIGTERM/SIGINT (exit 0; waiting jobs keep their place for the next start).
 */
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
  const [{ createLogger }, { startApp }] = await Promise.all([import('./log.js'), import('./app.js')]);
  const logger = createLogger({ level: config.logLevel });
  process.on('unhandledRejection', (reason) => logger.error('unhandled rejection', { error: reason }));

  let signalled: NodeJS.Signals | undefined;
  let app: Awaited<ReturnType<typeof startApp>> | undefined;
  const stop = async (signal: NodeJS.Signals) => {
    if (signalled) return;
    signalled = signal;
    logger.info('shutting down', { signal });
    // A signal during start-up is handled once the app exists (below).
    if (!app) return;
    try {
      await app.stop();
    } catch (error) {
      logger.error('shutdown did not finish cleanly', { error: error });
    }
    process.exit(0);
  };
  process.once('SIGTERM', (signal) => void stop(signal));
  process.once('SIGINT', (signal) => void stop(signal));

  app = await startApp(config, { logger });
  if (signalled) {
    await app.stop();
    process.exit(0);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`imagine: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
