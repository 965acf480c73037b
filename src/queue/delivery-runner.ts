import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.js';
import { isUserError, type Identifier } from '../errors.js';
import type { GenerateResult } from '../diffusion/types.js';
import type { JobStore, SavedResultMeta } from '../store/jobs.js';
import type { ResultFiles } from '../store/results.js';
import type { TypedEmitter } from './typed-emitter.js';
import type { DeliverFn, JobRecord, QueueEventMap } from './types.js';

export interface DeliveryRunnerOptions {
  jobs: JobStore;
  /** Where finished PNGs wait until their delivery is confirmed. */
  results: ResultFiles;
  deliver: DeliverFn;
  /** Tries per job before it fails (each process start begins a new count). */
  tries: number;
  /** Wait before the second try; doubled for each further try. */
  retryDelayMs: number;
  /** Keep the PNGs after delivery (for debugging). */
  keepResults: boolean;
  events: TypedEmitter<QueueEventMap>;
  /** Records a job as failed: the queue's one way to fail a job (journal and `failed` event). */
  fail: (job: JobRecord, message: string, identifier: Identifier | undefined) => void;
  /** Called whenever a delivery ends: done, failed, or left for the next start. */
  onSettled: () => void;
  logger: Logger;
  now: () => number;
}

interface DeliveryEntry {
  job: JobRecord;
  controller: AbortController;
  done: Promise<void>;
}

/**
 * Everything from a made image to a posted one: the PNGs reach the disk, the journal says `delivering`, then
 * `deliver` is called until it confirms (`done`), refuses with a UserError, or runs out of tries (`failed`).
 * A delivery cut short by shutdown stays `delivering` and the next start delivers it from the saved PNGs.
 */
export class DeliveryRunner {
  private readonly active = new Map<string, DeliveryEntry>();

  constructor(private readonly options: DeliveryRunnerOptions) {}

  /** Deliveries going on. */
  get size(): number {
    return this.active.size;
  }

  /** The jobs being delivered. */
  jobs(): JobRecord[] {
    return [...this.active.values()].map((entry) => entry.job);
  }

  get(jobId: string): JobRecord | undefined {
    return this.active.get(jobId)?.job;
  }

  /**
   * A running job's image is made: save its PNGs, journal it as `delivering` (in that order, so a restart can
   * always deliver it), emit `generated` and start delivering. False when the PNGs could not be saved: the job
   * is failed.
   */
  async handOff(job: JobRecord, result: GenerateResult): Promise<boolean> {
    const { jobs, results, logger, events } = this.options;
    try {
      await results.save(job.id, result.images);
    } catch (error) {
      logger.error('Could not save a finished image', { jobId: job.id, error });
      this.options.fail(job, 'Sorry, the finished image could not be saved.', undefined);
      return false;
    }
    const { images, ...rest } = result;
    const meta: SavedResultMeta = { ...rest, imageCount: images.length };
    jobs.markDelivering(job.id, meta);
    const delivering: JobRecord = { ...job, state: 'delivering' };
    events.emit('generated', { job: delivering, result });
    this.start(delivering, result, false);
    return true;
  }

  /**
   * At start-up: deliver again the jobs the journal shows `delivering`, from their saved PNGs; fail those whose
   * PNGs are lost. Every other saved PNG is removed.
   */
  async recover(delivering: readonly JobRecord[]): Promise<{ redelivering: number; failed: number }> {
    const { jobs, results } = this.options;
    const counts = { redelivering: 0, failed: 0 };
    const keep = new Set<string>();
    for (const job of delivering) {
      const meta = jobs.savedResult(job.id);
      const images = meta === undefined ? undefined : await results.load(job.id, meta.imageCount);
      if (meta === undefined || images === undefined) {
        this.options.fail(job, 'The finished image was lost in a restart. Please ask again.', undefined);
        counts.failed++;
        continue;
      }
      keep.add(job.id);
      const { imageCount: _imageCount, ...rest } = meta;
      this.start(job, { ...rest, images }, true);
      counts.redelivering++;
    }
    await results.removeAllExcept(keep);
    return counts;
  }

  /**
   * Shutdown: let deliveries finish for `graceMs`, then abort them and wait a little more (at most 2 s). One that
   * ignores its signal is left to the next start (it stays `delivering` in the journal).
   */
  async drain(graceMs: number): Promise<void> {
    const deliveries = [...this.active.values()];
    const all = () => Promise.all(deliveries.map((delivery) => delivery.done));
    const timer = sleep(graceMs, undefined, { ref: false }).then(() => 'timeout' as const);
    const finished = await Promise.race([all().then(() => 'done' as const), timer]);
    if (finished === 'done') return;
    for (const delivery of this.active.values()) delivery.controller.abort(new Error('shutting down'));
    await Promise.race([all(), sleep(Math.min(graceMs, 2000), undefined, { ref: false })]);
  }

  private start(job: JobRecord, result: GenerateResult, recovered: boolean): void {
    const entry: DeliveryEntry = { job, controller: new AbortController(), done: Promise.resolve() };
    this.active.set(job.id, entry);
    entry.done = this.deliverWithRetries(entry, result, recovered)
      .catch((error: unknown) => this.options.logger.error('Delivery bookkeeping failed', { jobId: job.id, error }))
      .finally(() => {
        this.active.delete(job.id);
        this.options.onSettled();
      });
  }

  private async deliverWithRetries(entry: DeliveryEntry, result: GenerateResult, recovered: boolean): Promise<void> {
    const { job, controller } = entry;
    const { jobs, results, logger, events } = this.options;
    for (let attempt = 1; ; attempt++) {
      if (controller.signal.aborted) return;
      const mayHaveBeenDelivered = job.deliveryAttempts > 0;
      jobs.beginDelivery(job.id);
      job.deliveryAttempts++;
      try {
        const receipt = await this.options.deliver(job, result, {
          attempt: job.deliveryAttempts,
          mayHaveBeenDelivered,
          recovered,
          signal: controller.signal,
        });
        const at = this.options.now();
        jobs.markDone(job.id, receipt.messageId, at);
        const done: JobRecord = { ...job, state: 'done', resultMessageId: receipt.messageId, deliveredAt: at, finishedAt: at };
        events.emit('delivered', { job: done, messageId: receipt.messageId });
        if (!this.options.keepResults) await results.remove(job.id);
        return;
      } catch (error) {
        // Shutting down: the job stays `delivering` and the next start tries again from the saved PNGs.
        if (controller.signal.aborted) return;
        if (isUserError(error) || attempt >= this.options.tries) {
          // A UserError is a refusal by the bot's own rules (e.g. the safety rules held the picture back), not a fault.
          if (isUserError(error)) logger.info('Delivery refused', { jobId: job.id, attempt, identifier: error.identifier });
          else logger.error('Delivery failed', { jobId: job.id, attempt, error });
          this.options.fail(
            job,
            isUserError(error) ? error.message : 'Sorry, the image was made but could not be posted.',
            isUserError(error) ? error.identifier : undefined,
          );
          if (!this.options.keepResults) await results.remove(job.id);
          return;
        }
        logger.warn('Delivery failed; retrying', { jobId: job.id, attempt, error });
        try {
          await sleep(this.options.retryDelayMs * 2 ** (attempt - 1), undefined, { signal: controller.signal });
        } catch {
          return;
        }
      }
    }
  }
}
