import { setTimeout as sleep } from 'node:timers/promises';
import PQueue from 'p-queue';
import { createLogger, type Logger } from '../log.js';
import { Identifiers, UserError, isUserError, type Identifier } from '../errors.js';
import { batchKey, checkInputs } from '../diffusion/check-inputs.js';
import type { BatchItem, GenerateParams, GenerateResult, ModelInfo, ImageEngine, StepProgress } from '../diffusion/types.js';
import { readMeta, writeMeta, type Db } from '../store/database.js';
import { JobStore, type SavedResultMeta } from '../store/jobs.js';
import { ResultFiles } from '../store/results.js';
import { planBatch, runCost, type CostModel, type PlanJob } from './batch-plan.js';
import { FairScheduler } from './fair-scheduler.js';
import { JobIdFactory } from './ids.js';
import { TypedEmitter } from './typed-emitter.js';
import type {
  CancelOutcome,
  DeliverFn,
  JobPosition,
  JobQueue,
  JobRecord,
  JobView,
  QueueEventMap,
  QueueSnapshot,
  ResumeReport,
  ShutdownOptions,
  ShutdownReport,
  SubmitInput,
} from './types.js';

export type { Logger } from '../log.js';

export interface FairQueueOptions {
  /** The journal (see ../store/database.ts `openDatabase`). The queue never closes it. */
  db: Db;
  /** Runs the jobs: the worker pool, or the stand-in engine in tests. */
  engine: ImageEngine;
  /** Posts a finished image (the bot's delivery). */
  deliver: DeliverFn;
  /** Where finished PNGs wait for delivery: DATA_DIR/results. */
  resultsDir: string;
  /** Jobs generated at once; set it to the number of engine workers. Default 1. */
  concurrency?: number;
  /**
   * Images one engine run may make for several jobs together: waiting jobs that share steps, scheduler and size
   * (`batchKey`) join the job whose turn it is, in fair order, when that delays no one they jump over by more
   * than one step (see batch-plan.ts). Needs an engine with `generateBatch` (the worker pool, the stand-in).
   * Default 1: one job per run.
   */
  maxBatchImages?: number;
  /** Waiting jobs one member may have in a guild: a number, or a function reading the guild's settings. Default 2. */
  memberCap?: number | ((guildId: string) => number);
  /** Waiting jobs in all guilds together. Default 100. */
  globalCap?: number;
  /** A running job is stopped and failed after this long. Default 600 000 (10 minutes). */
  jobTimeoutMs?: number;
  /** Times a job may start running: a job interrupted by a crash runs once more, then fails. Default 2. */
  maxAttempts?: number;
  /** Delivery tries per job before it fails (each process start begins a new count). Default 4. */
  deliveryTries?: number;
  /** Wait before the second delivery try; doubled for each further try. Default 2000. */
  deliveryRetryDelayMs?: number;
  /** Guess for ms per step before anything was measured (then the measured moving average is kept). Default 1000. */
  initialMsPerStep?: number;
  /** Pixels of the reference image a "step" is measured on; other sizes scale by area. Default 512 × 512. */
  referencePixels?: number;
  /** How long an aborted engine call may take to stop before its slot is given up. Default 30 000. */
  abortGraceMs?: number;
  /** Keep PNGs in resultsDir after delivery (for debugging). Default false. */
  keepResults?: boolean;
  /** Default: console. */
  logger?: Logger;
  /** Clock, for tests. Default Date.now. */
  now?: () => number;
}

type AbortKind = 'cancel' | 'timeout' | 'shutdown';

interface RunningEntry {
  job: JobRecord;
  /** The engine run it shares with the other jobs of its batch. */
  run: Run;
  controller: AbortController;
  abort?: { kind: AbortKind; by?: string };
  progress?: StepProgress;
  /** Resolves `done`. */
  finish: () => void;
  /** Resolves when the job's outcome is recorded (its run may go on for the others of its batch). */
  done: Promise<void>;
}

/** One engine run: a job alone, or a batch sharing its UNet calls. It holds a lane until every job of it is done. */
interface Run {
  entries: RunningEntry[];
  plan: PlanJob[];
}

interface DeliveryEntry {
  job: JobRecord;
  controller: AbortController;
  done: Promise<void>;
}

