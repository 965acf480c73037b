/**
 * `npm run worker`: one image worker process (per GPU). It takes tickets from the BullMQ queue of each model it
 * serves; each ticket is a turn to run the next fair run of that model, taken from the shared fair state (the
 * ticket does not name a job: the order is decided as late as possible, as in the embedded queue). It reports
 * `started`, steps with previews and each job's outcome as the ticket's progress (BullMQ's QueueEvents carry them
 * to the bots), stores the pictures in Redis (outcomes.ts), and never holds the Discord token.
 *
 * Crash safety is BullMQ's: a worker that dies stops renewing its ticket's lock, another worker's stalled-job
 * check puts the ticket back, and whoever takes it finds the jobs recorded under it and runs them again (those
 * whose outcome is already stored are not made twice). SIGTERM: take no new ticket, finish the current run, exit.
 *
 * One run at a time (run-gate.ts): a worker serving several models prefers the one its engine holds loaded, within
 * model-affinity.ts's bound, by going on with that model's next run under the ticket it holds.
 */
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { Identifiers, isUserError } from '../errors.js';
import type { Logger } from '../log.js';
import type { EngineModelListing, GenerateParams, GenerateResult, ImageEngine, ModelInfo, StepProgress } from '../diffusion/types.js';
import { planBatch } from '../queue/batch-plan.js';
import { settleGeneration, startGeneration } from '../queue/engine-run.js';
import { lostRunMessage, timeoutMessage } from '../queue/job-runner.js';
import { costModel, loadStepCosts, measureRun, planJob, saveStepCosts, type StepCosts } from '../queue/eta.js';
import { RedisFairState, type RemoteJob, type TakenRecord } from './fair-state.js';
import { OutcomeStore, type JobOutcome } from './outcomes.js';
import { bullConnection, Keys, type RedisTarget } from './redis.js';
import { HEARTBEAT_MS, Registry, type WorkerRecord } from './registry.js';
import { RunGate } from './run-gate.js';
import { encodeProgress, type TicketEvent } from './ticket-events.js';

/** A reference image for step costs: 512 × 512, as in the embedded queue's default. */
const REFERENCE_PIXELS = 512 * 512;

export interface ImageWorkerOptions {
  redis: RedisTarget;
  engine: ImageEngine;
  /** The models this worker serves, by name; undefined: every model the engine lists. */
  models?: readonly string[];
  /** Images one run may make for several jobs together (the queue's BATCH_IMAGES). Default 1. */
  maxBatchImages?: number;
  jobTimeoutMs?: number;
  /** How long a job may go on after its abort before the run is given up. Default 5000. */
  abortGraceMs?: number;
  /** BullMQ's ticket lock: a dead worker's ticket is taken over after about this long. Default 30 000. */
  lockDurationMs?: number;
  /** How often this worker looks for stalled tickets. Default the lock duration. */
  stalledIntervalMs?: number;
  /** Runs of one ticket before its jobs fail (a job that kills its worker must not kill them all). Default 2. */
  maxRuns?: number;
  /** Minimum milliseconds between progress events of one job (the last step always goes). Default 250. */
  progressEveryMs?: number;
  logger: Logger;
  /** Default `${hostname}-${pid}-${random}`. */
  id?: string;
  now?: () => number;
}

export class ImageWorker {
  readonly id: string;
  private readonly keys: Keys;
  private readonly connection: Redis;
  private readonly fair: RedisFairState;
  private readonly outcomes: OutcomeStore;
  private readonly registry: Registry;
  private readonly workers: Worker[] = [];
  /** One run at a time in this process (one GPU), whichever model's ticket it came from; prefers loaded models. */
  private readonly gate: RunGate;
  private readonly now: () => number;
  private readonly current = new Set<string>();
  private readonly startedAt: number;
  private costs: StepCosts = loadStepCosts({}, 1000);
  private measured = false;
  private served: string[] = [];
  private published: EngineModelListing[] = [];
  private info = new Map<string, ModelInfo | undefined>();
  private heartbeat?: NodeJS.Timeout;
  private closing?: Promise<void>;

