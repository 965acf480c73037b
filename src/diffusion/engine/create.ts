/**
 * Picks what runs the jobs from the config: the ONNX worker pool (the model in worker threads, so the bot's
 * event loop never blocks), or the stand-in for trying the Discord side and load tests.
 */
import type { Config } from '../../config.js';
import { resolveModelDir } from '../model-path.js';
import type { EngineModel, ImageEngine } from '../types.js';
import type { Logger } from '../../log.js';

/** `models`: the installed models a job may name (the model library's list, from the composition root). */
export async function createEngine(config: Config, logger: Logger, models: readonly EngineModel[] = []): Promise<ImageEngine> {
  if (config.engine === 'stand-in') {
    const { StandInEngine } = await import('./stand-in.js');
    return new StandInEngine({ msPerStep: config.standInStepMs, width: 64, height: 64 });
  }
  const { createWorkerPool } = await import('./worker-pool.js');
  const modelDir = resolveModelDir(config.modelDir);
  return createWorkerPool({
    modelDir,
    models,
    memoryMb: config.modelMemoryMb,
    workers: config.engineWorkers,
    loadOptions: { executionProviders: config.executionProviders, optimizedModelCacheDir: config.ortCacheDir },
    log: (line) => logger.info(line),
  });
}
