/**
 * The engine the bot uses: N worker threads, each holding the model (worker-handle.ts), behind the small
 * `ImageEngine` handle. This module decides what runs where: a waiting job goes to the first free worker, the jobs
 * of one `generateBatch` call share a run, an abort is answered at once and forwarded, `close()` is bounded.
 *
 * Policies owned elsewhere, so not here: the job timeout is the queue's (it aborts the job's signal, and says
 * what the member sees), and so is the grouping of jobs into shared runs (the queue's batch plan).
 *
 * What the pool does own is its capacity: a worker stuck in one model call after its jobs were aborted is
 * replaced (stuck-watchdog.ts decides when).
 */
import { readdirSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { Identifiers, isUserError, UserError } from '../../errors.js';
import type { LoadModelOptions } from '../model.js';
import { batchKey, checkInputs, unknownModel } from '../check-inputs.js';
import type {
  BatchItem,
  EngineHealth,
  EngineModel,
  EngineModelListing,
  GenerateOptions,
  GenerateParams,
  GenerateResult,
  ImageEngine,
  ModelInfo,
} from '../types.js';
import { StuckWatchdog } from './stuck-watchdog.js';
import { WorkerHandle } from './worker-handle.js';
import type { WorkerModel } from './worker.js';

export { WorkerCrashError } from './worker-handle.js';

export interface WorkerPoolOptions {
  /** The default model's folder: each worker loads it at start, and a job that names no model uses it. */
  modelDir: string;
  /**
   * The other installed models a job may name (`GenerateParams.model`), as the model library lists them; each
   * worker loads one on its first job. Default none: only the default model.
   */
  models?: readonly EngineModel[];
  /**
   * Memory each worker may give its loaded models, in MiB; the least recently used is released to make room. A
   * model's memory is estimated as its files' size × 1.2 (the weights, plus onnxruntime's working buffers on the
   * tiny and SD models measured here; see model-cache.ts). One model is always kept. Default 4096.
   */
  memoryMb?: number;
  /** Worker threads, each with its own copy of the model. Default 1. */
  workers?: number;
  /**
   * After every job of a run was aborted (the queue's timeout, a cancel), how long the worker may take to stop
   * before it counts as stuck in one model call and a fresh worker takes its place; the stuck one is ended when
   * that call returns (stuck-watchdog.ts). Default 30 000 (30 s: one UNet call of a large picture on a CPU can
   * take seconds).
   */
  stuckAfterMs?: number;
  /** Passed to each worker's loadModel (execution providers, threads). Default cpu. */
  loadOptions?: Omit<LoadModelOptions, 'log'>;
  /** Where worker log lines go (provider in use, restarts, stuck workers). Default console.error. */
  log?: (line: string) => void;
  /** Let tests make a worker exit on request (`crashWorkerForTest`). Default false. */
  allowCrashForTests?: boolean;
}

export interface WorkerPoolStats {
  /** Thread ids of the workers that take jobs, by slot. */
  threadIds: number[];
  /** Thread ids of workers replaced (or shut down) while inside a model call; each ends when its call returns. */
  stuckThreadIds: number[];
  /** Jobs waiting for a free worker (not counting running ones). */
  waiting: number;
  /** Runs handed to workers so far, by the number of jobs that shared each (1: a job alone). */
  runSizes: ReadonlyMap<number, number>;
  /** The models each worker holds, by slot, least recently used first. */
  loadedModels: string[][];
}

/** How much memory a loaded model is reckoned to take, from its files' bytes (see `memoryMb`). */
export const MEMORY_PER_FILE_BYTE = 1.2;

function folderBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) total += statSync(join(entry.parentPath, entry.name)).size;
  }
  return total;
}

interface Job {
  id: number;
  /** The caller's promise is settled (done, aborted, shut down); the worker's later answer is dropped. */
  settled: boolean;
  params: GenerateParams;
  /** The model it needs when not the default. */
  model?: WorkerModel;
  options: GenerateOptions;
  resolve: (result: GenerateResult) => void;
  reject: (error: Error) => void;
  onAbort?: () => void;
  /** The jobs handed over together by one `generateBatch` call. */
  group?: Job[];
}

/** Create a pool and wait until every worker has loaded the model (rejects with the loader's message if not). */
export async function createWorkerPool(options: WorkerPoolOptions): Promise<WorkerPool> {
  const pool = new WorkerPool(options);
  try {
    await pool.ready();
  } catch (error) {
    await pool.close({ timeoutMs: 0 });
    throw error;
  }
  return pool;
}