  private constructor(private readonly options: ImageWorkerOptions) {
    this.now = options.now ?? Date.now;
    this.id = options.id ?? `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
    this.keys = new Keys(options.redis.prefix);
    this.connection = bullConnection(options.redis, `imagine-worker-${this.id}`);
    this.fair = new RedisFairState(bullConnection(options.redis, `imagine-worker-${this.id}-fair`), this.keys);
    this.outcomes = new OutcomeStore(this.connection, this.keys);
    this.registry = new Registry(this.connection, this.keys);
    const { engine } = options;
    this.gate = new RunGate(engine.modelLoaded === undefined ? undefined : (model) => engine.modelLoaded!(model));
    this.startedAt = this.now();
  }

  /** Publish the models, start heartbeats, and start taking tickets. */
  static async start(options: ImageWorkerOptions): Promise<ImageWorker> {
    const worker = new ImageWorker(options);
    await worker.open();
    return worker;
  }

  private async open(): Promise<void> {
    const { engine, logger } = this.options;
    const listing = engine.models ? await engine.models() : [];
    const defaultInfo = await engine.info();
    const all = listing.length > 0 ? listing : [{ name: defaultInfo.name, dir: '', bytes: 0, isDefault: true, estimatedBytes: 0, info: defaultInfo }];
    const wanted = this.options.models;
    const served = wanted === undefined ? all : all.filter((model) => wanted.includes(model.name));
    const missing = (wanted ?? []).filter((name) => !all.some((model) => model.name === name));
    if (missing.length > 0) throw new Error(`This worker has no model named ${missing.join(', ')} (it has: ${all.map((m) => m.name).join(', ')})`);
    this.served = served.map((model) => model.name);
    for (const model of served) this.info.set(model.name, model.isDefault ? defaultInfo : model.info);
    this.published = served.map((model) => (model.isDefault ? { ...model, info: defaultInfo, dir: '' } : { ...model, dir: '' }));
    await this.beat();
    this.heartbeat = setInterval(() => void this.beat().catch((error: unknown) => logger.warn('heartbeat failed', { error })), HEARTBEAT_MS);
    this.heartbeat.unref();
    const lockDuration = this.options.lockDurationMs ?? 30_000;
    for (const model of this.served) {
      const worker = new Worker(this.keys.ticketQueue(model), (ticket, token) => this.gate.run(model, () => this.process(model, ticket, token)), {
        connection: bullConnection(this.options.redis, `imagine-worker-${this.id}-${model}`),
        prefix: this.keys.prefix,
        concurrency: 1,
        lockDuration,
        stalledInterval: this.options.stalledIntervalMs ?? lockDuration,
        // A ticket that stalls more often than this fails; its jobs are failed by the bot's reconcile (not lost).
        maxStalledCount: 2,
        removeOnComplete: { count: 100 },
        removeOnFail: { count: 1000 },
      });
      worker.on('error', (error) => logger.warn('ticket worker error', { model, error }));
      this.workers.push(worker);
    }
    logger.info('image worker ready', { worker: this.id, models: this.served });
  }

  /** Stop taking tickets, finish the run going on, leave the registry. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      clearInterval(this.heartbeat);
      await Promise.all(this.workers.map((worker) => worker.close()));
      await this.registry.leave(this.id).catch(() => undefined);
      this.fair.close();
      this.connection.disconnect();
    })());
  }

  /** With every heartbeat: a Redis that restarted without its data learns again what this worker serves. */
  private async beat(): Promise<void> {
    await this.registry.publishModels(this.published);
    const record: WorkerRecord = {
      id: this.id,
      host: hostname(),
      pid: process.pid,
      models: this.served,
      msPerStep: this.measured ? Math.round(this.costs.msPerStep) : 0,
      runMsPerStep: this.measured ? saveStepCosts(this.costs).runMsPerStep : {},
      maxBatchImages: this.options.maxBatchImages ?? 1,
      current: [...this.current],
      startedAt: this.startedAt,
      beatAt: this.now(),
    };
    await this.registry.beat(record);
  }

  /** One ticket: take the fairest run of `model` (or the one a dead worker left under this ticket), make it. */
  private async process(model: string, ticket: Job, token: string | undefined): Promise<{ jobs: string[] }> {
    const { logger } = this.options;
    // Ticket ids count per queue: the model makes them unique among all models' runs.
    const runId = `${this.keys.ticketQueue(model)}:${ticket.id!}`;
    let jobs: RemoteJob[];
    const left = await this.connection.hget(this.keys.taken, runId);
    if (left !== null) {
      // A worker died while running this ticket: run its jobs again, those whose outcome is not stored yet.
      const record = JSON.parse(left) as TakenRecord;
      record.runs++;
      record.worker = this.id;
      const pending: RemoteJob[] = [];
      for (const job of record.jobs) if (!(await this.outcomes.has(job.id))) pending.push(job);
      if (record.runs > (this.options.maxRuns ?? 2)) {
        for (const job of pending) {
          await this.finish(ticket, job, {
            state: 'failed',
            error: lostRunMessage(record.runs - 1),
            identifier: Identifiers.Timeout,
          });
        }
        await this.connection.hdel(this.keys.taken, runId);
        return { jobs: [] };
      }
      await this.connection.hset(this.keys.taken, runId, JSON.stringify(record));
      jobs = pending.map((job) => ({ ...job, attempts: job.attempts + 1 }));
      logger.warn('taking over a run from a worker that stopped', { ticket: ticket.id, jobs: jobs.map((job) => job.id) });
    } else jobs = await this.take(model, runId);
    if (jobs.length === 0) {
      await this.connection.hdel(this.keys.taken, runId);
      return { jobs: [] };
    }
    const made = jobs.map((job) => job.id);
    for (;;) {
      await this.run(ticket, jobs);
      await this.connection.hdel(this.keys.taken, runId);
      // Go on with this model (loaded) under the same ticket rather than load another for a waiting ticket, if
      // model-affinity.ts allows (run-gate.ts). The run is recorded under this ticket as any other: a crash in it
      // is taken over like the first; this model's later ticket finds its run made and ends at once.
      const passOver = this.closing === undefined ? this.gate.goOn(model) : undefined;
      if (passOver === undefined) break;
      jobs = await this.take(model, runId);
      if (jobs.length === 0) break;
      passOver();
      made.push(...jobs.map((job) => job.id));
    }
    void token;
    return { jobs: made };
  }

  /** Take the next fair run of `model` (its head and batch companions), recorded under `runId`. */
  private take(model: string, runId: string): Promise<RemoteJob[]> {
    const info = this.info.get(model);
    const max = this.options.maxBatchImages ?? 1;
    return this.fair.take(
      model,
      runId,
      this.id,
      (order) =>
        info === undefined || max <= 1
          ? [0]
          : planBatch(
              order.map((job) => planJob(job.params, info, REFERENCE_PIXELS)),
              max,
              costModel(() => this.costs),
            ),
      this.now(),
    );
  }

  private async run(ticket: Job, jobs: RemoteJob[]): Promise<void> {
    const { engine, logger } = this.options;
    for (const job of jobs) this.current.add(job.id);
    // Not awaited: the engine starts now, and the bots take a first step's progress as a start as well.
    void this.publish(ticket, { type: 'started', jobs: jobs.map((job) => job.id), worker: this.id }).catch(() => undefined);
    const controllers = jobs.map(() => new AbortController());
    const aborts: ({ kind: 'cancel'; by?: string } | { kind: 'timeout' } | undefined)[] = jobs.map(() => undefined);
    const lastSent = jobs.map(() => 0);
    const params: GenerateParams[] = [];
    for (const job of jobs) {
      const initImage = job.hasInitImage ? await this.connection.getBuffer(this.keys.initImage(job.id)) : null;
      params.push(initImage === null ? { ...job.params } : { ...job.params, initImage: new Uint8Array(initImage) });
    }
    const started = this.now();
    const generations = startGeneration(
      engine,
      jobs.map((job, k) => ({
        params: params[k],
        options: {
          signal: controllers[k].signal,
          onProgress: (progress: StepProgress) => {
            void this.checkCancel(job.id).then((by) => {
              if (by !== undefined && aborts[k] === undefined) {
                aborts[k] = { kind: 'cancel', ...(by !== '' ? { by } : {}) };
                controllers[k].abort(new Error('job cancel'));
              }
            });
            const last = progress.step >= progress.totalSteps;
            if (!last && this.now() - lastSent[k] < (this.options.progressEveryMs ?? 250)) return;
            lastSent[k] = this.now();
            void this.publish(ticket, encodeProgress(job.id, progress)).catch(() => undefined);
          },
        },
      })),
    );
    const timeoutMs = this.options.jobTimeoutMs ?? 600_000;
    const results = await Promise.all(
      jobs.map(async (job, k) => {
        const timer = setTimeout(() => {
          aborts[k] ??= { kind: 'timeout' };
          controllers[k].abort(new Error('job timeout'));
        }, timeoutMs);
        const outcome = await settleGeneration(generations[k], controllers[k].signal, this.options.abortGraceMs ?? 5000);
        clearTimeout(timer);
        let stored: JobOutcome;
        const abort = aborts[k];
        if (abort?.kind === 'cancel') stored = { state: 'cancelled', ...(abort.by !== undefined ? { by: abort.by } : {}) };
        else if (abort?.kind === 'timeout') {
          stored = { state: 'failed', error: timeoutMessage(timeoutMs), identifier: Identifiers.Timeout };
        } else if ('result' in outcome) stored = { state: 'made', result: outcome.result };
        else if ('error' in outcome && isUserError(outcome.error)) {
          stored = { state: 'failed', error: outcome.error.message, identifier: outcome.error.identifier };
        } else {
          logger.error('Generation failed', { jobId: job.id, error: 'error' in outcome ? outcome.error : 'abandoned' });
          stored = { state: 'failed', error: 'Sorry, something went wrong while making this image.' };
        }
        await this.finish(ticket, job, stored);
        return stored.state === 'made' ? stored.result : undefined;
      }),
    );
    const made = results.filter((result): result is GenerateResult => result !== undefined);
    if (made.length > 0) {
      const plan = jobs.map((job) => planJob(job.params, this.info.get(job.model), REFERENCE_PIXELS));
      this.costs = measureRun(this.costs, plan, this.now() - started);
      this.measured = true;
    }
  }

  /** Store a job's outcome, tell the bots, forget its picture and cancel marker. */
  private async finish(ticket: Job, job: RemoteJob, outcome: JobOutcome): Promise<void> {
    await this.outcomes.write(job.id, outcome);
    this.current.delete(job.id);
    await this.connection.del(this.keys.initImage(job.id), this.keys.cancel(job.id));
    await this.publish(ticket, { type: 'outcome', job: job.id, state: outcome.state }).catch(() => undefined);
  }

  /** The cancel marker of a job: who asked ('' when nobody is named), undefined when not cancelled. */
  private async checkCancel(jobId: string): Promise<string | undefined> {
    try {
      return (await this.connection.get(this.keys.cancel(jobId))) ?? undefined;
    } catch {
      return undefined;
    }
  }

  private async publish(ticket: Job, event: TicketEvent): Promise<void> {
    await ticket.updateProgress(event as unknown as object);
  }
}
