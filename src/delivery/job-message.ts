/**
 * One job's message as the messenger tracks it, and the small pure helpers for its bodies. The state here is the
 * messenger's own bookkeeping; nothing is journaled.
 */
import { DiscordAPIError, type RawFile } from 'discord.js';
import type { Preview } from '../diffusion/types.js';
import type { JobRecord } from '../queue/types.js';
import type { EditPacer } from './edit-pacer.js';
import { DEFAULT_ATTACHMENT_LIMIT } from './images.js';
import { renderKey, renderStage, type JobStage, type MessageBody } from './render.js';

/** Webhook answers that mean "this token or message is gone": fall back to a channel message. */
const DEAD_WEBHOOK_CODES = new Set([10008, 10015, 10062, 50027]);

/** A stage with the raw preview: it is encoded only for the edits actually sent. */
export type PendingStage = Exclude<JobStage, { kind: 'running' }> | (Extract<JobStage, { kind: 'running' }> & { raw?: Preview });

export function isDeadWebhook(error: unknown): boolean {
  return (
    error instanceof DiscordAPIError &&
    (error.status === 401 || error.status === 404 || DEAD_WEBHOOK_CODES.has(Number(error.code)))
  );
}

/** What the member would see, without encoding the preview (the pacer compares these for every state). */
export function stageKey(stage: PendingStage, params: JobRecord['params']): string {
  if (stage.kind !== 'running') return renderKey(renderStage(stage, params));
  const { raw, ...shown } = stage;
  return renderKey(renderStage(shown, params)) + (raw ? '+preview' : '');
}

export function toRawFiles(message: MessageBody): RawFile[] {
  return message.files.map((file) => ({ name: file.name, data: file.data, contentType: file.contentType }));
}

export function jsonOf(message: MessageBody) {
  const { files: _files, ...json } = message;
  return json;
}

/** The message of one job. */
export class JobMessage {
  job: JobRecord;
  /** Resolves once the interaction has been acknowledged (deferred); false: it never was. */
  acknowledged: Promise<boolean>;
  /** A channel message this bot posted for the job (a reroll's message, or the fallback past the token). */
  channelMessageId: string | undefined;
  webhookDead = false;
  /** Messages on which this run offered ❌ (the call may still wait its turn in the channel's line). */
  cancelOffered = new Set<string>();
  /** Of those, the ones where the ❌ was really added. */
  cancelAdded = new Set<string>();
  /** The job has ended: an ❌ still waiting for its turn is no longer worth adding. */
  ended = false;
  attachmentLimit = DEFAULT_ATTACHMENT_LIMIT;
  pacer: EditPacer<PendingStage>;

  constructor(job: JobRecord, acknowledged: Promise<boolean>, pacer: (message: JobMessage) => EditPacer<PendingStage>) {
    this.job = job;
    this.acknowledged = acknowledged;
    // A reroll's own message is its channel message.
    this.channelMessageId = job.interaction ? undefined : job.messageId;
    this.pacer = pacer(this);
  }
}

