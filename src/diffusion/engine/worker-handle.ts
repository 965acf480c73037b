/**
 * One worker thread (worker.ts) holding the model, behind a small handle, as skyra's WorkerHandler keeps one:
 * spawn it and wait until the model is loaded, post a run and match the worker's replies to its jobs by id,
 * restart the thread when it crashes, end it. Which jobs run, where and when, is the pool's (worker-pool.ts).
 *
 * A thread is never terminated inside a model call. onnxruntime-node's `run()` is one synchronous native call on
 * the worker's thread; `worker.terminate()` cannot interrupt it, and when the call returns the binding throws into
 * a stopping environment and the whole process aborts ("terminate called after throwing an instance of
 * 'Napi::Error'", exit 134). Measured with onnxruntime-node 1.30.0 on Node 20.20; process.exit() in the main
 * thread does the same, since it waits for the worker thread. So `end()` ends a busy thread when its run returns.
 */
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { UserError, type Identifier } from '../../errors.js';
import type { LoadModelOptions } from '../model.js';
import type { GenerateParams, GenerateResult, ModelInfo, StepProgress } from '../types.js';
import type { FromWorker, SerializedError, ToWorker, WorkerData, WorkerModel } from './worker.js';

/** Thrown to a caller whose job was running in a worker that died. */
export class WorkerCrashError extends Error {
  override readonly name = 'WorkerCrashError';
}

/** One job of a run, as the handle sees it. */
export interface HandleJob {
  id: number;
  params: GenerateParams;
  previewEvery?: number;
  onProgress?: (progress: StepProgress) => void;
  /** Called once: the worker's result or error for this job, or a `WorkerCrashError`. */
  onDone: (error: Error | undefined, result?: GenerateResult) => void;
}

export interface WorkerHandleOptions {
  /** The pool's slot, for log lines. */
  index: number;
  modelDir: string;
  /** The default model's name and estimated memory, and the budget of the worker's loaded models (worker.ts). */
  defaultModel: WorkerData['defaultModel'];
  memoryBudgetBytes: number;
  loadOptions: Omit<LoadModelOptions, 'log'>;
  /** A model was loaded in this worker: its facts (the pool keeps them by name). */
  onModelInfo?: (info: ModelInfo) => void;
  /** Honour `crashForTest`. */
  allowCrash: boolean;
  log: (line: string) => void;
  /** The handle can take a run: its model is loaded (at start or after a restart) or its run has ended. */
  onFree: () => void;
  /** The model loaded once, but the restart after a crash failed: the handle has ended. */
  onRestartFailed: (error: Error) => void;
  /** The thread crashed after loading the model and a new one is being started in its place. */
  onRestart?: () => void;
}

