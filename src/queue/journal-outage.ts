import type { Logger } from '../log.js';
import { Identifiers, UserError } from '../errors.js';
import { isStorageError } from '../store/database.js';

/** The longest wait between two tries to start a job while the journal cannot be written. */
export const MAX_RETRY_DELAY_MS = 60_000;

const REFUSAL = "The bot can't save new jobs right now (its disk is full or read-only); try again later.";

export interface JournalOutageOptions {
  /** Wait before the first retry; doubled after each failed one, up to `MAX_RETRY_DELAY_MS`. */
  retryDelayMs: number;
  /** Start one queue slot: the retry. */
  retry: () => void;
  logger: Logger;
}

/**
 * The queue's one policy for a journal it cannot write (disk full, read-only file, failing disk). A job may only
 * start once the journal says so, so a start that cannot be written leaves the job waiting in its place, and
 * while that lasts:
 * - `submit` is refused with one message (a job that cannot be journaled would be lost in a restart);
 * - queue slots park instead of each trying the journal; one slot retries, after a doubling backoff;
 * - one warning is logged when the trouble begins, not one per retry, and a note when a write works again.
 * A failed insert (submit) is refused with the same message and warns the same once, but starts no retries:
 * there is no job to start, and the next submit simply tries again.
 */
export class JournalOutage {
  /** A start failed and has not worked since: slots park, submit is refused. */
  private down = false;
  /** A warning was logged and no journal write has worked since. */
  private warned = false;
  /** The retry timer fired: the next slot to start may try the journal. */
  private retrying = false;
  /** Slots that stood down for the retry; they go back to work when the outage ends. */
  private parked = 0;
  private delayMs: number;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly options: JournalOutageOptions) {
    this.delayMs = options.retryDelayMs;
  }

  /** Throws the refusal while starts cannot be journaled. */
  refuseWhileDown(): void {
    if (this.down) throw refusal();
  }

  /** Writing a new job failed: the error to throw (the refusal when the storage is at fault; else `error`). */
  submitFailed(error: unknown): unknown {
    if (!isStorageError(error)) return error;
    this.warn(error);
    return refusal();
  }

  /** A slot is about to take a job: false, and the slot is parked, while the outage lasts (unless it is the retry). */
  mayStart(): boolean {
    if (!this.down) return true;
    if (this.retrying) {
      this.retrying = false;
      return true;
    }
    this.parked++;
    return false;
  }

  /** A start could not be journaled (the jobs were left waiting): park the slot and retry after a backoff. */
  startFailed(error: unknown): void {
    this.warn(error);
    this.delayMs = this.down ? Math.min(this.delayMs * 2, MAX_RETRY_DELAY_MS) : this.options.retryDelayMs;
    this.down = true;
    this.parked++;
    if (this.timer === undefined && !this.stopped) {
      this.timer = setTimeout(() => this.retry(), this.delayMs);
      this.timer.unref();
    }
  }

  /** A journal write worked (a start, a new job): the outage is over. */
  wrote(): void {
    if (this.warned) {
      this.warned = false;
      this.options.logger.info('The job journal can be written again; the queue goes on');
    }
    this.end();
  }

  /** The retry found nothing waiting (its jobs were cancelled): stop refusing; the next write will tell. */
  nothingToStart(): void {
    this.end();
  }

  /** Shutdown: no more retries. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private retry(): void {
    this.timer = undefined;
    this.retrying = true;
    if (this.parked > 0) this.parked--;
    this.options.retry();
  }

  private end(): void {
    if (!this.down) return;
    this.down = false;
    this.retrying = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    const parked = this.parked;
    this.parked = 0;
    for (let i = 0; i < parked; i++) this.options.retry();
  }

  private warn(error: unknown): void {
    if (this.warned) return;
    this.warned = true;
    this.options.logger.warn(
      'The job journal cannot be written; waiting jobs keep their places and new ones are refused until it can (retrying)',
      { error },
    );
  }
}

function refusal(): UserError {
  return new UserError(Identifiers.JournalUnwritable, REFUSAL);
}