const META_MS_PER_STEP = 'queue.msPerStep';
const META_RUN_MS_PER_STEP = 'queue.runMsPerStepByImages';
// Weight of the newest measurement in the moving average: reacts within a few jobs, ignores one odd job.
const EWMA_WEIGHT = 0.3;

/**
 * The embedded JobQueue: one process, p-queue for the concurrency limit, `FairScheduler` to pick which waiting job
 * a free slot takes, and the SQLite journal for every state change.
 *
 * p-queue holds one "slot" task per submitted job; a slot that starts asks the scheduler for the fairest job at
 * that moment (not the one it was added for), so fairness is decided as late as possible. A cancelled job leaves
 * its slot behind; that slot finds nothing or runs another job whose own slot later finds nothing.
 *
 * With `maxBatchImages` > 1 a slot takes a run: the fairest job and the waiting jobs that can share its UNet
 * calls, chosen by batch-plan.ts in fair order, all marked running in one transaction and handed to the
 * engine's `generateBatch`. Each job keeps its own timer, cancel, outcome and journal row; the slot (a lane)
 * is held until every job of the run is done. Riders' own slots later find nothing, as after a cancel.
 */
export class FairQueue implements JobQueue {
  readonly events: TypedEmitter<QueueEventMap>;

  private readonly jobs: JobStore;
  private readonly results: ResultFiles;
  private readonly scheduler = new FairScheduler<JobRecord>();
  private readonly slots: PQueue;
  private readonly running = new Map<string, RunningEntry>();
  private readonly runs = new Set<Run>();
  private readonly delivering = new Map<string, DeliveryEntry>();
  private readonly lastPlaces = new Map<string, number>();
  private readonly idleWaiters: (() => void)[] = [];
  private readonly ids: JobIdFactory;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly options: Required<
    Omit<FairQueueOptions, 'db' | 'engine' | 'deliver' | 'resultsDir' | 'memberCap' | 'logger' | 'now'>
  >;
  private readonly memberCap: (guildId: string) => number;
  private msPerStep: number;
  /** Measured ms per step of a run of k reference-size images (moving averages), by k. */
  private readonly runMsPerStep: Map<number, number>;
  private readonly cost: CostModel = { msPerStep: (images) => this.estimateMsPerStep(images) };
  /** The model's facts, once known, when batching is on (batch keys fill in its default size and scheduler). */
  private batchInfo?: ModelInfo;
  private resumed = false;
  private closing = false;

  constructor(private readonly config: FairQueueOptions) {
    this.options = {
      concurrency: config.concurrency ?? 1,
      maxBatchImages: config.maxBatchImages ?? 1,
      globalCap: config.globalCap ?? 100,
      jobTimeoutMs: config.jobTimeoutMs ?? 600_000,
      maxAttempts: config.maxAttempts ?? 2,
      deliveryTries: config.deliveryTries ?? 4,
      deliveryRetryDelayMs: config.deliveryRetryDelayMs ?? 2000,
      initialMsPerStep: config.initialMsPerStep ?? 1000,
      referencePixels: config.referencePixels ?? 512 * 512,
      abortGraceMs: config.abortGraceMs ?? 30_000,
      keepResults: config.keepResults ?? false,
    };
    checkPositiveInteger('concurrency', this.options.concurrency);
    checkPositiveInteger('maxBatchImages', this.options.maxBatchImages);
    checkPositiveInteger('globalCap', this.options.globalCap);
    checkPositiveInteger('jobTimeoutMs', this.options.jobTimeoutMs);
    checkPositiveInteger('maxAttempts', this.options.maxAttempts);
    checkPositiveInteger('deliveryTries', this.options.deliveryTries);
    const cap = config.memberCap ?? 2;
    this.memberCap = typeof cap === 'number' ? () => cap : cap;
    this.logger = config.logger ?? createLogger();
    this.now = config.now ?? Date.now;
    this.ids = new JobIdFactory(this.now);
    this.jobs = new JobStore(config.db);
    this.results = new ResultFiles(config.resultsDir);
    this.msPerStep = readMeta<number>(config.db, META_MS_PER_STEP) ?? this.options.initialMsPerStep;
    const saved = readMeta<Record<string, number>>(config.db, META_RUN_MS_PER_STEP) ?? {};
    this.runMsPerStep = new Map(
      Object.entries(saved)
        .map(([images, ms]) => [Number(images), ms] as [number, number])
        .filter(([images, ms]) => Number.isInteger(images) && images > 0 && Number.isFinite(ms) && ms > 0),
    );
    this.slots = new PQueue({ concurrency: this.options.concurrency });
    this.events = new TypedEmitter<QueueEventMap>((error, event) =>
      this.logger.error(`A queue "${String(event)}" listener threw`, { error }),
    );
  }