const shuttingDown = () => new UserError(Identifiers.ShuttingDown, 'The image engine is shutting down');
const cancelled = () => new UserError(Identifiers.Cancelled, 'The job was cancelled');

export class WorkerPool implements ImageEngine {
  private slots: WorkerHandle[] = [];
  private readonly waiting: Job[] = [];
  /** The jobs of each worker's run that it has not answered yet. */
  private readonly runs = new Map<WorkerHandle, Job[]>();
  private readonly watchdog: StuckWatchdog;
  private readonly runCounts = new Map<number, number>();
  private readonly log: (line: string) => void;
  private readonly readyPromise: Promise<void>;
  private nextId = 1;
  private readonly memoryBudgetBytes: number;
  /** Workers replaced so far: crashed and restarted, or stuck and replaced. */
  private restarts = 0;
  private closing?: Promise<void>;
  private modelInfo?: ModelInfo;
  private loadError?: Error;
  private readonly defaultModel: EngineModel & { estimatedBytes: number };
  /** The other models, by name. */
  private readonly otherModels = new Map<string, WorkerModel & { model: EngineModel }>();
  /** Facts of every model a worker has loaded, by name. */
  private readonly infos = new Map<string, ModelInfo>();
  /** Models that failed to load, by name: reported once, and their jobs refused with the same line. */
  private readonly failedModels = new Map<string, Error>();

  constructor(private readonly options: WorkerPoolOptions) {
    const workers = options.workers ?? 1;
    if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
      throw new RangeError(`Expected \`workers\` to be an integer from 1 to 64, got \`${workers}\``);
    }
    const stuckAfterMs = options.stuckAfterMs ?? 30_000;
    if (!(stuckAfterMs > 0)) throw new RangeError(`Expected \`stuckAfterMs\` to be a positive number, got \`${stuckAfterMs}\``);
    this.log = options.log ?? ((line) => console.error(line));
    const memoryMb = options.memoryMb ?? 4096;
    if (!(memoryMb > 0)) throw new RangeError(`Expected \`memoryMb\` to be a positive number, got \`${memoryMb}\``);
    const defaultDir = resolve(options.modelDir);
    const listed = options.models?.find((model) => resolve(model.dir) === defaultDir);
    const defaultBytes = listed?.bytes ?? folderBytes(defaultDir);
    this.defaultModel = { ...listed, name: listed?.name ?? basename(defaultDir), dir: defaultDir, bytes: defaultBytes, estimatedBytes: Math.round(defaultBytes * MEMORY_PER_FILE_BYTE) };
    for (const model of options.models ?? []) {
      if (model === listed) continue;
      this.otherModels.set(model.name, { name: model.name, dir: resolve(model.dir), estimatedBytes: Math.round(model.bytes * MEMORY_PER_FILE_BYTE), model });
    }
    this.memoryBudgetBytes = memoryMb * 1024 * 1024;
    this.watchdog = new StuckWatchdog({
      stuckAfterMs,
      slots: workers,
      log: this.log,
      slotOf: (handle) => this.slots.indexOf(handle),
      replace: (slot) => {
        this.restarts++;
        this.slots[slot] = this.newHandle(slot);
        this.slots[slot].start().catch((error: Error) => this.fail(error));
      },
    });
    const starts: Promise<ModelInfo>[] = [];
    for (let index = 0; index < workers; index++) {
      const handle = this.newHandle(index);
      this.slots.push(handle);
      starts.push(handle.start());
    }
    this.readyPromise = Promise.all(starts).then(
      ([info]) => {
        this.modelInfo ??= info;
        this.infos.set(this.defaultModel.name, info);
      },
      (error: Error) => {
        this.fail(error);
        throw error;
      },
    );
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

  /** The default model first, then the others by name; `info` once a worker has loaded the model. */
  async models(): Promise<EngineModelListing[]> {
    await this.readyPromise;
    const listing = (model: EngineModel, estimatedBytes: number, isDefault: boolean): EngineModelListing => {
      const info = this.infos.get(model.name);
      return { ...model, isDefault, estimatedBytes, ...(info ? { info } : {}) };
    };
    return [
      listing(this.defaultModel, this.defaultModel.estimatedBytes, true),
      ...[...this.otherModels.values()].sort((a, b) => a.name.localeCompare(b.name)).map((other) => listing(other.model, other.estimatedBytes, false)),
    ];
  }

