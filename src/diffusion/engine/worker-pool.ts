/**
 * The engine the bot uses: N worker threads (worker.ts), each holding the model, behind the small `ImageEngine`
 * handle. Messages are matched by id; progress is relayed; an abort is forwarded; a worker that crashes rejects
 * the caller's promise with a clear error, and the worker is replaced. The job timeout is the queue's (it aborts
 * the job's signal and says what the member sees), and so is the grouping of jobs into shared runs.
 *
 * `generateBatch` runs the jobs the caller grouped (the fair queue picks them) in the same UNet calls. An aborted
 * job is answered at once; its rows in a shared run are computed to the end (the pipeline cannot drop them
 * mid-run) but never delivered, and the others are not disturbed.
 */
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Identifiers, UserError, type Identifier } from '../../errors.js';
import type { LoadModelOptions } from '../model.js';
import { batchKey, checkInputs } from '../check-inputs.js';
import type { BatchItem, GenerateOptions, GenerateParams, GenerateResult, ModelInfo, ImageEngine } from '../types.js';
import type { FromWorker, SerializedError, ToWorker, WorkerData } from './worker.js';

export interface WorkerPoolOptions {
  /** The model folder each worker loads. */
  modelDir: string;
  /** Worker threads, each with its own copy of the model. Default 1. */
  workers?: number;
  /** Passed to each worker's loadModel (execution providers, threads). Default cpu. */
  loadOptions?: Omit<LoadModelOptions, 'log'>;
  /** Where worker log lines go (provider in use, restarts). Default console.error. */
  log?: (line: string) => void;
  /** Let tests make a worker exit on request (`crashWorkerForTest`). Default false. */
  allowCrashForTests?: boolean;
}

/** Thrown to a caller whose job was running in a worker that died. */
export class WorkerCrashError extends Error {
  override readonly name = 'WorkerCrashError';
}

interface Job {
  id: number;
  /** The caller's promise is settled (done, timed out, shut down); late messages only free the worker. */
  settled: boolean;
  params: GenerateParams;
  options: GenerateOptions;
  resolve: (result: GenerateResult) => void;
  reject: (error: Error) => void;
  onAbort?: () => void;
  /** The jobs handed over together by one `generateBatch` call (they run together, with nothing else). */
  group?: Job[];
}

interface Slot {
  index: number;
  worker: Worker;
  ready: boolean;
  /** The run in the worker: its jobs, until the worker has said it is done with each (even after the caller was answered). */
  jobs: Job[];
  onIdle?: () => void;
}