  async resume(): Promise<ResumeReport> {
    if (this.resumed) throw new Error('resume() was already called');
    this.resumed = true;
    if (this.options.maxBatchImages > 1) {
      if (this.config.engine.generateBatch === undefined) {
        this.logger.warn('maxBatchImages is set but the engine cannot run batches; jobs run one at a time');
      } else {
        try {
          this.batchInfo = await this.config.engine.info();
        } catch (error) {
          this.logger.warn('Could not read the model facts that batching needs; jobs run one at a time', { error });
        }
      }
    }
    const report: ResumeReport = { queued: 0, rerun: 0, failed: 0, redelivering: 0 };
    const unfinished = this.jobs.listByState('queued', 'running', 'delivering');

    // Interrupted runs go first: they were at the front of the queue when the process died.
    for (const job of unfinished.filter((j) => j.state === 'running')) {
      if (job.attempts >= this.options.maxAttempts) {
        this.fail(
          job,
          `The bot restarted while making this image ${job.attempts} times, so it was stopped to keep the queue moving.`,
          Identifiers.Timeout,
        );
        report.failed++;
        continue;
      }
      this.jobs.markQueued(job.id, job.attempts);
      const queued: JobRecord = { ...job, state: 'queued' };
      delete queued.startedAt;
      this.scheduler.add(queued);
      this.events.emit('requeued', { job: queued, reason: 'restart' });
      report.rerun++;
    }
    for (const job of unfinished.filter((j) => j.state === 'queued')) {
      this.scheduler.add(job);
      report.queued++;
    }

    const keep = new Set<string>();
    for (const job of unfinished.filter((j) => j.state === 'delivering')) {
      const meta = this.jobs.savedResult(job.id);
      const images = meta === undefined ? undefined : await this.results.load(job.id, meta.imageCount);
      if (meta === undefined || images === undefined) {
        this.fail(job, 'The finished image was lost in a restart. Please ask again.', undefined);
        report.failed++;
        continue;
      }
      keep.add(job.id);
      const { imageCount: _imageCount, ...rest } = meta;
      this.startDelivery(job, { ...rest, images }, true);
      report.redelivering++;
    }
    await this.results.removeAllExcept(keep);

    // Count first: a slot may start (and take a job) inside addSlot.
    const waiting = this.scheduler.size;
    for (let i = 0; i < waiting; i++) this.addSlot();
    this.publishPositions();
    this.checkIdle();
    return report;
  }

  submit(input: SubmitInput): { job: JobRecord; position: JobPosition } {
    if (!this.resumed) {
      // Wiring should call resume() before the client logs in; if a command slips in first, answer it kindly.
      throw new UserError(
        Identifiers.ShuttingDown,
        'The bot is starting up and not taking images yet. Try again in a few seconds.',
        { reason: 'resume() has not been called' },
      );
    }
    if (this.closing) {
      throw new UserError(
        Identifiers.ShuttingDown,
        'The bot is restarting and is not taking new images right now. Try again in a minute.',
      );
    }
    checkParams(input.params);
    const cap = this.memberCap(input.guildId);
    const mine = this.scheduler.countFor(input.guildId, input.userId);
    if (mine >= cap) {
      throw new UserError(
        Identifiers.MemberQueueFull,
        `You already have ${mine} image${mine === 1 ? '' : 's'} waiting, the most this server allows (${cap}). ` +
          'Wait for one to start, or cancel one with ❌.',
        { cap },
      );
    }
    if (this.scheduler.size >= this.options.globalCap) {
      throw new UserError(
        Identifiers.QueueFull,
        `The queue is full (${this.options.globalCap} images waiting). Try again in a few minutes.`,
        { cap: this.options.globalCap },
      );
    }

    const id = this.ids.next();
    const fresh: Omit<JobRecord, 'seq'> = {
      id,
      guildId: input.guildId,
      channelId: input.channelId,
      userId: input.userId,
      kind: input.kind ?? 'imagine',
      params: structuredClone(input.params),
      state: 'queued',
      attempts: 0,
      deliveryAttempts: 0,
      deliveryKey: id,
      createdAt: this.now(),
    };
    if (input.parentJobId !== undefined) fresh.parentJobId = input.parentJobId;
    if (input.interaction !== undefined) fresh.interaction = { ...input.interaction };
    if (input.messageId !== undefined) fresh.messageId = input.messageId;
    if (input.replyToMessageId !== undefined) fresh.replyToMessageId = input.replyToMessageId;

    const job = this.jobs.insert(fresh);
    this.scheduler.add(job);
    this.addSlot();
    const position = this.positions().get(job.id)!;
    this.lastPlaces.set(job.id, position.place);
    this.events.emit('queued', { job, position });
    this.publishPositions();
    return { job, position };
  }

