/**
 * The contract between the bot and whatever runs its jobs. The embedded implementation is `FairQueue`
 * (./fair-queue.ts: p-queue + a SQLite journal in one process); a Redis/BullMQ queue with workers on other
 * machines could implement the same interface. Nothing here imports discord.js: ids are plain strings.
 * The job's own types live in ../jobs/types.ts, below every layer that handles jobs.
 */
import type { Identifier } from '../errors.js';
import type { GenerateParams, GenerateResult, StepProgress } from '../diffusion/types.js';
import type { InteractionRef, JobKind, JobRecord } from '../jobs/types.js';

export type { InteractionRef, JobKind, JobRecord, JobState } from '../jobs/types.js';

export interface SubmitInput {
  guildId: string;
  channelId: string;
  userId: string;
  /** Fully resolved: steps, seed, size and guidance filled in by the command (the queue does not pick defaults). */
  params: GenerateParams;
  /** Whether the channel is age-restricted (threads: their parent); recorded so delivery knows it after a restart. */
  channelNsfw?: boolean;
  /** The server's default negative prompt included in `params.negativePrompt`, if any. */
  guildNegative?: string;
  /** Default 'imagine'. */
  kind?: JobKind;
  parentJobId?: string;
  /** Upscale and variation: the parent's picture it starts from (0-based). */
  sourcePicture?: number;
  /**
   * img2img: the picture to start from (PNG, JPEG or WebP bytes), journaled beside the job rather than in `params`
   * (which then carries only `strength`), so a restart or a 🔁 still has it. `params.initImage` is refused.
   */
  initImage?: Uint8Array;
  interaction?: InteractionRef;
  messageId?: string;
  replyToMessageId?: string;
}

/** Where a job stands. ETAs come from measured milliseconds per step (moving average) × the work ahead. */
export interface JobPosition {
  /** 1-based place among waiting jobs in the order the fair scheduler will start them; 0 once running. */
  place: number;
  /** Waiting jobs in the whole queue. */
  waiting: number;
  /** Estimated milliseconds until the job starts (0 when running). */
  startsInMs: number;
  /** Estimated milliseconds until its image is made. */
  doneInMs: number;
}

/**
 * - `cancelled`: it was waiting and is now cancelled (the `cancelled` event has fired).
 * - `stopping`: it is running; the engine stops at its next step, then the `cancelled` event fires.
 * - `finished`: too late, it is delivering or already done/failed/cancelled.
 * - `not-found`: no such job in the journal.
 */
export type CancelOutcome = 'cancelled' | 'stopping' | 'finished' | 'not-found';

export interface JobView {
  job: JobRecord;
  position: JobPosition;
  /** For a running job: the last step reported. */
  progress?: StepProgress;
}

export interface QueueSnapshot {
  /** Running jobs, oldest start first. */
  running: JobView[];
  /** Waiting jobs in the order they will start. */
  waiting: JobView[];
  /** Jobs whose image is made and being posted. */
  delivering: JobRecord[];
  totals: { waiting: number; running: number; delivering: number; members: number };
  /** The moving average used for ETAs, milliseconds per step of a reference-size image. */
  msPerStep: number;
}

/** What a successful delivery reports back. */
export interface DeliveryReceipt {
  /** The message that carries the image (for a webhook edit of the reply: the reply's id). */
  messageId: string;
}

export interface DeliveryContext {
  /** 1-based, counted across restarts. */
  attempt: number;
  /**
   * True when an earlier delivery of this job started and its outcome is unknown (the process died or the call
   * failed midway). Check before posting a new message: e.g. the reply already has an attachment, or a message
   * with `nonce === job.deliveryKey` exists. Editing the interaction's reply is idempotent by nature.
   */
  mayHaveBeenDelivered: boolean;
  /** True when this job's image was made before a restart and is being delivered from the saved PNGs. */
  recovered: boolean;
  /** Aborted at shutdown once its grace period is over. */
  signal: AbortSignal;
}

/**
 * Posts the finished image (supplied by the bot). Resolve only when the message is confirmed; reject to have
 * the queue retry (a UserError is not retried: the job fails with its message).
 */
export type DeliverFn = (job: JobRecord, result: GenerateResult, context: DeliveryContext) => Promise<DeliveryReceipt>;

