/**
 * The bot's own reactions on a job's messages: ❌ while the job can be cancelled, taken back at its end, and 🔁
 * on the picture. Every call goes through the channel's paced line (reaction-lanes.ts); reactions are a
 * courtesy, so a failure (no Add Reactions permission) is logged, never thrown.
 */
import { Routes, type REST } from 'discord.js';
import type { Logger } from '../log.js';
import type { JobMessage } from './job-message.js';
import { ReactionLanes } from './reaction-lanes.js';

export const REROLL_EMOJI = '🔁';
export const CANCEL_EMOJI = '❌';

function ownReaction(channelId: string, messageId: string, emoji: string) {
  return Routes.channelMessageOwnReaction(channelId, messageId, encodeURIComponent(emoji));
}

export class BotReactions {
  private readonly lanes: ReactionLanes;

  constructor(
    private readonly rest: REST,
    private readonly logger: Logger,
    gapMs?: number,
  ) {
    this.lanes = new ReactionLanes(gapMs);
  }

  /** Offers ❌ once per message, without holding up the progress edit that called it. */
  offerCancel(message: JobMessage, messageId: string): void {
    if (message.cancelOffered.has(messageId)) return;
    message.cancelOffered.add(messageId);
    const { channelId, id: jobId } = message.job;
    void this.lanes
      .run(channelId, () => {
        if (message.ended) return undefined;
        return this.rest.put(ownReaction(channelId, messageId, CANCEL_EMOJI)).then(() => {
          message.cancelAdded.add(messageId);
        });
      })
      .catch((error: unknown) => this.logger.warn(`could not add ${CANCEL_EMOJI}`, { jobId, messageId, error }));
  }

  /**
   * Takes back this bot's ❌ once the job has ended. The removals wait in the channel's line behind the adds,
   * so each knows whether its add happened; an ❌ never added costs no call. `ownMessageId` is the job's own
   * message, which after a restart may carry the previous run's ❌ though nothing was offered in this one.
   */
  takeBackCancel(message: JobMessage, ownMessageId: string | undefined): void {
    message.ended = true;
    const targets = new Set(message.cancelOffered);
    if (ownMessageId) targets.add(ownMessageId);
    const { channelId, id: jobId } = message.job;
    for (const messageId of targets) {
      const offered = message.cancelOffered.has(messageId);
      void this.lanes
        .run(channelId, () => {
          if (offered && !message.cancelAdded.has(messageId)) return undefined;
          return this.rest.delete(ownReaction(channelId, messageId, CANCEL_EMOJI));
        })
        .catch((error: unknown) => this.logger.warn(`could not remove ${CANCEL_EMOJI}`, { jobId, error }));
    }
  }

  /** Adds `emoji` in the channel's line; resolves when done or failed (logged). */
  async react(channelId: string, messageId: string, emoji: string): Promise<void> {
    try {
      await this.lanes.run(channelId, () => this.rest.put(ownReaction(channelId, messageId, emoji)));
    } catch (error) {
      this.logger.warn(`could not add ${emoji}`, { channelId, messageId, error });
    }
  }
}