  cancel(jobId: string, by?: string): CancelOutcome {
    const waiting = this.scheduler.remove(jobId);
    if (waiting !== undefined) {
      const message = by === undefined || by === waiting.userId ? 'Cancelled.' : `Cancelled by <@${by}>.`;
      this.jobs.markCancelled(jobId, message, by, this.now());
      this.lastPlaces.delete(jobId);
      const job = this.jobs.get(jobId)!;
      this.events.emit('cancelled', { job, by });
      this.publishPositions();
      this.checkIdle();
      return 'cancelled';
    }
    const entry = this.running.get(jobId);
    if (entry !== undefined) {
      if (entry.abort === undefined) this.abortRunning(entry, { kind: 'cancel', by });
      return 'stopping';
    }
    return this.jobs.get(jobId) === undefined ? 'not-found' : 'finished';
  }

  setMessageId(jobId: string, messageId: string): void {
    if (!this.jobs.setMessageId(jobId, messageId)) throw new Error(`No job ${jobId} in the journal`);
    for (const job of [this.scheduler.get(jobId), this.running.get(jobId)?.job, this.delivering.get(jobId)?.job]) {
      if (job !== undefined) job.messageId = messageId;
    }
  }

  linkMessage(jobId: string, messageId: string): void {
    this.jobs.linkMessage(jobId, messageId);
  }

  get(jobId: string): JobRecord | undefined {
    return this.jobs.get(jobId);
  }

  findByMessageId(messageId: string): JobRecord | undefined {
    return this.jobs.findByMessageId(messageId);
  }

  position(jobId: string): JobPosition | undefined {
    return this.positions().get(jobId);
  }

  snapshot(): QueueSnapshot {
    const positions = this.positions();
    const running: JobView[] = [...this.running.values()]
      .sort((a, b) => (a.job.startedAt ?? 0) - (b.job.startedAt ?? 0))
      .map((entry) => {
        const view: JobView = { job: entry.job, position: positions.get(entry.job.id)! };
        if (entry.progress !== undefined) view.progress = entry.progress;
        return view;
      });
    const waiting: JobView[] = this.scheduler
      .order()
      .map((job) => ({ job, position: positions.get(job.id)! }))
      .sort((a, b) => a.position.place - b.position.place);
    const members = new Set(this.scheduler.memberKeys());
    for (const entry of this.running.values()) members.add(`${entry.job.guildId}:${entry.job.userId}`);
    return {
      running,
      waiting,
      delivering: [...this.delivering.values()].map((entry) => entry.job),
      totals: { waiting: waiting.length, running: running.length, delivering: this.delivering.size, members: members.size },
      msPerStep: this.msPerStep,
    };
  }

  onIdle(): Promise<void> {
    return new Promise((resolve) => {
      this.idleWaiters.push(resolve);
      this.checkIdle();
    });
  }