// worker.ts under tsx and vitest, worker.js if the sources are ever compiled.
const WORKER_URL = new URL(`./worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url);

/** tsx's ESM API (its package exports map `tsx/esm/api` → dist/esm/api/index.mjs for import; the .cjs twin fails in workers). */
function tsxApiUrl(): string {
  const packageJson = createRequire(import.meta.url).resolve('tsx/package.json');
  return pathToFileURL(join(dirname(packageJson), 'dist', 'esm', 'api', 'index.mjs')).href;
}

/** Create a pool and wait until every worker has loaded the model (rejects with the loader's message if not). */
export async function createWorkerPool(options: WorkerPoolOptions): Promise<WorkerPool> {
  const pool = new WorkerPool(options);
  await pool.ready();
  return pool;
}

export class WorkerPool implements ImageEngine {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private readonly log: (line: string) => void;
  private readonly runCounts = new Map<number, number>();
  private nextId = 1;
  private closed = false;
  private modelInfo?: ModelInfo;
  private readyPromise: Promise<void>;
  private loadError?: Error;

  constructor(private readonly options: WorkerPoolOptions) {
    const workers = options.workers ?? 1;
    if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
      throw new RangeError(`Expected \`workers\` to be an integer from 1 to 64, got \`${workers}\``);
    }
    this.log = options.log ?? ((line) => console.error(line));
    const starts: Promise<void>[] = [];
    for (let i = 0; i < workers; i++) starts.push(this.spawn(i));
    this.readyPromise = Promise.all(starts).then(() => undefined);
    // Callers await ready(); this keeps an unawaited failure from being reported as unhandled.
    this.readyPromise.catch(() => undefined);
  }

  /** Resolves when every worker has loaded the model. */
  ready(): Promise<void> {
    return this.readyPromise;
  }

  async info(): Promise<ModelInfo> {
    await this.readyPromise;
    return this.modelInfo!;
  }

  generate(params: GenerateParams, options: GenerateOptions = {}): Promise<GenerateResult> {
    if (this.closed) return Promise.reject(new UserError(Identifiers.ShuttingDown, 'The image engine is shutting down'));
    if (this.loadError) return Promise.reject(this.loadError);
    if (options.signal?.aborted) return Promise.reject(new UserError(Identifiers.Cancelled, 'The job was cancelled'));
    return new Promise<GenerateResult>((resolve, reject) => {
      const job: Job = { id: this.nextId++, settled: false, params, options, resolve, reject };
      if (options.signal) {
        job.onAbort = () => this.abort(job);
        options.signal.addEventListener('abort', job.onAbort, { once: true });
      }
      this.queue.push(job);
      this.dispatch();
    });
  }

  /**
   * Run these jobs in the same UNet calls on the next free worker; one promise per item, each settling on its
   * own. Items whose steps, scheduler or size differ from the first's run in a run of their own, after it.
   */
  generateBatch(items: readonly BatchItem[]): Promise<GenerateResult>[] {
    const refusal = this.closed
      ? new UserError(Identifiers.ShuttingDown, 'The image engine is shutting down')
      : this.loadError;
    if (refusal) return items.map(() => Promise.reject(refusal));
    const group: Job[] = [];
    const promises = items.map(({ params, options = {} }) => {
      if (options.signal?.aborted) return Promise.reject(new UserError(Identifiers.Cancelled, 'The job was cancelled'));
      return new Promise<GenerateResult>((resolve, reject) => {
        const job: Job = { id: this.nextId++, settled: false, params, options, resolve, reject, group };
        if (options.signal) {
          job.onAbort = () => this.abort(job);
          options.signal.addEventListener('abort', job.onAbort, { once: true });
        }
        group.push(job);
      });
    });
    this.queue.push(...group);
    this.dispatch();
    return promises;
  }

  /** Runs handed to workers so far, by the number of jobs that shared each (1: a job alone). */
  get runSizes(): ReadonlyMap<number, number> {
    return this.runCounts;
  }

  /** Jobs waiting for a free worker (not counting running ones). */
  get pending(): number {
    return this.queue.length;
  }

  /** Make a worker exit as if it crashed (only with `allowCrashForTests`). */
  crashWorkerForTest(index = 0): void {
    if (!this.options.allowCrashForTests) throw new Error('crashWorkerForTest needs allowCrashForTests');
    this.slots[index]?.worker.postMessage({ type: 'crash' } satisfies ToWorker);
  }

  /**
   * Reject what waits, stop running jobs at their next step and end the workers. A worker is never terminated
   * inside a model call: onnxruntime's native code may still be using the thread's memory.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const error = new UserError(Identifiers.ShuttingDown, 'The image engine is shutting down');
    for (const job of this.queue.splice(0)) this.settle(job, error);
    await Promise.all(
      this.slots.map(async (slot) => {
        if (slot.jobs.length > 0) {
          const idle = new Promise<void>((resolve) => (slot.onIdle = resolve));
          for (const job of slot.jobs) {
            this.settle(job, error);
            slot.worker.postMessage({ type: 'abort', id: job.id } satisfies ToWorker);
          }
          await idle;
        }
        await slot.worker.terminate();
      }),
    );
  }

  private spawn(index: number): Promise<void> {
    const data: WorkerData = {
      modelDir: this.options.modelDir,
      loadOptions: this.options.loadOptions ?? {},
      allowCrash: this.options.allowCrashForTests,
    };
    const worker = WORKER_URL.pathname.endsWith('.ts')
      ? // A .ts entry needs tsx in the worker too: vitest does not transform worker files, and on Node 20 a worker
        // given `--import tsx` still loads its entry before the hooks apply. tsx's tsImport loads it reliably.
        new Worker(
          `import(${JSON.stringify(tsxApiUrl())}).then((m) => (m.tsImport ?? m.default.tsImport)(${JSON.stringify(WORKER_URL.href)}, ${JSON.stringify(import.meta.url)}))`,
          { eval: true, workerData: data },
        )
      : new Worker(WORKER_URL, { workerData: data });
    const slot: Slot = { index, worker, ready: false, jobs: [] };
    this.slots[index] = slot;
    return new Promise<void>((resolve, reject) => {
      /** The start promise is settled. */
      let started = false;
      /** The model loaded: a later exit is a crash to recover from, an earlier one is a failed start. */
      let loaded = false;
      let lastError: Error | undefined;
      worker.on('message', (message: FromWorker) => {
        switch (message.type) {
          case 'ready':
            this.modelInfo = message.info;
            slot.ready = true;
            started = true;
            loaded = true;
            resolve();
            this.dispatch();
            break;
          case 'load-error': {
            const error = deserializeError(message.error);
            started = true;
            this.loadError = error;
            reject(error);
            for (const job of this.queue.splice(0)) this.settle(job, error);
            void worker.terminate();
            break;
          }
          case 'log':
            this.log(message.line);
            break;
          default:
            this.onJobMessage(slot, message);
        }
      });
      worker.on('error', (error) => {
        lastError = error;
        this.log(`imagine: image worker ${index} failed: ${error.message}`);
        if (!started) {
          started = true;
          reject(error);
        }
      });
      worker.on('exit', (code) => {
        const jobs = slot.jobs;
        slot.jobs = [];
        slot.onIdle?.();
        if (this.slots[index] !== slot || this.closed || this.loadError) return;
        const cause = lastError ? `: ${lastError.message}` : '';
        for (const job of jobs) {
          this.settle(job, new WorkerCrashError(`The image worker stopped unexpectedly (exit code ${code}${cause}) while making this picture; it has been restarted, please try again`));
        }
        if (!loaded) {
          // Never restart a worker that could not start: it would fail again, forever.
          if (!started) {
            started = true;
            reject(new WorkerCrashError(`The image worker stopped (exit code ${code}${lastError ? `: ${lastError.message}` : ''}) before the model was loaded`));
          }
          return;
        }
        this.log(`imagine: image worker ${index} exited with code ${code}; restarting it`);
        this.restart(index);
      });
    });
  }

  private restart(index: number): void {
    const start = this.spawn(index);
    start.catch((error: Error) => {
      // The model loaded before; failing now is an outage: fail what waits rather than loop.
      this.loadError = error;
      for (const job of this.queue.splice(0)) this.settle(job, error);
    });
  }

  private onJobMessage(slot: Slot, message: FromWorker): void {
    if (!('id' in message)) return;
    const job = slot.jobs.find((j) => j.id === message.id);
    if (!job) return;
    switch (message.type) {
      case 'progress':
        if (job.settled) break;
        try {
          job.options.onProgress?.(message.progress);
        } catch (error) {
          this.log(`imagine: a progress callback threw: ${(error as Error).message}`);
        }
        break;
      case 'result':
        this.settle(job, undefined, message.result);
        this.release(slot, job);
        break;
      case 'error':
        this.settle(job, deserializeError(message.error));
        this.release(slot, job);
        break;
    }
  }

  /** The worker is done with `job`; when its whole run is done, the worker takes the next. */
  private release(slot: Slot, job: Job): void {
    slot.jobs = slot.jobs.filter((j) => j !== job);
    if (slot.jobs.length > 0) return;
    slot.onIdle?.();
    slot.onIdle = undefined;
    if (this.slots[slot.index] !== slot) {
      // A worker replaced after it got stuck has finally come back: now it can be ended safely.
      void slot.worker.terminate();
      return;
    }
    this.dispatch();
  }

  private dispatch(): void {
    if (this.closed) return;
    for (const slot of this.slots) {
      if (!slot || !slot.ready || slot.jobs.length > 0) continue;
      const first = this.queue.shift();
      if (!first) return;
      const jobs = [first, ...this.groupmates(first)];
      slot.jobs = jobs;
      this.runCounts.set(jobs.length, (this.runCounts.get(jobs.length) ?? 0) + 1);
      slot.worker.postMessage({
        type: 'generate',
        jobs: jobs.map((job) => ({
          id: job.id,
          params: job.params,
          previewEvery: job.options.previewEvery,
          wantProgress: job.options.onProgress !== undefined,
        })),
      } satisfies ToWorker);
    }
  }

  /** The batch key and image count of a job; undefined for a job that fails validation. */
  private keyOf(job: Job): { key: string; images: number } | undefined {
    if (!this.modelInfo) return undefined;
    try {
      const checked = checkInputs(job.params, this.modelInfo);
      return { key: batchKey(checked), images: checked.count };
    } catch {
      return undefined; // the worker will say what is wrong with it, alone
    }
  }

  /** The rest of `first`'s generateBatch group that can share its UNet calls, taken out of the queue. */
  private groupmates(first: Job): Job[] {
    if (!first.group) return [];
    const head = this.keyOf(first);
    if (!head) return [];
    const chosen = this.queue.filter((job) => job.group === first.group && this.keyOf(job)?.key === head.key);
    for (const job of chosen) this.queue.splice(this.queue.indexOf(job), 1);
    return chosen;
  }

  private abort(job: Job): void {
    const queued = this.queue.indexOf(job);
    if (queued >= 0) {
      this.queue.splice(queued, 1);
      this.settle(job, new UserError(Identifiers.Cancelled, 'The job was cancelled'));
      return;
    }
    // Running: answer now rather than when its run ends (in a shared run, that is when the others finish). The
    // worker stops at its next step, or keeps computing its rows for the others; the slot stays busy until then.
    const slot = this.slots.find((s) => s?.jobs.includes(job));
    if (!slot) return;
    this.settle(job, new UserError(Identifiers.Cancelled, 'The job was cancelled'));
    slot.worker.postMessage({ type: 'abort', id: job.id } satisfies ToWorker);
  }

  private settle(job: Job, error?: Error, result?: GenerateResult): void {
    if (job.settled) return;
    job.settled = true;
    if (job.onAbort) job.options.signal?.removeEventListener('abort', job.onAbort);
    if (error) job.reject(error);
    else job.resolve(result!);
  }
}

function deserializeError(error: SerializedError): Error {
  if (error.identifier) return new UserError(error.identifier as Identifier, error.message, error.context ?? {});
  const result = new Error(error.message);
  if (error.name && error.name !== 'Error') Object.defineProperty(result, 'name', { value: error.name });
  return result;
}
