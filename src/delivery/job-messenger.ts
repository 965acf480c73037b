/**
 * Everything a job shows the member, from "waiting" to the picture: one paced message per job, fed by the
 * queue's events, delivered over raw REST so it works for jobs from before a restart (no discord.js cache, no
 * live interaction object: the token and ids come from the journal).
 *
 * Where a job's message lives:
 * - a /imagine job edits its interaction reply through the webhook while the token is valid;
 * - past the token's 15 minutes, or when the webhook answers 401/404, it posts an ordinary channel message that
 *   replies to the original and edits that one from then on;
 * - a 🔁 reroll has no interaction: it posts a channel message replying to the image it rerolls.
 */
import { DiscordAPIError, MessageFlags, Routes, type REST } from 'discord.js';
import type { RESTPostAPIChannelMessageJSONBody } from 'discord-api-types/v10';
import type { GenerateResult, StepProgress } from '../diffusion/types.js';
import { Identifiers, UserError } from '../errors.js';
import { loopSteps } from '../diffusion/check-inputs.js';
import { createLogger, type Logger } from '../log.js';
import { blockedNotice, blockReason, previewsAllowed, safetyDecision, SPOILER_WARNING, type SafetyDecision } from '../moderation/safety-rules.js';
import type { ModerationLog } from '../store/moderation-log.js';
import type { GuildSettings } from '../store/settings.js';
import type { DeliverFn, DeliveryReceipt, JobPosition, JobQueue, JobRecord } from '../queue/types.js';
import { ChannelBudget } from './channel-budget.js';
import { EditPacer } from './edit-pacer.js';
import { BotReactions, REROLL_EMOJI } from './bot-reactions.js';
import { pictureFiles, previewPng } from './images.js';
import { isDeadWebhook, JobMessage, jsonOf, stageKey, toRawFiles, type PendingStage } from './job-message.js';
import { NO_MENTIONS, renderFinal, renderStage, type MessageBody } from './render.js';
import { pictureButtonRows } from './picture-buttons.js';

/** Interaction tokens live 15 minutes (Discord docs, "Receiving and Responding"). */
export const INTERACTION_TOKEN_LIFETIME_MS = 15 * 60 * 1000;
/** Stop using a token this long before it dies: a paced final edit plus an upload must land in time. */
const TOKEN_SAFETY_MARGIN_MS = 30_000;

export interface JobMessengerOptions {
  rest: REST;
  queue: JobQueue;
  /** The guild's safety rules, read when a picture is about to be posted (the rules of that moment apply). */
  settings: { get(guildId: string): Pick<GuildSettings, 'safetyMode' | 'refuseUnchecked'> };
  /** Where pictures held back by those rules are recorded, for /settings audit. */
  moderationLog: Pick<ModerationLog, 'record'>;
  /** Whether the model has a safety checker: then live previews are shown only in age-restricted channels. Default false. */
  modelChecked?: boolean;
  /** Minimum milliseconds between two edits of one message. Default 1500. */
  editIntervalMs?: number;
  /** Progress edits per channel per minute, shared by every job in the channel; 0: no limit. Default 30. */
  channelEditsPerMinute?: number;
  /** Pause after each reaction call, per channel (Discord allows about one per 250 ms). Default 300. */
  reactionGapMs?: number;
  /** Side of the preview image in pixels. Default 256. */
  previewSide?: number;
  logger?: Logger;
  /** Clock for the token's lifetime (tests). Default Date.now. */
  now?: () => number;
}

export class JobMessenger {
  private readonly rest: REST;
  private readonly queue: JobQueue;
  private readonly settings: JobMessengerOptions['settings'];
  private readonly moderationLog: JobMessengerOptions['moderationLog'];
  private readonly modelChecked: boolean;
  private readonly editIntervalMs: number;
  private readonly previewSide: number;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly messages = new Map<string, JobMessage>();
  /** Interactions whose defer is under way, by token: their reply cannot be edited before it exists. */
  private readonly holds = new Map<string, { promise: Promise<boolean>; attachmentLimit?: number }>();
  private readonly unsubscribe: Array<() => void> = [];
  private readonly reactions: BotReactions;
  private readonly channelBudget: ChannelBudget;