  async shutdown(options: ShutdownOptions = {}): Promise<ShutdownReport> {
    this.closing = true;
    this.slots.pause();
    const stopping = [...this.running.values()];
    for (const entry of stopping) if (entry.abort === undefined) this.abortRunning(entry, { kind: 'shutdown' });
    await Promise.all(stopping.map((entry) => entry.done));

    const deliveries = [...this.delivering.values()];
    const grace = options.deliveryGraceMs ?? 10_000;
    const timer = sleep(grace, undefined, { ref: false }).then(() => 'timeout' as const);
    const finished = await Promise.race([Promise.all(deliveries.map((d) => d.done)).then(() => 'done' as const), timer]);
    if (finished === 'timeout') {
      for (const delivery of this.delivering.values()) delivery.controller.abort(new Error('shutting down'));
      // A delivery that ignores its signal is left to the next start (it stays `delivering` in the journal).
      await Promise.race([
        Promise.all(deliveries.map((d) => d.done)),
        sleep(Math.min(grace, 2000), undefined, { ref: false }),
      ]);
    }
    const waiting = this.jobs.listByState('queued');
    this.events.emit('shutdown', { waiting });
    return { waiting, requeued: stopping.filter((entry) => entry.abort?.kind === 'shutdown').length };
  }

  // --- running -------------------------------------------------------------------------------------------

  private addSlot(): void {
    this.slots.add(() => this.runNext()).catch((error: unknown) => this.logger.error('A queue slot failed', { error }));
  }

  private async runNext(): Promise<void> {
    // p-queue calls this synchronously inside add(): yield once so submit() returns, and `queued` is seen,
    // before the job can start.
    await Promise.resolve();
    if (this.closing) return;
    const picked =
      this.batchInfo === undefined
        ? [this.scheduler.take()].filter((job) => job !== undefined)
        : this.scheduler.takeBatch((order) => planBatch(order.map((job) => this.planJob(job)), this.options.maxBatchImages, this.cost));
    if (picked.length === 0) return;
    const startedAt = this.now();
    const run: Run = { entries: [], plan: [] };
    // One transaction: after a crash, the journal shows the whole batch running, or none of it.
    this.config.db.transaction(() => {
      for (const next of picked) {
        if (!this.jobs.markRunning(next.id, startedAt)) {
          this.logger.warn('A waiting job was no longer queued in the journal; skipped', { jobId: next.id });
          continue;
        }
        const job: JobRecord = { ...next, state: 'running', startedAt, attempts: next.attempts + 1 };
        let finish!: () => void;
        const entry: RunningEntry = {
          job,
          run,
          controller: new AbortController(),
          finish: () => finish(),
          done: new Promise((resolve) => (finish = resolve)),
        };
        run.entries.push(entry);
        run.plan.push(this.planJob(job));
      }
    })();
    if (run.entries.length === 0) return;
    this.runs.add(run);
    for (const entry of run.entries) {
      this.running.set(entry.job.id, entry);
      this.lastPlaces.delete(entry.job.id);
      this.events.emit('started', { job: entry.job });
    }
    this.publishPositions();
    const generations = this.startGeneration(run.entries);
    const outcomes = await Promise.all(
      run.entries.map(async (entry, k) => {
        try {
          return await this.run(entry, generations[k]);
        } catch (error) {
          this.logger.error('The queue failed to record a job outcome', { jobId: entry.job.id, error });
          return undefined;
        } finally {
          this.running.delete(entry.job.id);
          entry.finish();
        }
      }),
    );
    this.runs.delete(run);
    this.measure(run, outcomes);
    this.publishPositions();
    this.checkIdle();
  }

  /** Hand the jobs to the engine: one shared run when there are several, one promise per job either way. */
  private startGeneration(entries: RunningEntry[]): Promise<GenerateResult>[] {
    const items: BatchItem[] = entries.map((entry) => ({
      params: entry.job.params,
      options: {
        signal: entry.controller.signal,
        onProgress: (progress) => {
          entry.progress = progress;
          this.events.emit('progress', { job: entry.job, progress });
        },
      },
    }));
    const { engine } = this.config;
    try {
      if (items.length > 1 && engine.generateBatch !== undefined) {
        const promises = engine.generateBatch(items);
        if (promises.length !== items.length) {
          throw new Error(`Expected one promise per job from generateBatch (${items.length}), got ${promises.length}`);
        }
        return promises;
      }
      return items.map((item) => engine.generate(item.params, item.options));
    } catch (error) {
      return items.map(() => Promise.reject(error));
    }
  }

