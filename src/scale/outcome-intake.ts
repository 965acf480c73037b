/**
 * What the workers say about this bot process's jobs, taken into its journal: a run started, a step made, an
 * outcome stored in Redis (made, failed, cancelled). Each outcome is taken in once (an event and the reconcile pass
 * may both see it), then Redis forgets it; a made picture goes to delivery.
 */
import type { Identifier } from '../errors.js';
import type { GenerateResult, StepProgress } from '../diffusion/types.js';
import type { Logger } from '../log.js';
import type { DeliveryRunner } from '../queue/delivery-runner.js';
import { cancelledMessage } from '../queue/job-runner.js';
import type { TypedEmitter } from '../queue/typed-emitter.js';
import type { JobRecord, QueueEventMap } from '../queue/types.js';
import type { JobStore } from '../store/jobs.js';
import type { OutcomeStore } from './outcomes.js';
import { decodeProgress, type TicketEvent } from './ticket-events.js';

/** The bot queue's shared parts the intake uses. */
export interface IntakeParts {
  /** This bot process: only its own jobs are taken in. */
  readonly instance: string;
  readonly jobs: JobStore;
  readonly outcomes: OutcomeStore;
  readonly delivery: DeliveryRunner;
  readonly events: TypedEmitter<QueueEventMap>;
  readonly logger: Logger;
  readonly now: () => number;
}

/** What the intake asks of the queue it serves. */
export interface IntakeQueue {
  /** True once the queue is shutting down: no outcome is taken in. */
  closing(): boolean;
  fail(job: JobRecord, message: string, identifier: Identifier | undefined): void;
  /** A job has left the waiting line (it started): its last announced place is forgotten. */
  leftLine(jobId: string): void;
  /** After each outcome, taken in or not (the queue may have become idle). */
  settled(): void;
}

export class OutcomeIntake {
  /** The latest step of each running job (for ETAs and `/queue`). */
  readonly progress = new Map<string, StepProgress>();
  /** Jobs whose outcome is being taken in now. */
  readonly finishing = new Set<string>();

  constructor(
    private readonly parts: IntakeParts,
    private readonly queue: IntakeQueue,
  ) {}

  /** A ticket event from a worker (BullMQ progress data, through TicketQueues). */
  onTicketEvent(event: TicketEvent): void {
    if (event.type === 'started') for (const jobId of event.jobs) this.started(jobId);
    else if (event.type === 'progress') this.stepped(event.job, decodeProgress(event));
    else void this.finishFromOutcome(event.job);
  }

  /** A job a worker has taken: journaled as running, once. */
  started(jobId: string): void {
    const job = this.mine(jobId);
    if (job === undefined || job.state !== 'queued') return;
    const startedAt = this.parts.now();
    if (!this.parts.jobs.markRunning(jobId, startedAt)) return;
    this.queue.leftLine(jobId);
    this.parts.events.emit('started', { job: { ...job, state: 'running', startedAt, attempts: job.attempts + 1 } });
  }

  /** A job's outcome is stored: take it into the journal (once), then let Redis forget it. */
  async finishFromOutcome(jobId: string): Promise<void> {
    if (this.finishing.has(jobId) || this.queue.closing()) return;
    const job = this.mine(jobId);
    if (job === undefined) return;
    const { jobs, outcomes, events } = this.parts;
    this.finishing.add(jobId);
    try {
      if (job.state !== 'queued' && job.state !== 'running') {
        await outcomes.delete(jobId);
        return;
      }
      const outcome = await outcomes.read(jobId);
      if (outcome === undefined) return;
      if (job.state === 'queued') this.started(jobId);
      const running = jobs.get(jobId)!;
      this.progress.delete(jobId);
      if (outcome.state === 'made') await this.parts.delivery.handOff(running, outcome.result as GenerateResult);
      else if (outcome.state === 'failed') this.queue.fail(running, outcome.error, outcome.identifier);
      else {
        jobs.markCancelled(jobId, cancelledMessage(running, outcome.by), outcome.by, this.parts.now());
        events.emit('cancelled', { job: jobs.get(jobId)!, by: outcome.by });
      }
      await outcomes.delete(jobId);
    } catch (error) {
      this.parts.logger.warn('Could not take a job outcome from Redis yet; the reconcile will retry', { jobId, error });
    } finally {
      this.finishing.delete(jobId);
      this.queue.settled();
    }
  }

  private stepped(jobId: string, progress: StepProgress): void {
    const job = this.mine(jobId);
    if (job === undefined) return;
    if (job.state === 'queued') this.started(jobId);
    const running = this.parts.jobs.get(jobId);
    if (running?.state !== 'running') return;
    this.progress.set(jobId, progress);
    this.parts.events.emit('progress', { job: running, progress });
  }

  private mine(jobId: string): JobRecord | undefined {
    const job = this.parts.jobs.get(jobId);
    return job?.owner === this.parts.instance ? job : undefined;
  }
}
