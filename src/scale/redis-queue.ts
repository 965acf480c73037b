/**
 * The scaled JobQueue (REDIS_URL set): the bot side. Jobs are journaled in this machine's SQLite as in the
 * embedded mode (messages, rerolls and delivery read them there), queued in Redis in the fair order (fair-state.ts),
 * and made by `npm run worker` processes (image-worker.ts). Their progress comes back as BullMQ progress events,
 * their pictures as outcomes in Redis (both taken in by outcome-intake.ts), and this process posts them with the
 * same delivery code as the embedded queue (delivery-runner.ts), claiming each job in its own journal so it is
 * posted once.
 *
 * Nothing is lost when a message goes missing: a reconcile pass (reconcile.ts, at start and every `reconcileMs`)
 * compares this process's unfinished jobs with Redis. A job whose outcome is stored is finished from it; one that is
 * neither waiting, nor taken by a worker, nor finished (Redis lost it, or its ticket failed for good) is queued again.
 */
import path from 'node:path';
import type { Redis } from 'ioredis';
import { createLogger, type Logger } from '../log.js';
import { Identifiers, isUserError, UserError, type Identifier } from '../errors.js';
import type { EngineModelListing } from '../diffusion/types.js';
import type { Db } from '../store/database.js';
import { JobStore } from '../store/jobs.js';
import { ResultFiles } from '../store/results.js';
import { DeliveryRunner } from '../queue/delivery-runner.js';
import { JobIdFactory } from '../queue/ids.js';
import { newJobRecord } from '../queue/new-job.js';
import { cancelledMessage, failJob } from '../queue/job-runner.js';
import { checkParams } from '../queue/options.js';
import { TypedEmitter } from '../queue/typed-emitter.js';
import type {
  CancelOutcome,
  DeliverFn,
  JobPosition,
  JobQueue,
  JobRecord,
  QueueEventMap,
  QueueSnapshot,
  ResumeReport,
  ShutdownOptions,
  ShutdownReport,
  SubmitInput,
  Submitted,
} from '../queue/types.js';
import { fairView, FairView, RedisFairState, remoteJob, withPicture, type TakenRecord } from './fair-state.js';
import { OutcomeStore } from './outcomes.js';
import { fleetMsPerStep, fleetPositions, fleetViews, servedModel, type Seen } from './fleet-view.js';
import { OutcomeIntake } from './outcome-intake.js';
import { Reconciler } from './reconcile.js';
import { bullConnection, commandConnection, Keys, ready, withinMs, type RedisTarget } from './redis.js';
import { Registry, type WorkerRecord } from './registry.js';
import { TicketQueues } from './ticket-queues.js';

const UNAVAILABLE = 'The image service is unavailable, try again in a minute.';

export interface RedisJobQueueOptions {
  redis: RedisTarget;
  db: Db;
  deliver: DeliverFn;
  /** Where finished PNGs wait for delivery; this process uses its own folder under it. */
  resultsDir: string;
  /** This bot process's name, stable across its restarts (a shard: `shard-<id>`). It delivers the jobs it submitted. */
  instance: string;
  memberCap?: number | ((guildId: string) => number);
  globalCap?: number;
  /** Runs a job may start (a worker dying mid-run counts one) before it fails. Default 2. */
  maxAttempts?: number;
  deliveryTries?: number;
  deliveryRetryDelayMs?: number;
  /** How often this process compares its unfinished jobs with Redis. Default 2000. */
  reconcileMs?: number;
  /**
   * A run taken by a worker that has stopped beating for this long, whose ticket BullMQ has given up on (failed
   * after too many stalls, or gone), is taken back and its jobs queued again. Default 60 000.
   */
  orphanAfterMs?: number;
  /** How often places and ETAs are read again when nothing announces a change. Default 1000. */
  refreshMs?: number;
  logger?: Logger;
  now?: () => number;
}

export class RedisJobQueue implements JobQueue {
  readonly events: TypedEmitter<QueueEventMap>;
  readonly instance: string;