  /** Wait for one job's generation and record what came of it; returns the result when it was made. */
  private async run(entry: RunningEntry, generation: Promise<GenerateResult>): Promise<GenerateResult | undefined> {
    const { job } = entry;
    const timer = setTimeout(() => this.abortRunning(entry, { kind: 'timeout' }), this.options.jobTimeoutMs);
    let outcome: { result: GenerateResult } | { error: unknown } | { abandoned: true };
    try {
      const settled = generation.then(
        (result) => ({ result }),
        (error: unknown) => ({ error }),
      );
      outcome = await Promise.race([settled, this.abandonAfterAbort(entry.controller.signal)]);
    } finally {
      clearTimeout(timer);
    }

    // No longer running: a cancel from here on answers 'finished', and the outcome events below see that.
    this.running.delete(job.id);
    if ('abandoned' in outcome) {
      this.logger.error(`The engine did not stop within ${this.options.abortGraceMs} ms of an abort; slot released`, {
        jobId: job.id,
      });
    }
    if (entry.abort !== undefined) {
      const { kind, by } = entry.abort;
      if (kind === 'shutdown') {
        // Not the job's fault: its attempt does not count, and it keeps its place for the next start.
        this.jobs.markQueued(job.id, job.attempts - 1);
        this.events.emit('requeued', { job: { ...job, state: 'queued', attempts: job.attempts - 1 }, reason: 'shutdown' });
      } else if (kind === 'cancel') {
        const message = by === undefined || by === job.userId ? 'Cancelled.' : `Cancelled by <@${by}>.`;
        this.jobs.markCancelled(job.id, message, by, this.now());
        this.events.emit('cancelled', { job: this.jobs.get(job.id)!, by });
      } else {
        const minutes = this.options.jobTimeoutMs / 60_000;
        const limit = minutes >= 1 ? `${Number(minutes.toFixed(1))}-minute` : `${this.options.jobTimeoutMs} ms`;
        this.fail(job, `This image took longer than the ${limit} limit and was stopped.`, Identifiers.Timeout);
      }
      return undefined;
    }
    if ('error' in outcome) {
      const { error } = outcome;
      if (isUserError(error)) {
        this.fail(job, error.message, error.identifier);
      } else {
        this.logger.error('Generation failed', { jobId: job.id, error });
        this.fail(job, 'Sorry, something went wrong while making this image.', undefined);
      }
      return undefined;
    }
    if (!('result' in outcome)) return undefined;
    const { result } = outcome;

    // The PNGs reach the disk before the journal says `delivering`, so a restart can always deliver them.
    try {
      await this.results.save(job.id, result.images);
    } catch (error) {
      this.logger.error('Could not save a finished image', { jobId: job.id, error });
      this.fail(job, 'Sorry, the finished image could not be saved.', undefined);
      return undefined;
    }
    const { images, ...rest } = result;
    const meta: SavedResultMeta = { ...rest, imageCount: images.length };
    this.jobs.markDelivering(job.id, meta);
    const delivering: JobRecord = { ...job, state: 'delivering' };
    this.events.emit('generated', { job: delivering, result });
    this.startDelivery(delivering, result, false);
    return result;
  }

  private abortRunning(entry: RunningEntry, abort: { kind: AbortKind; by?: string }): void {
    if (entry.abort !== undefined) return;
    entry.abort = abort;
    entry.controller.abort(new Error(`job ${abort.kind}`));
  }

  /** Resolves `abortGraceMs` after the signal aborts; never, if it never does. */
  private abandonAfterAbort(signal: AbortSignal): Promise<{ abandoned: true }> {
    return new Promise((resolve) => {
      const start = () =>
        setTimeout(() => resolve({ abandoned: true }), this.options.abortGraceMs).unref();
      if (signal.aborted) start();
      else signal.addEventListener('abort', start, { once: true });
    });
  }

  // --- delivery ------------------------------------------------------------------------------------------

  private startDelivery(job: JobRecord, result: GenerateResult, recovered: boolean): void {
    const controller = new AbortController();
    const entry: DeliveryEntry = { job, controller, done: Promise.resolve() };
    this.delivering.set(job.id, entry);
    entry.done = this.deliverWithRetries(entry, result, recovered)
      .catch((error: unknown) => this.logger.error('Delivery bookkeeping failed', { jobId: job.id, error }))
      .finally(() => {
        this.delivering.delete(job.id);
        this.checkIdle();
      });
  }