  constructor(options: JobMessengerOptions) {
    this.rest = options.rest;
    this.queue = options.queue;
    this.settings = options.settings;
    this.moderationLog = options.moderationLog;
    this.modelChecked = options.modelChecked ?? false;
    this.editIntervalMs = options.editIntervalMs ?? 1500;
    this.previewSide = options.previewSide ?? 256;
    this.logger = options.logger ?? createLogger();
    this.now = options.now ?? Date.now;
    this.channelBudget = new ChannelBudget(options.channelEditsPerMinute ?? 30);
    this.reactions = new BotReactions(this.rest, this.logger, options.reactionGapMs);

    const events = this.queue.events;
    this.unsubscribe.push(
      events.on('queued', ({ job, position }) => this.showQueued(job, position)),
      events.on('position', ({ job, position }) => this.showQueued(job, position)),
      events.on('started', ({ job }) => this.show(job, { kind: 'running', step: 0, totalSteps: loopSteps(job.params), elapsedMs: 0 })),
      events.on('progress', ({ job, progress }) => this.showProgress(job, progress)),
      events.on('requeued', ({ job }) => {
        const position = this.queue.position(job.id);
        if (position) this.showQueued(job, position);
      }),
      events.on('failed', ({ job, error, identifier }) =>
        void (identifier === Identifiers.SafetyBlocked ? this.endBlocked(job, error) : this.end(job, { kind: 'failed', reason: error })),
      ),
      events.on('cancelled', ({ job }) => void this.end(job, { kind: 'cancelled' })),
    );
  }

  /**
   * The delivery callback for the queue: posts the finished picture, resolves with the message that carries it.
   * A picture the server's safety rules hold back is not posted: it is logged and the delivery refused with a
   * UserError (`SafetyBlocked`), so the job ends failed and its message says why (see `endBlocked`).
   */
  readonly deliver: DeliverFn = async (job, result, context) => {
    const decision = this.safetyFor(job, result);
    if (decision.action === 'block') {
      this.moderationLog.record({
        guildId: job.guildId,
        kind: 'picture-blocked',
        userId: job.userId,
        jobId: job.id,
        channelId: job.channelId,
        prompt: job.params.prompt,
        rule: decision.rule,
        at: this.now(),
      });
      throw new UserError(Identifiers.SafetyBlocked, blockReason(decision.rule), { rule: decision.rule });
    }
    const message = this.messageFor(job);
    const final = await this.finalBody(message, result, decision.action === 'spoiler');
    if (!(await message.acknowledged)) message.webhookDead = true;
    await message.pacer.reserveLast();
    this.channelBudget.note(job.channelId, !this.canUseWebhook(message));
    const editedId = await this.editOriginal(message, final);
    const receipt: DeliveryReceipt = editedId
      ? { messageId: editedId }
      : await this.postFinalToChannel(message, final, context.mayHaveBeenDelivered);
    // The picture is posted: the journal may say so now. The reactions follow in the channel's line.
    void this.reactions.react(job.channelId, receipt.messageId, REROLL_EMOJI);
    this.reactions.takeBackCancel(message, this.messageIdOf(message));
    this.messages.delete(job.id);
    return receipt;
  };

  /**
   * Call before `queue.submit` for an interaction that is about to be deferred: the job's reply is not edited
   * until `release(true)`; `release(false)` (the defer failed) sends its messages to the channel instead.
   */
  hold(token: string, attachmentLimit?: number): (acknowledged: boolean) => void {
    let release!: (acknowledged: boolean) => void;
    const promise = new Promise<boolean>((resolve) => (release = resolve));
    this.holds.set(token, { promise, attachmentLimit });
    return (acknowledged) => {
      release(acknowledged);
      this.holds.delete(token);
    };
  }