  private readonly keys: Keys;
  private readonly redis: Redis;
  private readonly subscriber: Redis;
  private readonly fair: RedisFairState;
  private readonly outcomes: OutcomeStore;
  private readonly registry: Registry;
  private readonly jobs: JobStore;
  private readonly delivery: DeliveryRunner;
  private readonly ids: JobIdFactory;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly memberCap: (guildId: string) => number;
  private readonly globalCap: number;
  private readonly tickets: TicketQueues;
  private readonly reconciler: Reconciler;
  private readonly intake: OutcomeIntake;
  private readonly lastPlaces = new Map<string, number>();
  /** Jobs journaled here whose Redis write has not answered yet (the reconcile must not queue them twice). */
  private readonly submitting = new Set<string>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly idleWaiters: (() => void)[] = [];
  private seen: Seen = { fair: new FairView(new Map()), taken: new Map(), workers: [], models: [] };
  /** Places and ETAs from the last read. */
  private places = new Map<string, JobPosition>();
  private resumed = false;
  private closing = false;

  constructor(private readonly options: RedisJobQueueOptions) {
    this.instance = options.instance;
    this.logger = options.logger ?? createLogger();
    this.now = options.now ?? Date.now;
    this.ids = new JobIdFactory(this.now);
    const cap = options.memberCap ?? 2;
    this.memberCap = typeof cap === 'number' ? () => cap : cap;
    this.globalCap = options.globalCap ?? 100;
    this.keys = new Keys(options.redis.prefix);
    this.redis = commandConnection(options.redis, `imagine-bot-${this.instance}`);
    this.subscriber = bullConnection(options.redis, `imagine-bot-${this.instance}-sub`);
    this.tickets = new TicketQueues(options.redis, this.keys, this.instance, (event) => this.intake.onTicketEvent(event), this.logger);
    this.fair = new RedisFairState(commandConnection(options.redis, `imagine-bot-${this.instance}-fair`), this.keys);
    this.outcomes = new OutcomeStore(this.redis, this.keys);
    this.registry = new Registry(this.redis, this.keys);
    this.jobs = new JobStore(options.db);
    this.events = new TypedEmitter<QueueEventMap>((error, event) => this.logger.error(`A queue "${String(event)}" listener threw`, { error }));
    this.delivery = new DeliveryRunner({
      jobs: this.jobs,
      results: new ResultFiles(path.join(options.resultsDir, this.instance)),
      deliver: options.deliver,
      tries: options.deliveryTries ?? 4,
      retryDelayMs: options.deliveryRetryDelayMs ?? 2000,
      keepResults: false,
      events: this.events,
      fail: (job, message, identifier) => this.fail(job, message, identifier),
      onSettled: () => this.checkIdle(),
      logger: this.logger,
      now: this.now,
    });
    const { redis, keys, jobs, outcomes, tickets, fair, events, delivery, logger, now } = this;
    const parts = { instance: this.instance, redis, keys, jobs, outcomes, tickets, fair, events, delivery, logger, now };
    const fail = (job: JobRecord, message: string, identifier: Identifier | undefined) => this.fail(job, message, identifier);
    this.intake = new OutcomeIntake(parts, {
      closing: () => this.closing,
      fail,
      leftLine: (jobId) => this.lastPlaces.delete(jobId),
      settled: () => this.checkIdle(),
    });
    this.reconciler = new Reconciler(
      { ...parts, maxAttempts: options.maxAttempts ?? 2, orphanAfterMs: options.orphanAfterMs ?? 60_000 },
      {
        closing: () => this.closing,
        workers: () => this.seen.workers,
        defaultModel: () => this.seen.models.find((listing) => listing.isDefault)?.name,
        submitting: this.submitting,
        finishing: this.intake.finishing,
        started: (jobId) => this.intake.started(jobId),
        finishFromOutcome: (jobId) => this.intake.finishFromOutcome(jobId),
        fail,
        settled: () => this.checkIdle(),
      },
    );
  }

  /** The models the workers serve (published by them), the default first. */
  models(): EngineModelListing[] {
    return this.seen.models;
  }

  /** Workers heard from lately. */
  workers(): WorkerRecord[] {
    return this.seen.workers;
  }

