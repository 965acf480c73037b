/**
 * Edits per channel, in two windows. Discord limits message edits per channel as well as per message (about 30 a
 * minute, unpublished: see the reference notes), so with many jobs waiting in one channel their progress edits
 * share this budget. Channel messages (a 🔁's, a U's or V's, a reply past its token) have a tighter bucket too:
 * about five edits per five seconds in a channel (what bots observe; the emulator's `channel-message-edit` rule).
 * Progress keeps the last of those for last edits, or a progress bar takes the slot a picture needed and the
 * picture waits out the window (seen under a burst of V presses: tools/discord-emulator/v-burst.ts). Progress
 * waits for room; last edits (the picture, "cancelled") never wait but are counted.
 */

/** The short window progress must leave room in. */
export interface EditBurst {
  /** Edits Discord allows in a channel per `windowMs`. Default 5. */
  limit: number;
  /**
   * The window, in milliseconds, with slack: the bot counts an edit when it decides to send it, Discord when it
   * arrives, so a window a little longer than Discord's 5 s keeps the two from disagreeing at its edge. Default 5500.
   */
  windowMs: number;
  /** Edits of the window kept for last edits: progress takes room only while fewer than `limit − keepForLast`. Default 1. */
  keepForLast: number;
}

export const DEFAULT_EDIT_BURST: EditBurst = Object.freeze({ limit: 5, windowMs: 5_500, keepForLast: 1 });

/** One edit counted: when, and whether it went to a channel message (the short window counts only those). */
interface Sent {
  at: number;
  channelMessage: boolean;
}

export class ChannelBudget {
  private readonly sent = new Map<string, Sent[]>();
  private readonly keepMs: number;

  /**
   * @param perMinute Edits per channel per `windowMs`; 0 turns the budget off (both windows).
   * @param windowMs The sliding window. Default 60 000.
   * @param burst The short window progress leaves room in. Default {@link DEFAULT_EDIT_BURST}.
   */
  constructor(
    private readonly perMinute: number,
    private readonly windowMs = 60_000,
    private readonly burst: EditBurst = DEFAULT_EDIT_BURST,
  ) {
    if (!Number.isInteger(perMinute) || perMinute < 0) {
      throw new RangeError(`Expected \`perMinute\` to be an integer ≥ 0, got \`${perMinute}\``);
    }
    if (!Number.isInteger(burst.keepForLast) || burst.keepForLast < 0 || burst.keepForLast >= burst.limit) {
      throw new RangeError(`Expected \`burst.keepForLast\` to be an integer from 0 to ${burst.limit - 1}, got \`${burst.keepForLast}\``);
    }
    this.keepMs = Math.max(windowMs, burst.windowMs);
  }

  /**
   * Waits until the channel has room, then counts one edit. Returns early, counting nothing, if `signal` aborts.
   * @param channelMessage Whether the edit goes to a channel message (posts included) rather than an interaction's
   *   reply: then it must also fit the short window. Default true.
   */
  async take(channelId: string, signal?: AbortSignal, channelMessage = true): Promise<void> {
    if (this.perMinute === 0) return;
    for (;;) {
      if (signal?.aborted) return;
      const wait = this.waitFor(channelId, channelMessage);
      if (wait <= 0) {
        this.recent(channelId).push({ at: Date.now(), channelMessage });
        return;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, wait);
        signal?.addEventListener('abort', done, { once: true });
        function done() {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          resolve();
        }
      });
    }
  }

  /** Counts an edit that does not wait. @param channelMessage as for `take`. Default true. */
  note(channelId: string, channelMessage = true): void {
    if (this.perMinute === 0) return;
    this.recent(channelId).push({ at: Date.now(), channelMessage });
  }

  /** Milliseconds until a progress edit fits its windows (0 or less: now). */
  private waitFor(channelId: string, channelMessage: boolean): number {
    const now = Date.now();
    const recent = this.recent(channelId);
    const minute = recent.filter((s) => s.at > now - this.windowMs);
    const minuteWait = minute.length < this.perMinute ? 0 : minute[minute.length - this.perMinute]!.at + this.windowMs - now + 1;
    if (!channelMessage) return minuteWait;
    const short = recent.filter((s) => s.channelMessage && s.at > now - this.burst.windowMs);
    const room = this.burst.limit - this.burst.keepForLast;
    const shortWait = short.length < room ? 0 : short[short.length - room]!.at + this.burst.windowMs - now + 1;
    return Math.max(minuteWait, shortWait);
  }

  private recent(channelId: string): Sent[] {
    const since = Date.now() - this.keepMs;
    const list = (this.sent.get(channelId) ?? []).filter((s) => s.at > since);
    this.sent.set(channelId, list);
    return list;
  }
}