  /** Tells members whose jobs wait that the bot restarts and their place is kept; resolves when posted (or after `timeoutMs`). */
  async announceRestart(jobs: JobRecord[], timeoutMs = 8000): Promise<void> {
    const edits = jobs.map(async (job) => {
      const message = this.messageFor(job);
      const position = this.queue.position(job.id);
      try {
        // Place 0 means it was running: it will run again first, so no place is shown.
        const place = position !== undefined && position.place > 0 ? position.place : undefined;
        await message.pacer.finish({ kind: 'restarting', place });
      } catch (error) {
        this.logger.warn('could not tell a member about the restart', { jobId: job.id, error: error });
      }
    });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(edits), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }

  /** Stops listening to the queue and drops pending edits. */
  close(): void {
    for (const off of this.unsubscribe.splice(0)) off();
    for (const message of this.messages.values()) message.pacer.dispose();
    this.messages.clear();
  }

  // ---- stages ----

  private showQueued(job: JobRecord, position: JobPosition): void {
    if (job.state !== 'queued') return;
    this.show(job, { kind: 'queued', place: position.place, etaMs: position.startsInMs > 0 ? position.startsInMs : undefined });
  }

  private showProgress(job: JobRecord, progress: StepProgress): void {
    const perStep = progress.step > 0 ? progress.elapsedMs / progress.step : 0;
    const etaMs = perStep > 0 ? perStep * (progress.totalSteps - progress.step) : undefined;
    // A preview is the picture before the safety checker has seen it.
    const preview = previewsAllowed({ channelNsfw: job.channelNsfw, modelChecked: this.modelChecked }) ? progress.preview : undefined;
    this.show(job, {
      kind: 'running',
      step: progress.step,
      totalSteps: progress.totalSteps,
      elapsedMs: progress.elapsedMs,
      etaMs,
      raw: preview,
    });
  }

  /** The server's safety rule for this job's picture, with the guild's settings of now. */
  private safetyFor(job: JobRecord, result: GenerateResult): SafetyDecision {
    const settings = this.settings.get(job.guildId);
    // Every picture of the job is posted in one message (finalBody): one flagged picture decides for the message.
    return safetyDecision({ mode: settings.safetyMode, refuseUnchecked: settings.refuseUnchecked, channelNsfw: job.channelNsfw, flagged: result.flagged });
  }

  /**
   * A picture held back: the job's message says so (in place of the progress, without the picture), and the member
   * is told why in a message only they see, while the interaction's token allows one.
   */
  private async endBlocked(job: JobRecord, reason: string): Promise<void> {
    await this.end(job, { kind: 'blocked', reason });
    const interaction = job.interaction;
    if (!interaction || this.now() >= interaction.createdAt + INTERACTION_TOKEN_LIFETIME_MS - TOKEN_SAFETY_MARGIN_MS) return;
    try {
      await this.rest.post(Routes.webhook(interaction.applicationId, interaction.token), {
        body: { content: blockedNotice(reason), flags: MessageFlags.Ephemeral, allowed_mentions: NO_MENTIONS },
        auth: false,
      });
    } catch (error) {
      this.logger.warn('could not tell a member privately why their picture was held back', { jobId: job.id, error });
    }
  }

  private show(job: JobRecord, stage: PendingStage): void {
    this.messageFor(job).pacer.push(stage);
  }

  private async end(job: JobRecord, stage: PendingStage): Promise<void> {
    const message = this.messageFor(job);
    try {
      await message.pacer.finish(stage);
      this.reactions.takeBackCancel(message, this.messageIdOf(message));
    } catch (error) {
      this.logger.warn('could not show the end of a job', { jobId: job.id, stage: stage.kind, error: error });
    } finally {
      this.messages.delete(job.id);
    }
  }