  private async deliverWithRetries(entry: DeliveryEntry, result: GenerateResult, recovered: boolean): Promise<void> {
    const { job, controller } = entry;
    for (let attempt = 1; ; attempt++) {
      if (controller.signal.aborted) return;
      const mayHaveBeenDelivered = job.deliveryAttempts > 0;
      this.jobs.beginDelivery(job.id);
      job.deliveryAttempts++;
      try {
        const receipt = await this.config.deliver(job, result, {
          attempt: job.deliveryAttempts,
          mayHaveBeenDelivered,
          recovered,
          signal: controller.signal,
        });
        const at = this.now();
        this.jobs.markDone(job.id, receipt.messageId, at);
        const done: JobRecord = { ...job, state: 'done', resultMessageId: receipt.messageId, deliveredAt: at, finishedAt: at };
        this.events.emit('delivered', { job: done, messageId: receipt.messageId });
        if (!this.options.keepResults) await this.results.remove(job.id);
        return;
      } catch (error) {
        // Shutting down: the job stays `delivering` and the next start tries again from the saved PNGs.
        if (controller.signal.aborted) return;
        if (isUserError(error) || attempt >= this.options.deliveryTries) {
          this.logger.error('Delivery failed', { jobId: job.id, attempt, error });
          this.fail(
            job,
            isUserError(error) ? error.message : 'Sorry, the image was made but could not be posted.',
            isUserError(error) ? error.identifier : undefined,
          );
          if (!this.options.keepResults) await this.results.remove(job.id);
          return;
        }
        this.logger.warn('Delivery failed; retrying', { jobId: job.id, attempt, error });
        try {
          await sleep(this.options.deliveryRetryDelayMs * 2 ** (attempt - 1), undefined, { signal: controller.signal });
        } catch {
          return;
        }
      }
    }
  }

  // --- bookkeeping ---------------------------------------------------------------------------------------

  private fail(job: JobRecord, message: string, identifier: Identifier | undefined): void {
    this.jobs.markFailed(job.id, message, identifier, this.now());
    const failed: JobRecord = { ...job, state: 'failed', error: message };
    if (identifier !== undefined) failed.errorCode = identifier;
    this.events.emit('failed', { job: failed, error: message, identifier });
  }

  /** What the batch planner and the ETAs need of a job. Its key is undefined when batching is off or it is invalid. */
  private planJob(job: JobRecord): PlanJob {
    const { params } = job;
    let key: string | undefined;
    if (this.batchInfo !== undefined) {
      try {
        key = batchKey(checkInputs(params, this.batchInfo));
      } catch {
        key = undefined; // the engine will say what is wrong with it, alone
      }
    }
    const pixels =
      params.width !== undefined && params.height !== undefined
        ? params.width * params.height
        : this.batchInfo !== undefined
          ? (params.width ?? this.batchInfo.width) * (params.height ?? this.batchInfo.height)
          : this.options.referencePixels;
    return { key, images: params.count ?? 1, steps: params.steps, area: pixels / this.options.referencePixels };
  }

  /**
   * Milliseconds per step of a run of `images` reference-size images: measured for that size of run, else bounded
   * from the measured ones (a bigger run costs at least as much; a run k times bigger at most k times as much),
   * else the per-image average times `images`.
   */
  private estimateMsPerStep(images: number): number {
    const exact = this.runMsPerStep.get(images);
    if (exact !== undefined) return exact;
    let below: number | undefined;
    let above: number | undefined;
    for (const k of this.runMsPerStep.keys()) {
      if (k < images && (below === undefined || k > below)) below = k;
      if (k > images && (above === undefined || k < above)) above = k;
    }
    const bounds: number[] = [];
    if (below !== undefined) bounds.push((this.runMsPerStep.get(below)! * images) / below);
    if (above !== undefined) bounds.push(this.runMsPerStep.get(above)!);
    return bounds.length > 0 ? Math.min(...bounds) : this.msPerStep * images;
  }

  /** Learn from a finished run: its wall time per step, by the number of images it made (the batch's, as started). */
  private measure(run: Run, results: (GenerateResult | undefined)[]): void {
    const made = results.filter((result) => result !== undefined);
    if (made.length === 0) return;
    const totalMs = Math.max(...made.map((result) => result.timings.totalMs));
    const images = run.plan.reduce((sum, job) => sum + job.images, 0);
    const perStep = totalMs / Math.max(run.plan[0].steps * run.plan[0].area, 1e-9);
    if (!Number.isFinite(perStep) || perStep <= 0) return;
    const previous = this.runMsPerStep.get(images);
    this.runMsPerStep.set(images, previous === undefined ? perStep : EWMA_WEIGHT * perStep + (1 - EWMA_WEIGHT) * previous);
    this.msPerStep = EWMA_WEIGHT * (perStep / images) + (1 - EWMA_WEIGHT) * this.msPerStep;
    try {
      writeMeta(this.config.db, META_MS_PER_STEP, this.msPerStep);
      writeMeta(this.config.db, META_RUN_MS_PER_STEP, Object.fromEntries(this.runMsPerStep));
    } catch (error) {
      this.logger.warn('Could not store the measured ms per step', { error });
    }
  }