  async resume(): Promise<ResumeReport> {
    if (this.resumed) throw new Error('resume() was already called');
    this.resumed = true;
    if (!(await ready(this.redis, 10_000)) || !(await this.fair.ready(10_000))) {
      this.logger.warn('Redis is not reachable yet; /imagine refuses until it is (the bot keeps trying)', { url: redacted(this.options.redis.url) });
    }
    await this.refresh().catch((error: unknown) => this.logger.debug('first read of Redis failed', { error }));
    await this.subscriber.subscribe(this.keys.changed);
    this.subscriber.on('message', () => void this.refresh().catch(() => undefined));
    const mine = this.jobs.listByOwner(this.instance, 'queued', 'running', 'delivering');
    const recovered = await this.delivery.recover(mine.filter((job) => job.state === 'delivering'));
    const report: ResumeReport = {
      queued: mine.filter((job) => job.state === 'queued').length,
      rerun: 0,
      failed: recovered.failed,
      redelivering: recovered.redelivering,
    };
    await this.reconciler.run();
    this.timers.push(
      setInterval(() => void this.reconciler.run(), this.options.reconcileMs ?? 2000),
      setInterval(() => void this.refresh().catch(() => undefined), this.options.refreshMs ?? 1000),
    );
    for (const timer of this.timers) timer.unref();
    return report;
  }

  async submit(input: SubmitInput): Promise<Submitted> {
    if (!this.resumed || this.closing) {
      throw new UserError(Identifiers.ShuttingDown, 'The bot is restarting and is not taking new images right now. Try again in a minute.');
    }
    checkParams(input.params);
    if (input.params.initImage !== undefined) {
      throw new TypeError('Expected the img2img picture as `SubmitInput.initImage`, got it inside `params`');
    }
    // What the workers published may be newer than the last read (a worker just started, Redis just came back).
    if (typeof servedModel(this.seen, input.params.model) !== 'string') await this.refresh().catch(() => undefined);
    const model = servedModel(this.seen, input.params.model);
    if (typeof model !== 'string') throw model;
    const id = this.ids.next();
    const initImage = input.initImage;
    const fresh = newJobRecord(id, input, this.now(), this.instance);
    const remote = remoteJob(fresh, this.instance, model, initImage !== undefined);

    let job: JobRecord;
    try {
      // The picture an img2img job starts from is kept beside it here too (a 🔁 and a requeue need it).
      job = this.jobs.insert(fresh, initImage);
    } catch (error) {
      this.logger.error('Could not journal a job', { error });
      throw new UserError(Identifiers.JournalUnwritable, 'The bot cannot save new jobs right now (its disk is full or read-only). Try again later.');
    }
    this.submitting.add(id);
    try {
      if (this.redis.status !== 'ready') throw new Error(`Redis connection is ${this.redis.status}`);
      // The job first, then its ticket: a worker that takes a ticket must find a job waiting. (The other order
      // lets a quick worker spend the ticket on an empty queue, and the job would wait for the next one.)
      const caps = { memberCap: this.memberCap(input.guildId), globalCap: this.globalCap };
      await this.fair.submit(remote, caps, withPicture(this.keys, id, initImage));
      try {
        await this.tickets.add(model);
      } catch (error) {
        // Not half-queued: take the job back out (if Redis is gone entirely, no ticket means no worker runs it).
        await this.fair.remove(id, (multi) => multi.del(this.keys.initImage(id))).catch(() => undefined);
        throw error;
      }
    } catch (error) {
      this.jobs.deleteQueued(id);
      if (isUserError(error)) throw error;
      this.logger.warn('Redis refused a submit; nothing was queued', { error });
      throw new UserError(Identifiers.ServiceUnavailable, UNAVAILABLE);
    } finally {
      this.submitting.delete(id);
    }
    await this.refresh().catch(() => undefined);
    const position = this.places.get(id) ?? { place: 1, waiting: 1, startsInMs: 0, doneInMs: 0 };
    this.lastPlaces.set(id, position.place);
    this.events.emit('queued', { job, position });
    return { job, position };
  }

