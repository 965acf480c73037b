/**
 * What a job is: its record in the journal, its states and the interaction it answers. Everything that handles
 * jobs (store, queue, moderation, delivery) imports this; it imports nothing above the engine's own types.
 *
 * Life of a job: `queued` → `running` → `delivering` → `done`, or `failed` / `cancelled` from any of the first
 * three. Every transition is written to the journal before it is announced.
 */
import type { Identifier } from '../errors.js';
import type { GenerateParams } from '../diffusion/types.js';

export type JobState = 'queued' | 'running' | 'delivering' | 'done' | 'failed' | 'cancelled';
/**
 * How a job came to be: `/imagine`; 🔁 of a finished one; a picture's U button (2× upscale of that picture) or V
 * button (variations of it). U and V jobs start from their parent's picture `sourcePicture` (img2img).
 */
export type JobKind = 'imagine' | 'reroll' | 'upscale' | 'variation';

/** What the bot needs to edit the interaction's reply later (the 15-minute token rule is the delivery's business). */
export interface InteractionRef {
  applicationId: string;
  token: string;
  /** Epoch milliseconds when the interaction was created (its token dies 15 minutes later). */
  createdAt: number;
}

export interface JobRecord {
  /** Sortable and monotonic within a process: 20 characters of Crockford base32 (10 for the time, 10 counter/random). */
  id: string;
  /** Journal order (submission order); restarts resume waiting jobs by it. */
  seq: number;
  guildId: string;
  channelId: string;
  userId: string;
  kind: JobKind;
  /** The job a reroll, an upscale or a variation was made from. */
  parentJobId?: string;
  /** Upscale and variation: which of the parent's pictures (0-based; picture i has seed + i) it starts from. */
  sourcePicture?: number;
  params: GenerateParams;
  /**
   * Whether the channel was age-restricted (Discord's `nsfw` flag; a thread takes its parent's) when the job was
   * submitted. Absent: not known (jobs journaled before it was recorded), which the safety rules treat as not.
   */
  channelNsfw?: boolean;
  /**
   * The server's default negative prompt as it was added to `params.negativePrompt` (see
   * moderation/request-rules.ts), so a 🔁 can tell it from the member's own and apply today's default instead.
   */
  guildNegative?: string;
  state: JobState;
  /** Absent for jobs that have no interaction (a 🔁 reaction): those are delivered as channel messages. */
  interaction?: InteractionRef;
  /** The bot's message that shows this job (the interaction's reply, or the channel message a reroll posted). */
  messageId?: string;
  /** The message a channel-message delivery should reply to (a reroll replies to the image it rerolls). */
  replyToMessageId?: string;
  /** The message that carries the final image, once delivery is confirmed. */
  resultMessageId?: string;
  /** How many times the job has started running (a restart mid-run reruns it once, then fails it). */
  attempts: number;
  /** How many times delivery was started. > 0 on a recovered job means a post may already exist. */
  deliveryAttempts: number;
  /**
   * Idempotency key for the delivery, ≤ 25 characters so it fits Discord's message `nonce`
   * (send it with `enforce_nonce: true` and Discord drops a duplicate post).
   */
  deliveryKey: string;
  /** Why the job failed or was cancelled, in words a member can read. */
  error?: string;
  errorCode?: Identifier;
  /** User id of whoever cancelled it. */
  cancelledBy?: string;
  /** Epoch milliseconds. */
  createdAt: number;
  /**
   * Scaled mode: the bot process that submitted it and delivers it (several may share one journal). Absent in the
   * embedded mode, where the one process owns every job.
   */
  owner?: string;
  startedAt?: number;
  finishedAt?: number;
  deliveredAt?: number;
}
