import PQueue from 'p-queue';
import type { Logger } from '../log.js';
import { Identifiers, isUserError, type Identifier } from '../errors.js';
import type { GenerateParams, GenerateResult, ImageEngine, ModelInfo, StepProgress } from '../diffusion/types.js';
import { readMeta, writeMeta, type Db } from '../store/database.js';
import type { JobStore } from '../store/jobs.js';
import { planBatch, type CostModel, type PlanJob } from './batch-plan.js';
import { preferredStart } from './model-affinity.js';
import type { DeliveryRunner } from './delivery-runner.js';
import { settleGeneration, startGeneration, type GenerationOutcome } from './engine-run.js';
import { costModel, loadStepCosts, measureRun, planJob, saveStepCosts, type RunInProgress, type StepCosts } from './eta.js';
import type { JournalOutage } from './journal-outage.js';
import type { QueueSettings } from './options.js';
import type { TypedEmitter } from './typed-emitter.js';
import type { JobRecord, QueueEventMap } from './types.js';

/** The queue's waiting jobs, as far as starting them goes (the queue keeps them in its `FairScheduler`). */
export interface WaitingJobs {
  /** The job whose turn it is, left waiting. */
  peek(): JobRecord | undefined;
  /** Every waiting job, in the order they would start. */
  order(): JobRecord[];
  /** These jobs (the head of the fair order first) are journaled as running: they stop waiting. */
  take(jobs: readonly JobRecord[]): void;
}

export interface JobRunnerOptions {
  /** The journal: a run's jobs are marked running in one transaction. */
  db: Db;
  jobs: JobStore;
  engine: ImageEngine;
  settings: Pick<
    QueueSettings,
    'concurrency' | 'maxBatchImages' | 'jobTimeoutMs' | 'abortGraceMs' | 'referencePixels' | 'initialMsPerStep'
  >;
  waiting: WaitingJobs;
  /** Saves a made image and starts its delivery. */
  delivery: Pick<DeliveryRunner, 'handOff'>;
  /** Decides whether a slot may try the journal, and retries a start it could not write. */
  outage: JournalOutage;
  events: TypedEmitter<QueueEventMap>;
  /** A run started or ended: places, ETAs and whether the queue is idle may have changed. */
  onRunsChanged: () => void;
  logger: Logger;
  now: () => number;
}

/** A running job as the queue's snapshot shows it. */
export interface RunningJob {
  job: JobRecord;
  /** The last step reported. */
  progress?: StepProgress;
}

type AbortKind = 'cancel' | 'timeout' | 'shutdown';

interface RunningEntry extends RunningJob {
  /** The engine run it shares with the other jobs of its batch. */
  run: Run;
  controller: AbortController;
  abort?: { kind: AbortKind; by?: string };
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
 * A job's life from waiting to made: the lanes (p-queue slots), which waiting jobs a run takes, the journal's
 * `running` mark, the engine call, the job timeout, and what the outcome is recorded as (delivery, failed,
 * cancelled, or back to waiting at shutdown). It also learns the cost of a step from finished runs.
 *
 * p-queue holds one "slot" task per submitted job; a slot that starts asks for the fairest job at that moment
 * (not the one it was added for), so fairness is decided as late as possible. A cancelled job leaves its slot
 * behind; that slot finds nothing or runs another job whose own slot later finds nothing.
 *
 * With `maxBatchImages` > 1 a slot takes a run: the fairest job and the waiting jobs that can share its UNet
 * calls, chosen by batch-plan.ts in fair order, all marked running in one transaction and handed to the
 * engine's `generateBatch`. Each job keeps its own timer, cancel, outcome and journal row; the slot (a lane)
 * is held until every job of the run is done. Riders' own slots later find nothing, as after a cancel.
 *
 * A job stops waiting only once the journal says it runs: if that write fails (disk full), the job keeps its
 * place and journal-outage.ts decides what happens meanwhile.
 */
export class JobRunner {
  /** The learned cost of a run, for the ETAs. */
  readonly cost: CostModel = costModel(() => this.costs);

