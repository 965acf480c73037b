/**
 * Worker-thread entry: load the default model, then run jobs one at a time and post progress and PNG bytes back.
 * A run may name another installed model: it is loaded then, and the loaded models are kept in an LRU bounded by
 * `memoryBudgetBytes` (model-cache.ts).
 * onnxruntime-node's run() blocks its thread for a whole UNet call, so this keeps the bot's event loop free.
 * The messages below are plain data (worker-handle.ts posts and reads them); images and previews travel as
 * transferred buffers.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Identifiers, isUserError, UserError } from '../../errors.js';
import { loadModel, type DiffusionModel, type LoadModelOptions } from '../model.js';
import { generateBatch } from '../pipeline.js';
import type { GenerateParams, GenerateResult, StepProgress } from '../types.js';
import { ModelCache, type CachedModel } from './model-cache.js';

export interface WorkerData {
  modelDir: string;
  /** The default model's name and estimated memory (see `WorkerModel`). */
  defaultModel: { name: string; estimatedBytes: number };
  /** Loaded models may take this much, by their estimates; one model is always kept, whatever its size. */
  memoryBudgetBytes: number;
  loadOptions: Omit<LoadModelOptions, 'log'>;
  /** Honour `{ type: 'crash' }` (tests of the pool's crash recovery). */
  allowCrash?: boolean;
}

/** One job of a run; the jobs of one `generate` message share UNet calls (see generateBatch). */
export interface WorkerJob {
  id: number;
  params: GenerateParams;
  previewEvery?: number;
  wantProgress: boolean;
}

/** A model a run needs, when it is not the default: loaded on first use (see model-cache.ts). */
export interface WorkerModel {
  name: string;
  dir: string;
  /** Its files' bytes × 1.2 (worker-pool.ts). */
  estimatedBytes: number;
}

export type ToWorker =
  | { type: 'generate'; jobs: WorkerJob[]; model?: WorkerModel }
  | { type: 'abort'; id: number }
  | { type: 'crash' };

export interface SerializedError {
  name: string;
  message: string;
  identifier?: string;
  context?: Record<string, unknown>;
}

export type FromWorker =
  | { type: 'ready'; info: DiffusionModel['info']; executionProvider: string }
  | { type: 'load-error'; error: SerializedError }
  | { type: 'log'; line: string }
  /** The models now loaded, least recently used first; `info`: the facts of the one just loaded. */
  | { type: 'models'; loaded: string[]; info?: DiffusionModel['info'] }
  | { type: 'progress'; id: number; progress: StepProgress }
  | { type: 'result'; id: number; result: GenerateResult }
  | { type: 'error'; id: number; error: SerializedError };

export function serializeError(error: unknown): SerializedError {
  if (isUserError(error)) {
    return { name: error.name, message: error.message, identifier: error.identifier, context: error.context };
  }
  if (error instanceof Error) return { name: error.name, message: error.message };
  return { name: 'Error', message: String(error) };
}

async function main(): Promise<void> {
  const port = parentPort!;
  const data = workerData as WorkerData;
  const post = (message: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);

  const load = (dir: string) => loadModel(dir, { ...data.loadOptions, log: (line) => post({ type: 'log', line }) });
  let defaultModel: DiffusionModel;
  try {
    defaultModel = await load(data.modelDir);
  } catch (error) {
    post({ type: 'load-error', error: serializeError(error) });
    return;
  }
  const cache = new ModelCache<DiffusionModel>({
    budgetBytes: data.memoryBudgetBytes,
    release: (model) => model.release(),
    onChange: (loaded, added) => post({ type: 'models', loaded, info: added?.info }),
  });
  cache.add({ name: data.defaultModel.name, dir: data.modelDir, estimatedBytes: data.defaultModel.estimatedBytes }, defaultModel);
  post({ type: 'ready', info: defaultModel.info, executionProvider: defaultModel.executionProvider });
  post({ type: 'models', loaded: cache.names() });
  const defaultEntry: CachedModel = { name: data.defaultModel.name, dir: data.modelDir, estimatedBytes: data.defaultModel.estimatedBytes };

  /** The run's model, from the cache or loaded now; a load that fails is a UserError naming the model. */
  const modelFor = async (wanted: WorkerModel | undefined): Promise<DiffusionModel> => {
    const entry = wanted ?? defaultEntry;
    return cache.get(entry, async () => {
      try {
        return await load(entry.dir);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        throw new UserError(Identifiers.ModelUnavailable, `The model \`${entry.name}\` could not be loaded: ${reason}`, { model: entry.name });
      }
    });
  };

  const controllers = new Map<number, AbortController>();
  // Runs go one after another; the handle sends one at a time, this chain only guards against overlap.
  let chain = Promise.resolve();

  port.on('message', (message: ToWorker) => {
    switch (message.type) {
      case 'abort':
        controllers.get(message.id)?.abort();
        break;
      case 'crash':
        if (data.allowCrash) process.exit(70);
        break;
      case 'generate': {
        const jobs = message.jobs.map((job) => {
          const controller = new AbortController();
          controllers.set(job.id, controller);
          return { job, controller };
        });
        chain = chain.then(async () => {
          try {
            const model = await modelFor(message.model);
            const outcomes = await generateBatch(
              model,
              jobs.map(({ job, controller }) => ({
                params: job.params,
                options: {
                  signal: controller.signal,
                  previewEvery: job.previewEvery,
                  onProgress: job.wantProgress
                    ? (progress) => post({ type: 'progress', id: job.id, progress }, progress.preview ? [progress.preview.rgb.buffer as ArrayBuffer] : [])
                    : undefined,
                },
              })),
            );
            outcomes.forEach((outcome, k) => {
              const id = jobs[k].job.id;
              if (outcome.ok) {
                const buffers = outcome.result.images.map((image) => image.buffer as ArrayBuffer);
                post({ type: 'result', id, result: outcome.result }, [...new Set(buffers)]);
              } else {
                post({ type: 'error', id, error: serializeError(outcome.error) });
              }
            });
          } catch (error) {
            for (const { job } of jobs) post({ type: 'error', id: job.id, error: serializeError(error) });
          } finally {
            for (const { job } of jobs) controllers.delete(job.id);
          }
        });
        break;
      }
    }
  });
}

if (!isMainThread && parentPort) {
  void main();
}
