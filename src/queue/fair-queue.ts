import PQueue from 'p-queue';
import { createLogger, type Logger } from '../log.js';
import { Identifiers, UserError, isUserError, type Identifier } from '../errors.js';
import type { GenerateResult, ModelInfo, StepProgress } from '../diffusion/types.js';
import { readMeta, writeMeta } from '../store/database.js';
import { JobStore } from '../store/jobs.js';
import { ResultFiles } from '../store/results.js';
import { planBatch, type CostModel, type PlanJob } from './batch-plan.js';
import { DeliveryRunner } from './delivery-runner.js';
import { settleGeneration, startGeneration, type GenerationOutcome } from './engine-run.js';
import { costModel, loadStepCosts, measureRun, planJob, positions, saveStepCosts, type StepCosts } from './eta.js';
import { FairScheduler } from './fair-scheduler.js';
import { JobIdFactory } from './ids.js';
import { JournalOutage } from './journal-outage.js';
import { checkParams, resolveSettings, type FairQueueOptions, type QueueSettings } from './options.js';
import { TypedEmitter } from './typed-emitter.js';
import type {
  CancelOutcome,
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
export type { FairQueueOptions } from './options.js';

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

const META_MS_PER_STEP = 'queue.msPerStep';
const META_RUN_MS_PER_STEP = 'queue.runMsPerStepByImages';

/**
 * The embedded JobQueue: one process, p-queue for the concurrency limit, `FairScheduler` to pick which waiting job
 * a free slot takes, and the SQLite journal for every state change. Places and ETAs are computed by eta.ts, the
 * posting of finished images (with its retries) is delivery-runner.ts.
 *
 * p-queue holds one "slot" task per submitted job; a slot that starts asks the scheduler for the fairest job at
 * that moment (not the one it was added for), so fairness is decided as late as possible. A cancelled job leaves
 * its slot behind; that slot finds nothing or runs another job whose own slot later finds nothing.
 *
 * With `maxBatchImages` > 1 a slot takes a run: the fairest job and the waiting jobs that can share its UNet
 * calls, chosen by batch-plan.ts in fair order, all marked running in one transaction and handed to the
 * engine's `generateBatch`. Each job keeps its own timer, cancel, outcome and journal row; the slot (a lane)
 * is held until every job of the run is done. Riders' own slots later find nothing, as after a cancel.
 *
 * A job leaves the scheduler only once the journal says it runs: if that write fails (disk full), the job keeps
 * its place and journal-outage.ts decides what happens meanwhile (submit refused, one retry with a backoff).
 */
export class FairQueue implements JobQueue {
  readonly events: TypedEmitter<QueueEventMap>;

  private readonly jobs: JobStore;
  private readonly delivery: DeliveryRunner;
  /** What happens while the journal cannot be written (refusals, parked slots, retries). */
  private readonly outage: JournalOutage;
  private readonly scheduler = new FairScheduler<JobRecord>();
  private readonly slots: PQueue;
  private readonly running = new Map<string, RunningEntry>();
  private readonly runs = new Set<Run>();
  private readonly lastPlaces = new Map<string, number>();
  private readonly idleWaiters: (() => void)[] = [];
  private readonly ids: JobIdFactory;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly options: QueueSettings;
  private readonly memberCap: (guildId: string) => number;
  /** The learned step costs (kept in the journal's meta table). */
  private costs: StepCosts;
  private readonly cost: CostModel = costModel(() => this.costs);
  /** The model's facts, once known, when batching is on (batch keys fill in its default size and scheduler). */
  private batchInfo?: ModelInfo;
  private resumed = false;
  private closing = false;

  constructor(private readonly config: FairQueueOptions) {
    this.options = resolveSettings(config);
    const cap = config.memberCap ?? 2;
    this.memberCap = typeof cap === 'number' ? () => cap : cap;
    this.logger = config.logger ?? createLogger();
    this.now = config.now ?? Date.now;
    this.ids = new JobIdFactory(this.now);
    this.jobs = new JobStore(config.db);
    this.costs = loadStepCosts(
      { msPerStep: readMeta(config.db, META_MS_PER_STEP), runMsPerStep: readMeta(config.db, META_RUN_MS_PER_STEP) },
      this.options.initialMsPerStep,
    );
    this.slots = new PQueue({ concurrency: this.options.concurrency });
    this.events = new TypedEmitter<QueueEventMap>((error, event) =>
      this.logger.error(`A queue "${String(event)}" listener threw`, { error }),
    );
    this.outage = new JournalOutage({
      retryDelayMs: this.options.journalRetryDelayMs,
      retry: () => this.addSlot(),
      logger: this.logger,
    });
    this.delivery = new DeliveryRunner({
      jobs: this.jobs,
      results: new ResultFiles(config.resultsDir),
      deliver: config.deliver,
      tries: this.options.deliveryTries,
      retryDelayMs: this.options.deliveryRetryDelayMs,
      keepResults: this.options.keepResults,
      events: this.events,
      fail: (job, message, identifier) => this.fail(job, message, identifier),
      onSettled: () => this.checkIdle(),
      logger: this.logger,
      now: this.now,
    });
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
    const recovered = await this.delivery.recover(unfinished.filter((j) => j.state === 'delivering'));
    report.redelivering = recovered.redelivering;
    report.failed += recovered.failed;

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
    this.outage.refuseWhileDown();
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

    let job: JobRecord;
    try {
      job = this.jobs.insert(fresh);
    } catch (error) {
      throw this.outage.submitFailed(error);
    }
    this.outage.wrote();
    this.scheduler.add(job);
    this.addSlot();
    const position = this.positions().get(job.id)!;
    this.lastPlaces.set(job.id, position.place);
    this.events.emit('queued', { job, position });
    this.publishPositions();
    return { job, position };
  }

  cancel(jobId: string, by?: string): CancelOutcome {
    const waiting = this.scheduler.get(jobId);
    if (waiting !== undefined) {
      const message = by === undefined || by === waiting.userId ? 'Cancelled.' : `Cancelled by <@${by}>.`;
      // The journal first: if it cannot be written, this throws and the job keeps its place.
      this.jobs.markCancelled(jobId, message, by, this.now());
      this.scheduler.remove(jobId);
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
    for (const job of [this.scheduler.get(jobId), this.running.get(jobId)?.job, this.delivery.get(jobId)]) {
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
      delivering: this.delivery.jobs(),
      totals: { waiting: waiting.length, running: running.length, delivering: this.delivery.size, members: members.size },
      msPerStep: this.costs.msPerStep,
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
    this.outage.stop();
    this.slots.pause();
    const stopping = [...this.running.values()];
    for (const entry of stopping) if (entry.abort === undefined) this.abortRunning(entry, { kind: 'shutdown' });
    await Promise.all(stopping.map((entry) => entry.done));
    await this.delivery.drain(options.deliveryGraceMs ?? 10_000);
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
    if (this.closing || !this.outage.mayStart()) return;
    const next = this.nextRun();
    if (next.length === 0) {
      this.outage.nothingToStart();
      return;
    }
    const startedAt = this.now();
    let started: JobRecord[];
    try {
      // One transaction: after a crash, the journal shows the whole batch running, or none of it.
      started = this.config.db.transaction(() =>
        next.filter((job) => {
          if (this.jobs.markRunning(job.id, startedAt)) return true;
          this.logger.warn('A waiting job was no longer queued in the journal; skipped', { jobId: job.id });
          return false;
        }),
      )();
    } catch (error) {
      // Nothing was taken from the scheduler: the jobs keep their places until a retry can journal the start.
      this.outage.startFailed(error);
      return;
    }
    this.outage.wrote();
    if (this.batchInfo === undefined) this.scheduler.take();
    else this.scheduler.takeBatch((order) => next.map((job) => order.indexOf(job)));
    const run: Run = { entries: [], plan: [] };
    for (const waiting of started) {
      const job: JobRecord = { ...waiting, state: 'running', startedAt, attempts: waiting.attempts + 1 };
      let finish!: () => void;
      run.entries.push({
        job,
        run,
        controller: new AbortController(),
        finish: () => finish(),
        done: new Promise((resolve) => (finish = resolve)),
      });
      run.plan.push(this.planJob(job));
    }
    if (run.entries.length === 0) return;
    this.runs.add(run);
    for (const entry of run.entries) {
      this.running.set(entry.job.id, entry);
      this.lastPlaces.delete(entry.job.id);
      this.events.emit('started', { job: entry.job });
    }
    this.publishPositions();
    const generations = startGeneration(
      this.config.engine,
      run.entries.map((entry) => ({
        params: entry.job.params,
        options: {
          signal: entry.controller.signal,
          onProgress: (progress) => {
            entry.progress = progress;
            this.events.emit('progress', { job: entry.job, progress });
          },
        },
      })),
    );
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

  /** The jobs the next run takes (the head of the fair order and its companions), still waiting. */
  private nextRun(): JobRecord[] {
    if (this.batchInfo === undefined) {
      const head = this.scheduler.peek();
      return head === undefined ? [] : [head];
    }
    const order = this.scheduler.order();
    const picked = planBatch(
      order.map((job) => this.planJob(job)),
      this.options.maxBatchImages,
      this.cost,
    );
    return picked.map((index) => order[index]);
  }

  /** Wait for one job's generation and record what came of it; returns the result when it was made. */
  private async run(entry: RunningEntry, generation: Promise<GenerateResult>): Promise<GenerateResult | undefined> {
    const { job } = entry;
    // The job timeout: the queue is its one owner (the engine enforces none); its message is `timeoutMessage`.
    const timer = setTimeout(() => this.abortRunning(entry, { kind: 'timeout' }), this.options.jobTimeoutMs);
    let outcome: GenerationOutcome;
    try {
      outcome = await settleGeneration(generation, entry.controller.signal, this.options.abortGraceMs);
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
        this.fail(job, timeoutMessage(this.options.jobTimeoutMs), Identifiers.Timeout);
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
    return (await this.delivery.handOff(job, outcome.result)) ? outcome.result : undefined;
  }

  private abortRunning(entry: RunningEntry, abort: { kind: AbortKind; by?: string }): void {
    if (entry.abort !== undefined) return;
    entry.abort = abort;
    entry.controller.abort(new Error(`job ${abort.kind}`));
  }

  // --- bookkeeping ---------------------------------------------------------------------------------------

  private fail(job: JobRecord, message: string, identifier: Identifier | undefined): void {
    this.jobs.markFailed(job.id, message, identifier, this.now());
    const failed: JobRecord = { ...job, state: 'failed', error: message };
    if (identifier !== undefined) failed.errorCode = identifier;
    this.events.emit('failed', { job: failed, error: message, identifier });
  }

  private planJob(job: JobRecord): PlanJob {
    return planJob(job.params, this.batchInfo, this.options.referencePixels);
  }

  /** Learn the step cost from a finished run (see eta.ts `measureRun`) and keep it in the journal. */
  private measure(run: Run, results: (GenerateResult | undefined)[]): void {
    const made = results.filter((result) => result !== undefined);
    if (made.length === 0) return;
    const measured = measureRun(this.costs, run.plan, Math.max(...made.map((result) => result.timings.totalMs)));
    if (measured === this.costs) return;
    this.costs = measured;
    const saved = saveStepCosts(measured);
    try {
      writeMeta(this.config.db, META_MS_PER_STEP, saved.msPerStep);
      writeMeta(this.config.db, META_RUN_MS_PER_STEP, saved.runMsPerStep);
    } catch (error) {
      this.logger.warn('Could not store the measured ms per step', { error });
    }
  }

  /** Place and ETA of every running and waiting job (see eta.ts `positions`). */
  private positions(): Map<string, JobPosition> {
    return positions({
      runs: [...this.runs].map((run) => ({
        plan: run.plan,
        progress: run.entries.map((entry) => entry.progress),
        running: run.entries.filter((entry) => this.running.get(entry.job.id) === entry).map((entry) => entry.job.id),
      })),
      waiting: this.scheduler.order().map((job) => ({ id: job.id, plan: this.planJob(job) })),
      lanes: this.options.concurrency,
      maxBatchImages: this.options.maxBatchImages,
      cost: this.cost,
    });
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
    if (this.scheduler.size > 0 || this.running.size > 0 || this.runs.size > 0 || this.delivery.size > 0) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}

/** What the member is told when their job ran past `jobTimeoutMs`. */
function timeoutMessage(jobTimeoutMs: number): string {
  const minutes = jobTimeoutMs / 60_000;
  const limit = minutes >= 1 ? `${Number(minutes.toFixed(1))}-minute` : `${jobTimeoutMs} ms`;
  return `This image took longer than the ${limit} limit and was stopped.`;
}
