import { createLogger, type Logger } from '../log.js';
import { Identifiers, UserError } from '../errors.js';
import { JobStore } from '../store/jobs.js';
import { ResultFiles } from '../store/results.js';
import { checkCaps, imagesOf } from './caps.js';
import { newJobRecord } from './new-job.js';
import { DeliveryRunner } from './delivery-runner.js';
import { positions } from './eta.js';
import { FairScheduler } from './fair-scheduler.js';
import { JobIdFactory } from './ids.js';
import { cancelledMessage, JobRunner } from './job-runner.js';
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

/**
 * The embedded JobQueue: one process, `FairScheduler` for the order of the waiting jobs, and the SQLite journal
 * for every state change. This class admits jobs (caps, refusals), cancels them, answers where they stand, and
 * resumes and shuts down; starting and running them (lanes, batches, the job timeout, outcomes) is
 * job-runner.ts, places and ETAs are computed by eta.ts, the posting of finished images (with its retries) is
 * delivery-runner.ts.
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
  /** Starts and runs the waiting jobs, and records what came of them. */
  private readonly runner: JobRunner;
  private readonly lastPlaces = new Map<string, number>();
  private readonly idleWaiters: (() => void)[] = [];
  private readonly ids: JobIdFactory;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly options: QueueSettings;
  private readonly memberCap: (guildId: string) => number;
  private resumed = false;
  private closing = false;

  constructor(config: FairQueueOptions) {
    this.options = resolveSettings(config);
    const cap = config.memberCap ?? 2;
    this.memberCap = typeof cap === 'number' ? () => cap : cap;
    this.logger = config.logger ?? createLogger();
    this.now = config.now ?? Date.now;
    this.ids = new JobIdFactory(this.now);
    this.jobs = new JobStore(config.db);
    this.events = new TypedEmitter<QueueEventMap>((error, event) =>
      this.logger.error(`A queue "${String(event)}" listener threw`, { error }),
    );
    this.outage = new JournalOutage({
      retryDelayMs: this.options.journalRetryDelayMs,
      retry: () => this.runner.addSlot(),
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
      fail: (job, message, identifier) => this.runner.fail(job, message, identifier),
      onSettled: () => this.checkIdle(),
      logger: this.logger,
      now: this.now,
    });
    this.runner = new JobRunner({
      db: config.db,
      jobs: this.jobs,
      engine: config.engine,
      settings: this.options,
      waiting: {
        peek: () => this.scheduler.peek(),
        order: () => this.scheduler.order(),
        take: (jobs) => this.takeWaiting(jobs),
      },
      delivery: this.delivery,
      outage: this.outage,
      events: this.events,
      onRunsChanged: () => {
        this.publishPositions();
        this.checkIdle();
      },
      logger: this.logger,
      now: this.now,
    });
  }

  async resume(): Promise<ResumeReport> {
    if (this.resumed) throw new Error('resume() was already called');
    this.resumed = true;
    await this.runner.prepareBatching();
    const report: ResumeReport = { queued: 0, rerun: 0, failed: 0, redelivering: 0 };
    const unfinished = this.jobs.listByState('queued', 'running', 'delivering');

    // Interrupted runs go first: they were at the front of the queue when the process died.
    for (const job of unfinished.filter((j) => j.state === 'running')) {
      if (job.attempts >= this.options.maxAttempts) {
        this.runner.fail(
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
    for (let i = 0; i < waiting; i++) this.runner.addSlot();
    this.publishPositions();
    this.checkIdle();
    return report;
  }

  /** The caps (caps.ts) against this process's waiting jobs. @throws UserError MemberQueueFull or QueueFull. */
  private checkCaps(input: SubmitInput): void {
    let mine = 0;
    for (const job of this.scheduler.jobsFor(input.guildId, input.userId)) mine += imagesOf(job.params);
    let total = 0;
    for (const job of this.scheduler.waiting()) total += imagesOf(job.params);
    checkCaps({
      images: imagesOf(input.params),
      mine,
      memberCap: this.memberCap(input.guildId),
      total,
      globalCap: this.options.globalCap,
      countChosen: (input.kind ?? 'imagine') === 'imagine',
    });
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
    if (input.params.initImage !== undefined) {
      // JSON would journal the bytes as an object of numbers: they go beside the job instead.
      throw new TypeError('Expected the img2img picture as `SubmitInput.initImage`, got it inside `params`');
    }
    this.checkCaps(input);

    const id = this.ids.next();
    const fresh = newJobRecord(id, input, this.now());

    let job: JobRecord;
    try {
      job = this.jobs.insert(fresh, input.initImage);
    } catch (error) {
      throw this.outage.submitFailed(error);
    }
    this.outage.wrote();
    this.scheduler.add(job);
    this.runner.addSlot();
    const position = this.positions().get(job.id)!;
    this.lastPlaces.set(job.id, position.place);
    this.events.emit('queued', { job, position });
    this.publishPositions();
    return { job, position };
  }

  cancel(jobId: string, by?: string): CancelOutcome {
    const waiting = this.scheduler.get(jobId);
    if (waiting !== undefined) {
      // The journal first: if it cannot be written, this throws and the job keeps its place.
      this.jobs.markCancelled(jobId, cancelledMessage(waiting, by), by, this.now());
      this.scheduler.remove(jobId);
      this.lastPlaces.delete(jobId);
      const job = this.jobs.get(jobId)!;
      this.events.emit('cancelled', { job, by });
      this.publishPositions();
      this.checkIdle();
      return 'cancelled';
    }
    if (this.runner.cancel(jobId, by)) return 'stopping';
    return this.jobs.get(jobId) === undefined ? 'not-found' : 'finished';
  }

  setMessageId(jobId: string, messageId: string): void {
    if (!this.jobs.setMessageId(jobId, messageId)) throw new Error(`No job ${jobId} in the journal`);
    for (const job of [this.scheduler.get(jobId), this.runner.get(jobId), this.delivery.get(jobId)]) {
      if (job !== undefined) job.messageId = messageId;
    }
  }

  linkMessage(jobId: string, messageId: string): void {
    this.jobs.linkMessage(jobId, messageId);
  }

  get(jobId: string): JobRecord | undefined {
    return this.jobs.get(jobId);
  }

  initImage(jobId: string): Uint8Array | undefined {
    return this.jobs.initImage(jobId);
  }

  findByMessageId(messageId: string): JobRecord | undefined {
    return this.jobs.findByMessageId(messageId);
  }

  position(jobId: string): JobPosition | undefined {
    return this.positions().get(jobId);
  }

  snapshot(): QueueSnapshot {
    const positions = this.positions();
    const running: JobView[] = this.runner
      .jobs()
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
    for (const entry of this.runner.jobs()) members.add(`${entry.job.guildId}:${entry.job.userId}`);
    return {
      running,
      waiting,
      delivering: this.delivery.jobs(),
      totals: { waiting: waiting.length, running: running.length, delivering: this.delivery.size, members: members.size },
      msPerStep: this.runner.msPerStep,
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
    const requeued = await this.runner.stop();
    await this.delivery.drain(options.deliveryGraceMs ?? 10_000);
    const waiting = this.jobs.listByState('queued');
    this.events.emit('shutdown', { waiting });
    return { waiting, requeued };
  }

  // --- bookkeeping ---------------------------------------------------------------------------------------

  /** The runner journaled these jobs as running (the head of the fair order first): they stop waiting. */
  private takeWaiting(jobs: readonly JobRecord[]): void {
    // A run usually starts with the head, which is what `take` returns, and a batch names its companions out of
    // turn; a run started for its loaded model (model-affinity.ts) takes all its jobs out of turn.
    if (jobs[0] !== this.scheduler.peek()) this.scheduler.takeOutOfOrder(jobs);
    else if (jobs.length === 1) this.scheduler.take();
    else this.scheduler.takeBatch((order) => jobs.map((job) => order.indexOf(job)));
    for (const job of jobs) this.lastPlaces.delete(job.id);
  }

  /** Place and ETA of every running and waiting job (see eta.ts `positions`). */
  private positions(): Map<string, JobPosition> {
    return positions({
      runs: this.runner.inProgress(),
      waiting: this.scheduler.order().map((job) => ({ id: job.id, plan: this.runner.planJob(job) })),
      lanes: this.options.concurrency,
      maxBatchImages: this.options.maxBatchImages,
      cost: this.runner.cost,
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
    if (this.scheduler.size > 0 || !this.runner.idle || this.delivery.size > 0) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}