  async cancel(jobId: string, by?: string): Promise<CancelOutcome> {
    const job = this.jobs.get(jobId);
    if (job === undefined) return 'not-found';
    if (job.state !== 'queued' && job.state !== 'running') return 'finished';
    try {
      const removed = await this.fair.remove(jobId, (multi) => multi.del(this.keys.initImage(jobId)));
      if (removed !== undefined) {
        this.jobs.markCancelled(jobId, cancelledMessage(job, by), by, this.now());
        this.events.emit('cancelled', { job: this.jobs.get(jobId)!, by });
        this.lastPlaces.delete(jobId);
        this.checkIdle();
        return 'cancelled';
      }
      // Taken by a worker (or about to be): it reads this marker at its next step and stops.
      await this.redis.set(this.keys.cancel(jobId), by ?? '', 'EX', 3600);
      return 'stopping';
    } catch (error) {
      if (isUserError(error)) throw error;
      throw new UserError(Identifiers.ServiceUnavailable, UNAVAILABLE);
    }
  }

  setMessageId(jobId: string, messageId: string): void {
    if (!this.jobs.setMessageId(jobId, messageId)) throw new Error(`No job ${jobId} in the journal`);
    const delivering = this.delivery.get(jobId);
    if (delivering !== undefined) delivering.messageId = messageId;
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
    return this.places.get(jobId);
  }

  snapshot(): QueueSnapshot {
    const { running, waiting } = fleetViews(this.seen, this.places, this.intake.progress, (jobId) => this.jobs.get(jobId));
    const members = new Set([...running, ...waiting].map((view) => `${view.job.guildId}:${view.job.userId}`));
    return {
      running,
      waiting,
      delivering: this.delivery.jobs(),
      totals: { waiting: waiting.length, running: running.length, delivering: this.delivery.size, members: members.size },
      msPerStep: fleetMsPerStep(this.seen.workers),
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
    for (const timer of this.timers) clearInterval(timer);
    await this.reconciler.current;
    await this.delivery.drain(options.deliveryGraceMs ?? 10_000);
    await this.tickets.close();
    this.subscriber.disconnect();
    this.fair.close();
    this.redis.disconnect();
    // Waiting and running jobs stay in Redis, in their places: the workers go on, and the next start delivers them.
    const waiting = this.jobs.listByOwner(this.instance, 'queued');
    this.events.emit('shutdown', { waiting });
    return { waiting, requeued: 0 };
  }

  // --- Redis → this process -------------------------------------------------------------------------------

  /** Read the fair state, the taken runs, the workers and the models at one moment; recompute places. */
  private async refresh(): Promise<void> {
    const [fair, takenRaw, workers, models] = await withinMs(
      Promise.all([
        this.redis.get(this.keys.fair).then(fairView),
        this.redis.hgetall(this.keys.taken),
        this.registry.alive(this.now()),
        this.registry.models(),
      ]),
      5000,
      'a refresh',
    );
    const taken = new Map<string, TakenRecord>();
    for (const [ticket, raw] of Object.entries(takenRaw)) taken.set(ticket, JSON.parse(raw) as TakenRecord);
    this.seen = { fair, taken, workers, models };
    for (const listing of models) this.tickets.listen(listing.name);
    this.places = fleetPositions(this.seen, this.intake.progress);
    this.publishPositions();
  }

  private publishPositions(): void {
    for (const [jobId, position] of this.places) {
      if (position.place === 0 || this.lastPlaces.get(jobId) === position.place) continue;
      const job = this.jobs.get(jobId);
      if (job?.owner !== this.instance || job.state !== 'queued') continue;
      this.lastPlaces.set(jobId, position.place);
      this.events.emit('position', { job, position });
    }
  }

  private fail(job: JobRecord, message: string, identifier: Identifier | undefined): void {
    failJob({ jobs: this.jobs, events: this.events, now: this.now }, job, message, identifier);
  }

  private checkIdle(): void {
    if (this.idleWaiters.length === 0) return;
    if (this.delivery.size > 0 || this.intake.finishing.size > 0) return;
    if (this.jobs.listByOwner(this.instance, 'queued', 'running').length > 0) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}

/** A Redis URL as it may be logged: no password. */
function redacted(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}


