/**
 * Picks what runs the jobs from the config: the ONNX worker pool (the model in worker threads, so the bot's
 * event loop never blocks), or the stand-in for trying the Discord side and load tests.
 */
import type { Config } from '../config.js';
import { resolveModelDir } from '../diffusion/model-path.js';
import type { Sampler } from '../diffusion/types.js';
import type { Logger } from '../delivery/job-messenger.js';

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