  /**
   * Place and ETA of every running and waiting job. Each of `concurrency` lanes is busy for the remaining work
   * of its running run; then the waiting jobs are planned into runs as they will start (the head of the fair
   * order and its companions, see batch-plan.ts), each run going to the lane that frees first. Places count in
   * that starting order.
   */
  private positions(): Map<string, JobPosition> {
    const positions = new Map<string, JobPosition>();
    const order = this.scheduler.order();
    const lanes = new Array<number>(this.options.concurrency).fill(0);
    let lane = 0;
    for (const run of this.runs) {
      const live = run.entries.filter((entry) => this.running.get(entry.job.id) === entry);
      if (live.length === 0) continue;
      // The jobs of a run step together; the furthest report is the run's.
      let step = 0;
      let total = run.plan[0].steps;
      for (const entry of run.entries) {
        if (entry.progress !== undefined && entry.progress.step >= step) {
          step = entry.progress.step;
          total = entry.progress.totalSteps;
        }
      }
      const remaining = Math.max(total - step, 0) / Math.max(total, 1);
      const remainingMs = runCost(run.plan, this.cost) * remaining;
      if (lane < lanes.length) lanes[lane++] = remainingMs;
      for (const entry of live) {
        positions.set(entry.job.id, { place: 0, waiting: order.length, startsInMs: 0, doneInMs: Math.round(remainingMs) });
      }
    }
    let rest = order.map((job) => ({ job, plan: this.planJob(job) }));
    let place = 0;
    while (rest.length > 0) {
      const picked =
        this.batchInfo === undefined
          ? [0]
          : planBatch(
              rest.map((r) => r.plan),
              this.options.maxBatchImages,
              this.cost,
            );
      const batch = picked.map((index) => rest[index]);
      let free = 0;
      for (let i = 1; i < lanes.length; i++) if (lanes[i] < lanes[free]) free = i;
      const startsInMs = lanes[free];
      lanes[free] += runCost(
        batch.map((r) => r.plan),
        this.cost,
      );
      for (const { job } of batch) {
        positions.set(job.id, {
          place: ++place,
          waiting: order.length,
          startsInMs: Math.round(startsInMs),
          doneInMs: Math.round(lanes[free]),
        });
      }
      const taken = new Set(picked);
      rest = rest.filter((_, index) => !taken.has(index));
    }
    return positions;
  }

  /** Emit `position` for each waiting job whose place changed since it was last told. */
  private publishPositions(): void {
    if (this.scheduler.size === 0) return;
    for (const [jobId, position] of this.positions()) {
      if (position.place === 0 || this.lastPlaces.get(jobId) === position.place) continue;
      this.lastPlaces.set(jobId, position.place);
      const job = this.scheduler.get(jobId);
      if (job !== undefined) this.events.emit('position', { job, position });
    }
  }

  private checkIdle(): void {
    // `runs`: a job of a batch can be past running (saving its PNGs) while the rest of its run is not done.
    if (this.scheduler.size > 0 || this.running.size > 0 || this.runs.size > 0 || this.delivering.size > 0) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}

function checkPositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`Expected \`${name}\` to be a positive integer, got \`${value}\``);
  }
}

/** The command validated the params for the member; this only refuses what would break the queue's arithmetic. */
function checkParams(params: GenerateParams): void {
  if (!Number.isInteger(params.steps) || params.steps < 1) {
    throw new TypeError(`Expected \`params.steps\` to be a positive integer, got \`${params.steps}\``);
  }
  if (params.count !== undefined && (!Number.isInteger(params.count) || params.count < 1)) {
    throw new TypeError(`Expected \`params.count\` to be a positive integer, got \`${params.count}\``);
  }
}