  /**
   * The model a job names, undefined for the default; a UserError (one line) for one that is not installed or
   * failed to load.
   */
  private modelOf(params: GenerateParams): WorkerModel | undefined | UserError {
    const name = params.model;
    if (name === undefined || name === this.defaultModel.name) return undefined;
    const failed = this.failedModels.get(name);
    if (failed) return isUserError(failed) ? failed : new UserError(Identifiers.ModelUnavailable, failed.message, { model: name });
    const model = this.otherModels.get(name);
    if (model) return { name: model.name, dir: model.dir, estimatedBytes: model.estimatedBytes };
    return unknownModel(name, [this.defaultModel.name, ...[...this.otherModels.keys()].sort()]);
  }

  generate(params: GenerateParams, options: GenerateOptions = {}): Promise<GenerateResult> {
    return this.generateBatch([{ params, options }])[0];
  }

  /**
   * Run these jobs, chosen by the caller, in the same UNet calls on the next free worker; one promise per item,
   * each settling on its own. An item whose steps, scheduler or size differ from the first's (which the caller
   * should not send) runs in a run of its own, after it.
   */
  generateBatch(items: readonly BatchItem[]): Promise<GenerateResult>[] {
    const refusal = this.closing ? shuttingDown() : this.loadError;
    if (refusal) return items.map(() => Promise.reject(refusal));
    const group: Job[] = [];
    const promises = items.map(({ params, options = {} }) => {
      if (options.signal?.aborted) return Promise.reject(cancelled());
      const model = this.modelOf(params);
      if (model instanceof UserError) return Promise.reject(model);
      return new Promise<GenerateResult>((resolve, reject) => {
        const job: Job = { id: this.nextId++, settled: false, params, model, options, resolve, reject };
        if (items.length > 1) job.group = group;
        if (options.signal) {
          job.onAbort = () => this.abort(job);
          options.signal.addEventListener('abort', job.onAbort, { once: true });
        }
        group.push(job);
      });
    });
    this.waiting.push(...group);
    this.dispatch();
    return promises;
  }

  stats(): WorkerPoolStats {
    return {
      threadIds: this.slots.map((handle) => handle.threadId),
      stuckThreadIds: [...this.watchdog.stuck].map((handle) => handle.threadId),
      waiting: this.waiting.length,
      runSizes: this.runCounts,
      loadedModels: this.slots.map((handle) => [...handle.loadedModels]),
    };
  }

  /** Whether any worker holds `model` now (undefined: the default model). */
  modelLoaded(model: string | undefined): boolean {
    const name = model ?? this.defaultModel.name;
    return this.slots.some((handle) => handle.loadedModels.includes(name));
  }

  /** Workers up with the model loaded, and how many were replaced since the start. */
  health(): EngineHealth {
    return { alive: this.slots.filter((handle) => handle.alive).length, restarts: this.restarts };
  }

  /** Make a worker exit as if it crashed (only with `allowCrashForTests`). */
  crashWorkerForTest(index = 0): void {
    if (!this.options.allowCrashForTests) throw new Error('crashWorkerForTest needs allowCrashForTests');
    this.slots[index]?.crashForTest();
  }

  /**
   * Refuse new jobs, reject what waits and abort what runs; wait until the workers have ended, at most `timeoutMs`
   * (default 10 000), then resolve. A worker still inside a model call then no longer keeps the process alive and
   * ends when the call returns: terminating it inside the call would abort the process (see worker-handle.ts).
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.closing ??= this.shutDown(options.timeoutMs ?? 10_000);
    return this.closing;
  }

  private async shutDown(timeoutMs: number): Promise<void> {
    for (const job of this.waiting.splice(0)) this.settle(job, shuttingDown());
    this.watchdog.stop();
    const handles = [...this.slots, ...this.watchdog.stuck];
    this.slots = [];
    for (const handle of handles) {
      for (const job of this.runs.get(handle) ?? []) {
        this.settle(job, shuttingDown());
        handle.abort(job.id);
      }
      this.watchdog.retire(handle);
    }
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    await Promise.race([Promise.all(handles.map((handle) => handle.ended)), bound]);
    clearTimeout(timer);
    const { size } = this.watchdog.stuck;
    if (size > 0) this.log(`imagine: ${size} image worker(s) still inside a model call after ${timeoutMs} ms; each ends when its call returns`);
  }

  private newHandle(index: number): WorkerHandle {
    const handle: WorkerHandle = new WorkerHandle({
      index,
      modelDir: this.defaultModel.dir,
      defaultModel: { name: this.defaultModel.name, estimatedBytes: this.defaultModel.estimatedBytes },
      memoryBudgetBytes: this.memoryBudgetBytes,
      onModelInfo: (info) => this.infos.set(info.name, info),
      loadOptions: this.options.loadOptions ?? {},
      allowCrash: this.options.allowCrashForTests ?? false,
      log: this.log,
      onFree: () => {
        this.modelInfo ??= handle.info;
        this.dispatch();
      },
      onRestartFailed: (error) => this.fail(error),
      onRestart: () => this.restarts++,
    });
    void handle.ended.then(() => this.runs.delete(handle));
    return handle;
  }

  /** The model loaded before and now cannot: an outage. Fail what waits rather than loop. */
  private fail(error: Error): void {
    this.loadError ??= error;
    for (const job of this.waiting.splice(0)) this.settle(job, error);
  }

