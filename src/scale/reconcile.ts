/**
 * The scaled queue's reconcile pass: nothing is lost when a message goes missing. At start and every `reconcileMs`
 * the bot compares its unfinished jobs with Redis. A job whose outcome is stored is finished from it; one that is
 * waiting or taken by a worker is left alone; one that is neither (Redis lost it, or its ticket failed for good) is
 * queued again, or failed once it has used its attempts. A run whose worker is gone and whose ticket BullMQ will not
 * hand out again is dropped first, so its jobs count as lost.
 */
import type { Redis } from 'ioredis';
import { Identifiers, type Identifier } from '../errors.js';
import type { Logger } from '../log.js';
import { lostRunMessage } from '../queue/job-runner.js';
import type { JobRecord, QueueEventMap } from '../queue/types.js';
import type { JobStore } from '../store/jobs.js';
import type { TypedEmitter } from '../queue/typed-emitter.js';
import { fairView, remoteJob, withPicture, type RedisFairState, type TakenRecord } from './fair-state.js';
import type { OutcomeStore } from './outcomes.js';
import { withinMs, type Keys } from './redis.js';
import type { WorkerRecord } from './registry.js';
import type { TicketQueues } from './ticket-queues.js';

/** The bot queue's shared parts the pass uses: its journal, events, Redis connection, stores and ticket queues. */
export interface ReconcileParts {
  readonly instance: string;
  readonly redis: Redis;
  readonly keys: Keys;
  readonly jobs: JobStore;
  readonly events: TypedEmitter<QueueEventMap>;
  readonly fair: RedisFairState;
  readonly outcomes: OutcomeStore;
  readonly tickets: TicketQueues;
  readonly logger: Logger;
  readonly now: () => number;
  /** Runs a job may start before a lost run fails it. */
  readonly maxAttempts: number;
  /** See RedisJobQueueOptions.orphanAfterMs. */
  readonly orphanAfterMs: number;
}

/** What the pass asks of the queue it serves: its live state, and the ways it moves a job on. */
export interface ReconcileQueue {
  /** True once the queue is shutting down: no pass starts. */
  closing(): boolean;
  /** The workers heard from at the last read of Redis. */
  workers(): readonly WorkerRecord[];
  /** The default model the workers published, at the last read of Redis. */
  defaultModel(): string | undefined;
  /** Jobs journaled whose Redis write has not answered yet: the pass must not queue them twice. */
  readonly submitting: ReadonlySet<string>;
  /** Jobs whose outcome is being taken in now (the event path runs beside the pass). */
  readonly finishing: ReadonlySet<string>;
  /** A job a worker has taken: journaled as running. */
  started(jobId: string): void;
  /** A job whose outcome is stored: taken into the journal, delivered. */
  finishFromOutcome(jobId: string): Promise<void>;
  fail(job: JobRecord, message: string, identifier: Identifier | undefined): void;
  /** After each pass, done or not (the queue may have become idle). */
  settled(): void;
}

/** Runs the reconcile pass, one at a time. */
export class Reconciler {
  private running?: Promise<void>;

  constructor(
    private readonly parts: ReconcileParts,
    private readonly queue: ReconcileQueue,
  ) {}

  /** Starts a pass, or joins the one under way; never rejects (Redis unreachable: the next pass tries again). */
  run(): Promise<void> {
    return (this.running ??= withinMs(this.once(), 10_000, 'the reconcile')
      .catch((error: unknown) => this.parts.logger.debug('reconcile could not reach Redis', { error }))
      .finally(() => {
        this.running = undefined;
        this.queue.settled();
      }));
  }

  /** The pass under way, if any (shutdown waits for it). */
  get current(): Promise<void> | undefined {
    return this.running;
  }

