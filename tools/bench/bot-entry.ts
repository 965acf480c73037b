/**
 * The bot as src/index.ts starts it (config from the environment, startApp), except that its worker pool is made
 * here with extra load options: how the bench runs the bot as a process with a runtime lever applied.
 *
 *   node --import tsx tools/bench/bot-entry.ts '<LoadModelOptions JSON>'
 */
import { parseConfig } from '../../src/config.js';
import { startApp } from '../../src/app.js';
import { createLogger } from '../../src/log.js';
import { resolveModelDir } from '../../src/diffusion/model-path.js';
import type { LoadModelOptions } from '../../src/diffusion/model.js';
import { createWorkerPool } from '../../src/diffusion/engine/worker-pool.js';

async function main(): Promise<void> {
  const extra = JSON.parse(process.argv[2] ?? '{}') as Omit<LoadModelOptions, 'log'>;
  const config = parseConfig(process.env);
  const logger = createLogger();
  const pool = await createWorkerPool({
    modelDir: resolveModelDir(config.modelDir),
    workers: config.engineWorkers,
    loadOptions: { executionProviders: config.executionProviders, ...extra },
    log: (line) => logger.info(line),
  });
  const app = await startApp(config, { engine: pool, logger });
  process.once('SIGTERM', () => {
    void app
      .stop()
      .then(() => pool.close())
      .finally(() => process.exit(0));
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`bot-entry: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