  private readonly slots: PQueue;
  private readonly running = new Map<string, RunningEntry>();
  private readonly runs = new Set<Run>();
  /** The learned step costs (kept in the journal's meta table). */
  private costs: StepCosts;
  /** The model's facts, once known, when batching is on (batch keys fill in its default size and scheduler). */
  private batchInfo?: ModelInfo;
  /** How often each waiting job has been passed over for a job whose model was loaded (model-affinity.ts). */
  private readonly passes = new Map<string, number>();
  private stopped = false;

  constructor(private readonly options: JobRunnerOptions) {
    const { db, settings } = options;
    this.costs = loadStepCosts(
      { msPerStep: readMeta(db, META_MS_PER_STEP), runMsPerStep: readMeta(db, META_RUN_MS_PER_STEP) },
      settings.initialMsPerStep,
    );
    this.slots = new PQueue({ concurrency: settings.concurrency });
  }

  /** Milliseconds per step of one reference-size image, as learned so far. */
  get msPerStep(): number {
    return this.costs.msPerStep;
  }

  /** Nothing runs (a job of a batch may be past running, saving its PNGs, while the rest of its run is not done). */
  get idle(): boolean {
    return this.running.size === 0 && this.runs.size === 0;
  }

  /** With `maxBatchImages` > 1: read the model facts that batch keys need; without them jobs run one at a time. */
  async prepareBatching(): Promise<void> {
    if (this.options.settings.maxBatchImages <= 1) return;
    const { engine, logger } = this.options;
    if (engine.generateBatch === undefined) {
      logger.warn('maxBatchImages is set but the engine cannot run batches; jobs run one at a time');
      return;
    }
    try {
      this.batchInfo = await engine.info();
    } catch (error) {
      logger.warn('Could not read the model facts that batching needs; jobs run one at a time', { error });
    }
  }

  /** One more slot: it takes the fairest waiting run when a lane is free. */
  addSlot(): void {
    this.slots.add(() => this.runNext()).catch((error: unknown) => this.options.logger.error('A queue slot failed', { error }));
  }

  /** A job's share of a run, for batch planning and ETAs. */
  planJob(job: JobRecord): PlanJob {
    return planJob(job.params, this.batchInfo, this.options.settings.referencePixels);
  }

  /** The runs going on, as the ETAs see them. */
  inProgress(): RunInProgress[] {
    return [...this.runs].map((run) => ({
      plan: run.plan,
      progress: run.entries.map((entry) => entry.progress),
      running: run.entries.filter((entry) => this.running.get(entry.job.id) === entry).map((entry) => entry.job.id),
    }));
  }

  /** The running jobs. */
  jobs(): RunningJob[] {
    return [...this.running.values()];
  }

  get(jobId: string): JobRecord | undefined {
    return this.running.get(jobId)?.job;
  }

  /** Stop a running job; its `cancelled` event fires once the engine stops. False when it is not running. */
  cancel(jobId: string, by?: string): boolean {
    const entry = this.running.get(jobId);
    if (entry === undefined) return false;
    this.abortRunning(entry, { kind: 'cancel', by });
    return true;
  }

  /** Shutdown: start no more runs, stop the running jobs and put them back to waiting. Resolves with how many. */
  async stop(): Promise<number> {
    this.stopped = true;
    this.slots.pause();
    const stopping = [...this.running.values()];
    for (const entry of stopping) this.abortRunning(entry, { kind: 'shutdown' });
    await Promise.all(stopping.map((entry) => entry.done));
    return stopping.filter((entry) => entry.abort?.kind === 'shutdown').length;
  }

  /** The queue's one way to fail a job: the journal, then the `failed` event. */
  fail(job: JobRecord, message: string, identifier: Identifier | undefined): void {
    failJob(this.options, job, message, identifier);
  }