export interface QueueEventMap {
  queued: { job: JobRecord; position: JobPosition };
  /** A waiting job's place changed (emitted only on change; coalesce with progress edits). */
  position: { job: JobRecord; position: JobPosition };
  started: { job: JobRecord };
  progress: { job: JobRecord; progress: StepProgress };
  /** The image is made and saved; delivery starts now. */
  generated: { job: JobRecord; result: GenerateResult };
  delivered: { job: JobRecord; messageId: string };
  failed: { job: JobRecord; error: string; identifier?: Identifier };
  cancelled: { job: JobRecord; by?: string };
  /** A job went back to waiting: a running job stopped by shutdown, or one rerun after a restart. */
  requeued: { job: JobRecord; reason: 'shutdown' | 'restart' };
  /** Shutdown finished stopping work; these jobs keep their place for the next start. */
  shutdown: { waiting: JobRecord[] };
}

export type QueueEventName = keyof QueueEventMap;

export interface QueueEvents {
  /** Returns a function that removes the listener. A listener that throws is logged, never breaks the queue. */
  on<K extends QueueEventName>(event: K, listener: (payload: QueueEventMap[K]) => void): () => void;
  off<K extends QueueEventName>(event: K, listener: (payload: QueueEventMap[K]) => void): void;
}

export interface ResumeReport {
  /** Waiting jobs carried over, in order. */
  queued: number;
  /** Jobs that were running when the process died and will run again. */
  rerun: number;
  /** Jobs that were running for the second time when it died: failed. */
  failed: number;
  /** Jobs whose image was saved but not confirmed posted: delivered again from the PNGs. */
  redelivering: number;
}

export interface ShutdownOptions {
  /** How long in-flight deliveries may finish before they are aborted (they resume on the next start). Default 10 000. */
  deliveryGraceMs?: number;
}

export interface ShutdownReport {
  /** Jobs still waiting (their place is kept in the journal). */
  waiting: JobRecord[];
  /** Running jobs stopped and put back to waiting. */
  requeued: number;
}

/** What `submit` answers: the journaled job and where it stands. */
export interface Submitted {
  job: JobRecord;
  position: JobPosition;
}

export interface JobQueue {
  readonly events: QueueEvents;
  /** Load the journal and start work: waiting jobs in order, interrupted runs once more, saved images delivered. */
  resume(): Promise<ResumeReport>;
  /**
   * Journal and queue a job. Throws UserError `ShuttingDown` (also before `resume()`), `MemberQueueFull` or
   * `QueueFull` (naming the cap), or `JournalUnwritable` (the disk is full or read-only); on refusal nothing is
   * written. The job starts only after this returns. The embedded queue answers at once; a queue in Redis answers
   * with a promise (it may also throw `ServiceUnavailable` when Redis cannot be reached): callers await either.
   */
  submit(input: SubmitInput): Submitted | Promise<Submitted>;
  /** Cancel a waiting or running job. `by` is the user id recorded. Permission checks are the caller's. */
  cancel(jobId: string, by?: string): CancelOutcome | Promise<CancelOutcome>;
  /** Record the message that shows the job, once the bot knows it (rerolls and ❌ find jobs by it). */
  /** Another message that shows the job (a channel message replacing an expired reply): found by `findByMessageId`. */
  linkMessage(jobId: string, messageId: string): void;
  setMessageId(jobId: string, messageId: string): void;
  /** Any job in the journal, finished or not. */
  get(jobId: string): JobRecord | undefined;
  /** The picture an img2img job starts from (see `SubmitInput.initImage`); undefined for txt2img jobs. */
  initImage(jobId: string): Uint8Array | undefined;
  /** The job whose message (or result message) has this id. */
  findByMessageId(messageId: string): JobRecord | undefined;
  /** Place and ETA of a waiting or running job; undefined once it is past running. */
  position(jobId: string): JobPosition | undefined;
  snapshot(): QueueSnapshot;
  /** Resolves when nothing waits, runs or is being delivered. */
  onIdle(): Promise<void>;
  /** Take no new jobs, stop running ones so they stay queued, let deliveries finish. Does not close the database. */
  shutdown(options?: ShutdownOptions): Promise<ShutdownReport>;
}