  private dispatch(): void {
    if (this.closing) return;
    for (const handle of this.slots) {
      if (!handle.free) continue;
      const first = this.waiting.shift();
      if (!first) return;
      const jobs = [first, ...this.groupmates(first)];
      this.runCounts.set(jobs.length, (this.runCounts.get(jobs.length) ?? 0) + 1);
      this.runs.set(handle, jobs);
      handle.run(
        jobs.map((job) => ({
          id: job.id,
          params: job.params,
          previewEvery: job.options.previewEvery,
          onProgress: job.options.onProgress && ((progress) => {
            if (!job.settled) job.options.onProgress?.(progress);
          }),
          onDone: (error, result) => this.done(handle, job, error, result),
        })),
        first.model,
      );
    }
  }

  /** The rest of `first`'s generateBatch group that can share its UNet calls, taken out of the waiting list. */
  private groupmates(first: Job): Job[] {
    const info = first.model ? this.infos.get(first.model.name) : this.modelInfo;
    if (!first.group || !info) return [];
    const key = (job: Job) => {
      if (job.model?.name !== first.model?.name) return undefined;
      try {
        return batchKey(checkInputs(job.params, info), job.model?.name);
      } catch {
        return undefined; // the worker will say what is wrong with it, alone
      }
    };
    const head = key(first);
    if (head === undefined) return [];
    const chosen = this.waiting.filter((job) => job.group === first.group && key(job) === head);
    for (const job of chosen) this.waiting.splice(this.waiting.indexOf(job), 1);
    return chosen;
  }

  /** The worker has answered for `job` (or died). */
  private done(handle: WorkerHandle, job: Job, error?: Error, result?: GenerateResult): void {
    if (job.model && isUserError(error) && error.identifier === Identifiers.ModelUnavailable) this.modelFailed(job.model.name, error);
    this.settle(job, error, result);
    const left = (this.runs.get(handle) ?? []).filter((j) => j !== job);
    if (left.length > 0) {
      this.runs.set(handle, left);
      return;
    }
    this.runs.delete(handle);
    this.watchdog.forget(handle);
  }

  /** A model failed to load in a worker: say so once, refuse its jobs from now on, fail those waiting. */
  private modelFailed(name: string, error: Error): void {
    if (this.failedModels.has(name)) return;
    this.failedModels.set(name, error);
    this.log(`imagine: ${error.message}; jobs for it are refused until the bot restarts`);
    for (const job of this.waiting.filter((j) => j.model?.name === name)) {
      this.waiting.splice(this.waiting.indexOf(job), 1);
      this.settle(job, error);
    }
  }

  private abort(job: Job): void {
    const waitingAt = this.waiting.indexOf(job);
    if (waitingAt >= 0) this.waiting.splice(waitingAt, 1);
    this.settle(job, cancelled());
    const [handle, run] = [...this.runs].find(([, jobs]) => jobs.includes(job)) ?? [];
    if (!handle || !run) return;
    // Running: answered now rather than when its run ends (in a shared run, when the others finish). The worker
    // stops at its next step, or keeps computing its rows for the others.
    handle.abort(job.id);
    if (run.every((j) => j.settled)) this.watchdog.watch(handle);
  }

  private settle(job: Job, error?: Error, result?: GenerateResult): void {
    if (job.settled) return;
    job.settled = true;
    if (job.onAbort) job.options.signal?.removeEventListener('abort', job.onAbort);
    if (error) job.reject(error);
    else job.resolve(result!);
  }
}