  private async runNext(): Promise<void> {
    // p-queue calls this synchronously inside add(): yield once so submit() returns, and `queued` is seen,
    // before the job can start.
    await Promise.resolve();
    const { db, jobs, outage, events, logger } = this.options;
    if (this.stopped || !outage.mayStart()) return;
    const { jobs: next, passedOver } = this.nextRun();
    if (next.length === 0) {
      outage.nothingToStart();
      return;
    }
    const startedAt = this.options.now();
    let started: JobRecord[];
    try {
      // One transaction: after a crash, the journal shows the whole batch running, or none of it.
      started = db.transaction(() =>
        next.filter((job) => {
          if (jobs.markRunning(job.id, startedAt)) return true;
          logger.warn('A waiting job was no longer queued in the journal; skipped', { jobId: job.id });
          return false;
        }),
      )();
    } catch (error) {
      // Nothing was taken from the waiting jobs: they keep their places until a retry can journal the start.
      outage.startFailed(error);
      return;
    }
    outage.wrote();
    this.options.waiting.take(next);
    for (const job of next) this.passes.delete(job.id);
    for (const job of passedOver) if (!next.includes(job)) this.passes.set(job.id, (this.passes.get(job.id) ?? 0) + 1);
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
      events.emit('started', { job: entry.job });
    }
    this.options.onRunsChanged();
    const generations = startGeneration(
      this.options.engine,
      run.entries.map((entry) => ({
        params: this.engineParams(entry.job),
        options: {
          signal: entry.controller.signal,
          onProgress: (progress) => {
            entry.progress = progress;
            events.emit('progress', { job: entry.job, progress });
          },
        },
      })),
    );
    const outcomes = await Promise.all(
      run.entries.map(async (entry, k) => {
        try {
          return await this.run(entry, generations[k]);
        } catch (error) {
          logger.error('The queue failed to record a job outcome', { jobId: entry.job.id, error });
          return undefined;
        } finally {
          this.running.delete(entry.job.id);
          entry.finish();
        }
      }),
    );
    this.runs.delete(run);
    this.measure(run, outcomes);
    this.options.onRunsChanged();
  }

  /** What the engine gets: the journaled params, and the picture an img2img job starts from (kept beside them). */
  private engineParams(job: JobRecord): GenerateParams {
    const initImage = this.options.jobs.initImage(job.id);
    return initImage === undefined ? job.params : { ...job.params, initImage };
  }

  /**
   * The jobs the next run takes, still waiting: the head of the fair order, or the job model-affinity.ts prefers
   * for its loaded model, and its companions; and the jobs that run passes over (those before it in fair order).
   */
  private nextRun(): { jobs: JobRecord[]; passedOver: JobRecord[] } {
    const { waiting, settings, engine } = this.options;
    const head = waiting.peek();
    if (head === undefined) return { jobs: [], passedOver: [] };
    // Only a head whose model would have to be loaded lets another job start first.
    const preferring = engine.modelLoaded !== undefined && !engine.modelLoaded(head.params.model);
    if (this.batchInfo === undefined && !preferring) return { jobs: [head], passedOver: [] };
    const order = waiting.order();
    const start = preferring ? this.preferredStart(order, (model) => engine.modelLoaded!(model)) : 0;
    // The starting job first, then the rest in fair order: batch companions are still chosen fairly.
    const runOrder = start === 0 ? order : [order[start], ...order.slice(0, start), ...order.slice(start + 1)];
    const passedOver = order.slice(0, start);
    if (this.batchInfo === undefined) return { jobs: runOrder.slice(0, 1), passedOver };
    const picked = planBatch(
      runOrder.map((job) => this.planJob(job)),
      settings.maxBatchImages,
      this.cost,
    );
    return { jobs: picked.map((index) => runOrder[index]), passedOver };
  }

  /** model-affinity.ts's choice over the fair order; forgets the passes of jobs no longer waiting. */
  private preferredStart(order: readonly JobRecord[], modelLoaded: (model: string | undefined) => boolean): number {
    if (this.passes.size > order.length) {
      const waiting = new Set(order.map((job) => job.id));
      for (const id of this.passes.keys()) if (!waiting.has(id)) this.passes.delete(id);
    }
    return preferredStart(order.map((job) => ({ loaded: modelLoaded(job.params.model), passes: this.passes.get(job.id) ?? 0 })));
  }

