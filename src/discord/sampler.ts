/**
 * Picks what runs the jobs from the config: the ONNX worker pool (the model in worker threads, so the bot's
 * event loop never blocks), or the stand-in for trying the Discord side and load tests.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config.js';
import type { Sampler } from '../diffusion/types.js';
import type { Logger } from '../delivery/job-messenger.js';

/** The embedded model, then the small test model that ships with the repository. */
const DEFAULT_MODEL_DIRS = ['models/imagine-shapes', 'test/fixtures/models/sd-tiny'];

/** The model folder to load: MODEL_DIR, or the first default that exists. */
export function resolveModelDir(configured: string | undefined, cwd = process.cwd()): string {
  if (configured !== undefined) return path.resolve(cwd, configured);
  for (const candidate of DEFAULT_MODEL_DIRS) {
    const dir = path.resolve(cwd, candidate);
    if (fs.existsSync(path.join(dir, 'model_index.json'))) return dir;
  }
  throw new Error(`No model found: set MODEL_DIR, or add one of ${DEFAULT_MODEL_DIRS.join(', ')}`);
}

export async function createSampler(config: Config, logger: Logger): Promise<Sampler> {
  if (config.sampler === 'stand-in') {
    const { StandInSampler } = await import('../queue/stand-in-sampler.js');
    return new StandInSampler({ msPerStep: config.standInStepMs, width: 64, height: 64 });
  }
  const { createWorkerPool } = await import('../diffusion/worker-pool.js');
  const modelDir = resolveModelDir(config.modelDir);
  return createWorkerPool({
    modelDir,
    workers: config.samplerWorkers,
    jobTimeoutMs: config.jobTimeoutMs,
    loadOptions: { executionProviders: config.executionProviders },
    log: (line) => logger.info(line),
  });
}