// worker.ts under tsx and vitest, worker.js if the sources are ever compiled.
const WORKER_URL = new URL(`./worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url);

/** tsx's ESM API (its package exports map `tsx/esm/api` → dist/esm/api/index.mjs for import; the .cjs twin fails in workers). */
function tsxApiUrl(): string {
  const packageJson = createRequire(import.meta.url).resolve('tsx/package.json');
  return pathToFileURL(join(dirname(packageJson), 'dist', 'esm', 'api', 'index.mjs')).href;
}

function newWorker(data: WorkerData): Worker {
  if (!WORKER_URL.pathname.endsWith('.ts')) return new Worker(WORKER_URL, { workerData: data });
  // A .ts entry needs tsx in the worker too: vitest does not transform worker files, and on Node 20 a worker
  // given `--import tsx` still loads its entry before the hooks apply. tsx's tsImport loads it reliably.
  return new Worker(
    `import(${JSON.stringify(tsxApiUrl())}).then((m) => (m.tsImport ?? m.default.tsImport)(${JSON.stringify(WORKER_URL.href)}, ${JSON.stringify(import.meta.url)}))`,
    { eval: true, workerData: data },
  );
}

export class WorkerHandle {
  /** Resolves when the handle's thread has exited for good (ended, or failed to start or restart). */
  readonly ended: Promise<void>;
  private resolveEnded!: () => void;
  private worker!: Worker;
  private currentThreadId = -1;
  private readonly jobs = new Map<number, HandleJob>();
  private ready = false;
  /** `end()` was called: take no more runs, end the thread as soon as it is idle. */
  private ending = false;
  private modelInfo?: ModelInfo;
  private loaded: string[] = [];

  constructor(private readonly options: WorkerHandleOptions) {
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
  }

  /** Spawn the thread; resolves with the model's facts once it is loaded, rejects with the loader's error. */
  start(): Promise<ModelInfo> {
    return this.spawn();
  }

  /** The thread's id (`worker.threadId`) of the current worker. */
  get threadId(): number {
    return this.currentThreadId;
  }

  get info(): ModelInfo | undefined {
    return this.modelInfo;
  }

  /** The models the worker holds now, least recently used first (empty while it starts). */
  get loadedModels(): readonly string[] {
    return this.loaded;
  }

  /** The thread is up with the model loaded (running a job or not): false while it starts, restarts or has ended. */
  get alive(): boolean {
    return this.ready;
  }

  /** Loaded, not ending, no run in the worker. */
  get free(): boolean {
    return this.ready && !this.ending && this.jobs.size === 0;
  }

  /** A run is in the worker: some of its jobs have not been answered by the worker yet. */
  get busy(): boolean {
    return this.jobs.size > 0;
  }

  /** Hand the worker a run: these jobs share its UNet calls, with `model` (omitted: the default). Only when `free`. */
  run(jobs: HandleJob[], model?: WorkerModel): void {
    if (!this.free) throw new Error(`Expected image worker ${this.options.index} to be free for a run`);
    for (const job of jobs) this.jobs.set(job.id, job);
    this.post({
      type: 'generate',
      jobs: jobs.map((job) => ({ id: job.id, params: job.params, previewEvery: job.previewEvery, wantProgress: job.onProgress !== undefined })),
      model,
    });
  }

  /** Ask the worker to stop this job at its next step; its answer (usually `cancelled`) still comes through onDone. */
  abort(id: number): void {
    if (this.jobs.has(id)) this.post({ type: 'abort', id });
  }

  /**
   * End the thread as soon as that is safe: now when no run is in it, else when the run returns (see the note at
   * the top). From now on the thread does not keep the process alive.
   */
  end(): void {
    if (this.ending) return;
    this.ending = true;
    this.worker.unref();
    if (this.ready && this.jobs.size === 0) void this.worker.terminate();
  }

  /** Make the worker exit as if it crashed (only with `allowCrash`). */
  crashForTest(): void {
    this.post({ type: 'crash' });
  }

  private post(message: ToWorker): void {
    this.worker.postMessage(message);
  }

  private spawn(): Promise<ModelInfo> {
    const { index, log } = this.options;
    const worker = newWorker({
      modelDir: this.options.modelDir,
      defaultModel: this.options.defaultModel,
      memoryBudgetBytes: this.options.memoryBudgetBytes,
      loadOptions: this.options.loadOptions,
      allowCrash: this.options.allowCrash,
    });
    this.worker = worker;
    this.currentThreadId = worker.threadId;
    this.ready = false;
    this.loaded = [];
    return new Promise<ModelInfo>((resolve, reject) => {
      /** The start promise is settled. */
      let started = false;
      /** This worker loaded the model: a later exit is a crash to recover from, an earlier one a failed start. */
      let loaded = false;
      let lastError: Error | undefined;
      worker.on('message', (message: FromWorker) => {
        switch (message.type) {
          case 'ready':
            this.modelInfo = message.info;
            this.ready = loaded = started = true;
            resolve(message.info);
            this.idle();
            break;
          case 'load-error':
            started = true;
            reject(deserializeError(message.error));
            void worker.terminate();
            break;
          case 'log':
            log(message.line);
            break;
          case 'models':
            this.loaded = message.loaded;
            if (message.info) this.options.onModelInfo?.(message.info);
            break;
          default:
            this.onReply(message);
        }
      });
      worker.on('error', (error) => {
        lastError = error;
        log(`imagine: image worker ${index} failed: ${error.message}`);
        if (!started) {
          started = true;
          reject(error);
        }
      });
      worker.on('exit', (code) => {
        const jobs = [...this.jobs.values()];
        this.jobs.clear();
        this.ready = false;
        this.loaded = [];
        const cause = lastError ? `: ${lastError.message}` : '';
        if (!started) {
          started = true;
          reject(new WorkerCrashError(`The image worker stopped (exit code ${code}${cause}) before the model was loaded`));
        }
        // Never restart a worker that could not start (it would fail again, forever), nor one being ended.
        if (!loaded || this.ending) {
          for (const job of jobs) job.onDone(new WorkerCrashError('The image worker was shut down while making this picture'));
          this.resolveEnded();
          return;
        }
        for (const job of jobs) {
          job.onDone(new WorkerCrashError(`The image worker stopped unexpectedly (exit code ${code}${cause}) while making this picture; it has been restarted, please try again`));
        }
        log(`imagine: image worker ${index} exited with code ${code}; restarting it`);
        this.options.onRestart?.();
        this.spawn().catch((error: Error) => {
          this.resolveEnded();
          this.options.onRestartFailed(error);
        });
      });
    });
  }

  private onReply(message: FromWorker): void {
    if (!('id' in message)) return;
    const job = this.jobs.get(message.id);
    if (!job) return;
    switch (message.type) {
      case 'progress':
        try {
          job.onProgress?.(message.progress);
        } catch (error) {
          this.options.log(`imagine: a progress callback threw: ${(error as Error).message}`);
        }
        return;
      case 'result':
        this.jobs.delete(job.id);
        job.onDone(undefined, message.result);
        break;
      case 'error':
        this.jobs.delete(job.id);
        job.onDone(deserializeError(message.error));
        break;
    }
    if (this.jobs.size === 0) this.idle();
  }

  /** The model is loaded and no run is in the worker: end it if asked to, else offer it to the pool. */
  private idle(): void {
    if (this.ending) void this.worker.terminate();
    else this.options.onFree();
  }
}

function deserializeError(error: SerializedError): Error {
  if (error.identifier) return new UserError(error.identifier as Identifier, error.message, error.context ?? {});
  const result = new Error(error.message);
  if (error.name && error.name !== 'Error') Object.defineProperty(result, 'name', { value: error.name });
  return result;
}
