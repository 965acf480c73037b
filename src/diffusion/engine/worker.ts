/**
 * Worker-thread entry: load the model once, then run jobs one at a time and post progress and PNG bytes back.
 * onnxruntime-node's run() blocks its thread for a whole UNet call, so this keeps the bot's event loop free.
 * The messages below are plain data (worker-handle.ts posts and reads them); images and previews travel as
 * transferred buffers.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { isUserError } from '../../errors.js';
import { loadModel, type DiffusionModel, type LoadModelOptions } from '../model.js';
import { generateBatch } from '../pipeline.js';
import type { GenerateParams, GenerateResult, StepProgress } from '../types.js';

export interface WorkerData {
  modelDir: string;
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

export type ToWorker =
  | { type: 'generate'; jobs: WorkerJob[] }
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

  let model: DiffusionModel;
  try {
    model = await loadModel(data.modelDir, { ...data.loadOptions, log: (line) => post({ type: 'log', line }) });
  } catch (error) {
    post({ type: 'load-error', error: serializeError(error) });
    return;
  }
  post({ type: 'ready', info: model.info, executionProvider: model.executionProvider });

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