  /** Wait for one job's generation and record what came of it; returns the result when it was made. */
  private async run(entry: RunningEntry, generation: Promise<GenerateResult>): Promise<GenerateResult | undefined> {
    const { job } = entry;
    const { jobs, events, logger, settings } = this.options;
    // The job timeout: the queue is its one owner (the engine enforces none), here; its message is `timeoutMessage`.
    const timer = setTimeout(() => this.abortRunning(entry, { kind: 'timeout' }), settings.jobTimeoutMs);
    let outcome: GenerationOutcome;
    try {
      outcome = await settleGeneration(generation, entry.controller.signal, settings.abortGraceMs);
    } finally {
      clearTimeout(timer);
    }

    // No longer running: a cancel from here on answers 'finished', and the outcome events below see that.
    this.running.delete(job.id);
    if ('abandoned' in outcome) {
      logger.error(`The engine did not stop within ${settings.abortGraceMs} ms of an abort; slot released`, {
        jobId: job.id,
      });
    }
    if (entry.abort !== undefined) {
      const { kind, by } = entry.abort;
      if (kind === 'shutdown') {
        // Not the job's fault: its attempt does not count, and it keeps its place for the next start.
        jobs.markQueued(job.id, job.attempts - 1);
        events.emit('requeued', { job: { ...job, state: 'queued', attempts: job.attempts - 1 }, reason: 'shutdown' });
      } else if (kind === 'cancel') {
        jobs.markCancelled(job.id, cancelledMessage(job, by), by, this.options.now());
        events.emit('cancelled', { job: jobs.get(job.id)!, by });
      } else {
        this.fail(job, timeoutMessage(settings.jobTimeoutMs), Identifiers.Timeout);
      }
      return undefined;
    }
    if ('error' in outcome) {
      const { error } = outcome;
      if (isUserError(error)) {
        this.fail(job, error.message, error.identifier);
      } else {
        logger.error('Generation failed', { jobId: job.id, error });
        this.fail(job, 'Sorry, something went wrong while making this image.', undefined);
      }
      return undefined;
    }
    if (!('result' in outcome)) return undefined;
    return (await this.options.delivery.handOff(job, outcome.result)) ? outcome.result : undefined;
  }

  private abortRunning(entry: RunningEntry, abort: { kind: AbortKind; by?: string }): void {
    if (entry.abort !== undefined) return;
    entry.abort = abort;
    entry.controller.abort(new Error(`job ${abort.kind}`));
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
      writeMeta(this.options.db, META_MS_PER_STEP, saved.msPerStep);
      writeMeta(this.options.db, META_RUN_MS_PER_STEP, saved.runMsPerStep);
    } catch (error) {
      this.options.logger.warn('Could not store the measured ms per step', { error });
    }
  }
}

/** A queue's one way to fail a job, in either mode: the journal, then the `failed` event. */
export function failJob(
  queue: { jobs: JobStore; events: TypedEmitter<QueueEventMap>; now: () => number },
  job: JobRecord,
  message: string,
  identifier: Identifier | undefined,
): void {
  queue.jobs.markFailed(job.id, message, identifier, queue.now());
  const failed: JobRecord = { ...job, state: 'failed', error: message };
  if (identifier !== undefined) failed.errorCode = identifier;
  queue.events.emit('failed', { job: failed, error: message, identifier });
}

/** What the member is told when a run was lost with its worker (or its process) this many times. */
export function lostRunMessage(times: number): string {
  return `The image worker stopped while making this image ${times} times, so it was stopped to keep the queue moving.`;
}

/** What the member is told when their job is cancelled, waiting or running. */
export function cancelledMessage(job: JobRecord, by: string | undefined): string {
  return by === undefined || by === job.userId ? 'Cancelled.' : `Cancelled by <@${by}>.`;
}

/** What the member is told when their job ran past `jobTimeoutMs`. */
export function timeoutMessage(jobTimeoutMs: number): string {
  const minutes = jobTimeoutMs / 60_000;
  const limit = minutes >= 1 ? `${Number(minutes.toFixed(1))}-minute` : `${jobTimeoutMs} ms`;
  return `This image took longer than the ${limit} limit and was stopped.`;
}