  private messageFor(job: JobRecord): JobMessage {
    const existing = this.messages.get(job.id);
    if (existing) {
      existing.job = job;
      return existing;
    }
    const hold = job.interaction ? this.holds.get(job.interaction.token) : undefined;
    const message = new JobMessage(
      job,
      hold?.promise ?? Promise.resolve(job.interaction !== undefined),
      (m) =>
        new EditPacer<PendingStage>({
          intervalMs: this.editIntervalMs,
          keyOf: (stage) => stageKey(stage, m.job.params),
          send: (stage) => this.sendStage(m, stage),
          beforeSend: (signal) => this.channelBudget.take(m.job.channelId, signal, !this.canUseWebhook(m)),
          onError: (error) => this.logger.warn('progress edit failed', { jobId: m.job.id, error: error }),
        }),
    );
    if (hold?.attachmentLimit) message.attachmentLimit = hold.attachmentLimit;
    this.messages.set(job.id, message);
    return message;
  }

  // ---- transport ----

  private canUseWebhook(message: JobMessage): boolean {
    const interaction = message.job.interaction;
    if (!interaction || message.webhookDead) return false;
    return this.now() < interaction.createdAt + INTERACTION_TOKEN_LIFETIME_MS - TOKEN_SAFETY_MARGIN_MS;
  }

  /**
   * Edits the interaction's reply while its token is good. Returns the reply's id, or undefined when the reply
   * cannot be used (no interaction, token past its time, or the webhook answered that it is gone: then it is
   * marked dead and every later message of the job goes to the channel).
   */
  private async editOriginal(message: JobMessage, body: MessageBody): Promise<string | undefined> {
    if (!this.canUseWebhook(message)) return undefined;
    const { applicationId, token } = message.job.interaction!;
    try {
      const posted = (await this.rest.patch(Routes.webhookMessage(applicationId, token, '@original'), {
        body: jsonOf(body),
        files: toRawFiles(body),
        auth: false,
      })) as { id: string };
      return posted.id;
    } catch (error) {
      if (!isDeadWebhook(error)) throw error;
      message.webhookDead = true;
      this.logger.info('interaction token gone; showing the job in a channel message', { jobId: message.job.id });
      return undefined;
    }
  }

  private async sendStage(message: JobMessage, stage: PendingStage): Promise<void> {
    const acknowledged = await message.acknowledged;
    if (!acknowledged) message.webhookDead = true;
    let body: MessageBody;
    if (stage.kind === 'running') {
      const preview = stage.raw ? await previewPng(stage.raw, this.previewSide) : undefined;
      body = renderStage({ ...stage, preview }, message.job.params);
    } else {
      body = renderStage(stage, message.job.params);
    }
    const live = stage.kind === 'queued' || stage.kind === 'running';
    // Live stages took their turn in the channel's budget before they were picked; last ones only count.
    if (!live) this.channelBudget.note(message.job.channelId, !this.canUseWebhook(message));

    const editedId = await this.editOriginal(message, body);
    if (editedId) {
      if (!this.messageIdOf(message)) this.queue.setMessageId(message.job.id, editedId);
      message.job = { ...message.job, messageId: editedId };
      if (live) this.reactions.offerCancel(message, editedId);
      return;
    }
    const id = await this.upsertChannelMessage(message, body);
    if (live) this.reactions.offerCancel(message, id);
  }

  /** Edits the job's channel message, or posts it (replying to the original) if there is none yet. */
  private async upsertChannelMessage(message: JobMessage, body: MessageBody, nonce?: string): Promise<string> {
    const { job } = message;
    if (message.channelMessageId) {
      try {
        await this.rest.patch(Routes.channelMessage(job.channelId, message.channelMessageId), {
          body: jsonOf(body),
          files: toRawFiles(body),
        });
        return message.channelMessageId;
      } catch (error) {
        // Deleted by someone: post a new one below.
        if (!(error instanceof DiscordAPIError && error.status === 404)) throw error;
      }
    }
    const replyTo = job.interaction ? this.messageIdOf(message) : (job.replyToMessageId ?? job.messageId);
    const payload: RESTPostAPIChannelMessageJSONBody = {
      ...jsonOf(body),
      attachments: body.attachments,
      ...(replyTo ? { message_reference: { message_id: replyTo, fail_if_not_exists: false } } : {}),
      ...(nonce ? { nonce, enforce_nonce: true } : {}),
    };
    const posted = (await this.rest.post(Routes.channelMessages(job.channelId), {
      body: payload,
      files: toRawFiles(body),
    })) as { id: string };
    message.channelMessageId = posted.id;
    if (!job.interaction) {
      // A reroll's message is the job's message: ❌ and 🔁 on it find the job after a restart.
      this.queue.setMessageId(job.id, posted.id);
      message.job = { ...job, messageId: posted.id };
    } else {
      // It stands in for the expired reply: ❌ on it must find the job too.
      this.queue.linkMessage(job.id, posted.id);
    }
    return posted.id;
  }

