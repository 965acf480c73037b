/**
 * `npm start`: read the config (a bad one is one line and exit 1, before anything starts), start the bot, and
 * stop it gracefully on SIGTERM/SIGINT (exit 0; waiting jobs keep their place for the next start; past lifecycle.ts's
 * bound the journal is closed and the process ends itself with SIGKILL). An uncaught exception exits 1 after closing the journal.
 */
import './node-version.js'; // first: an older Node gets one line before any dependency loads
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
  const [{ createLogger }, { startApp }, { guardProcess }] = await Promise.all([
    import('./log.js'),
    import('./app.js'),
    import('./lifecycle.js'),
  ]);
  const logger = createLogger({ level: config.logLevel });
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
  app = await startApp(config, { logger });
  guard.started();
}

main().catch((error: unknown) => {
  process.stderr.write(`imagine: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