  private async once(): Promise<void> {
    const { redis, keys, jobs } = this.parts;
    const queue = this.queue;
    if (queue.closing() || redis.status !== 'ready') return;
    const unfinished = jobs.listByOwner(this.parts.instance, 'queued', 'running');
    if (unfinished.length === 0) return;
    // A job journaled but not yet written to Redis is in `submitting` until its write answered: one that is not
    // in it now was written before the read below, so the read shows it.
    const inFlight = new Set(queue.submitting);
    // One consistent read of where every job stands: a worker moves jobs from waiting to taken in one MULTI.
    const read = await redis.multi().get(keys.fair).hgetall(keys.taken).exec();
    if (read === null || read.some(([error]) => error !== null)) return;
    const waitingIds = new Set(fairView(read[0][1] as string | null).all().map((job) => job.id));
    const takenIds = new Set<string>();
    const mine = new Set(unfinished.map((job) => job.id));
    for (const [runId, raw] of Object.entries(read[1][1] as Record<string, string>)) {
      const record = JSON.parse(raw) as TakenRecord;
      if (record.jobs.some((job) => mine.has(job.id)) && (await this.orphaned(runId, record))) continue;
      for (const job of record.jobs) takenIds.add(job.id);
    }
    for (const listed of unfinished) {
      if (inFlight.has(listed.id) || queue.finishing.has(listed.id)) continue;
      // Its outcome may have been taken in since the list was read (the event path runs beside this one).
      const job = jobs.get(listed.id);
      if (job === undefined || (job.state !== 'queued' && job.state !== 'running')) continue;
      if (await this.parts.outcomes.has(job.id)) {
        await queue.finishFromOutcome(job.id);
        continue;
      }
      if (waitingIds.has(job.id)) continue;
      if (takenIds.has(job.id)) {
        if (job.state === 'queued') queue.started(job.id);
        continue;
      }
      // Neither waiting, nor taken, nor finished: Redis lost it (restarted without its data) or its ticket failed.
      // (Unless its outcome was taken in while this pass waited on Redis: the journal says so.)
      const now = jobs.get(job.id);
      if (queue.finishing.has(job.id) || (now?.state !== 'queued' && now?.state !== 'running')) continue;
      if (job.attempts >= this.parts.maxAttempts) {
        queue.fail(job, lostRunMessage(job.attempts), Identifiers.Timeout);
        continue;
      }
      await this.requeue(job);
    }
  }

  /**
   * Whether a taken run is lost for good: its worker stopped beating `orphanAfterMs` ago and BullMQ will not hand
   * its ticket to anyone (failed after too many stalls, or gone). Then its record is dropped, so its jobs, found
   * nowhere, are queued again (or failed, past their attempts).
   */
  private async orphaned(runId: string, record: TakenRecord): Promise<boolean> {
    if (this.queue.workers().some((worker) => worker.id === record.worker)) return false;
    if (this.parts.now() - record.startedAt < this.parts.orphanAfterMs) return false;
    const state = await this.parts.tickets.state(runId);
    if (state !== 'failed' && state !== 'unknown' && state !== 'completed') return false;
    this.parts.logger.warn('a run was lost with its worker; its jobs are queued again', { run: runId, worker: record.worker, ticket: state });
    await this.parts.redis.hdel(this.parts.keys.taken, runId);
    return true;
  }

  /** A job found nowhere in Redis: written there again, with a ticket. */
  private async requeue(job: JobRecord): Promise<void> {
    const { instance, keys, jobs, events } = this.parts;
    const model = job.params.model ?? this.queue.defaultModel();
    if (model === undefined) return;
    this.parts.logger.warn('a job was missing from Redis; queued again', { jobId: job.id, state: job.state });
    const initImage = jobs.initImage(job.id);
    await this.parts.fair.submit(remoteJob(job, instance, model, initImage !== undefined), undefined, withPicture(keys, job.id, initImage));
    await this.parts.tickets.add(model);
    if (job.state === 'running') {
      jobs.markQueued(job.id, job.attempts);
      events.emit('requeued', { job: { ...job, state: 'queued' }, reason: 'restart' });
    }
  }
}