  /** The job's message id: the command records it after its defer, which may be after this job's record was read. */
  private messageIdOf(message: JobMessage): string | undefined {
    return message.job.messageId ?? this.queue.get(message.job.id)?.messageId;
  }

  private async postFinalToChannel(message: JobMessage, final: MessageBody, mayHaveBeenDelivered: boolean): Promise<DeliveryReceipt> {
    const { job } = message;
    // Past the token the member gets a new message: mention them (only them) so they notice.
    const body: MessageBody = job.interaction
      ? { ...final, content: `<@${job.userId}> ${final.content}`.trim(), allowed_mentions: { parse: [], users: [job.userId] } }
      : final;
    if (mayHaveBeenDelivered) {
      this.logger.info('delivering again after an interrupted delivery; the nonce keeps Discord from posting twice', { jobId: job.id });
    }
    if (!job.interaction) {
      // A reroll's message was posted by the bot just now: editing it in place is enough.
      return { messageId: await this.upsertChannelMessage(message, body, job.deliveryKey) };
    }
    // Past the token a new message is posted, since an edit pings nobody; the progress message, if any, goes.
    const progressId = message.channelMessageId;
    message.channelMessageId = undefined;
    const id = await this.upsertChannelMessage(message, body, job.deliveryKey);
    if (progressId) {
      message.cancelOffered.delete(progressId);
      await this.rest.delete(Routes.channelMessage(job.channelId, progressId)).catch((error: unknown) => {
        this.logger.warn('could not remove the progress message', { jobId: job.id, error: error });
      });
    }
    return { messageId: id };
  }

  private async finalBody(message: JobMessage, result: GenerateResult, spoiler: boolean): Promise<MessageBody> {
    const { job } = message;
    if (result.images.length === 0) throw new Error(`Job ${job.id} produced no image`);
    // Discord hides an attachment whose name starts with SPOILER_ until it is clicked.
    const { shown, files } = await pictureFiles(result.images, { seed: result.seed, spoiler, limit: message.attachmentLimit });
    // Every picture gets its U and V, except an upscale's: it is the end of that line (2× again would pass the
    // model's sizes), and 🔁 still rolls it again.
    const buttons = job.kind === 'upscale' ? undefined : pictureButtonRows(job.id, result.images.length);
    return renderFinal({
      params: job.params,
      result,
      image: shown,
      ...(files.length > 1 ? { files } : {}),
      jobId: job.id,
      headline: headlineOf(job),
      ...(buttons ? { buttons } : {}),
      ...(spoiler ? { spoilerWarning: SPOILER_WARNING } : {}),
    });
  }
}

/** The line above a follow-up's picture: what it was made from and for whom (echoed with mentions disabled). */
function headlineOf(job: JobRecord): string | undefined {
  const picture = job.sourcePicture === undefined ? '' : ` picture ${job.sourcePicture + 1}`;
  switch (job.kind) {
    case 'reroll':
      return `🔁 Rerolled for <@${job.userId}>`;
    case 'upscale':
      return `🔍 Upscaled${picture} 2× for <@${job.userId}>`;
    case 'variation':
      return `🎲 Variations of${picture} for <@${job.userId}>`;
    case 'imagine':
      return undefined;
  }
}
