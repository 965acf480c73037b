/**
 * The bot's own reactions (❌ on a live job, 🔁 on a picture), paced as Discord allows them: about one reaction
 * call per 250 ms per channel, add and remove together (discord.js buckets the two routes apart, so it cannot
 * pace them itself). Each channel has its own line; channels do not wait for each other.
 *
 * A call may decline when its turn comes (return `undefined`): an ❌ for a job that ended while it waited is not
 * worth a call, nor is taking back an ❌ that was never added. A burst of short jobs then does not queue minutes
 * of pointless calls in front of the next picture's 🔁.
 */

/** Discord's reaction limit is about one per 250 ms per channel; a little slack avoids 429s at the edge. */
export const REACTION_GAP_MS = 300;

export class ReactionLanes {
  private readonly lanes = new Map<string, Promise<void>>();

  /** @param gapMs pause after each call that was made, per channel. Default REACTION_GAP_MS. */
  constructor(private readonly gapMs = REACTION_GAP_MS) {}

  /**
   * Runs `call` in the channel's line once the calls before it are done. `call` returns undefined to decline
   * (no request made, no pause). Resolves when this call is done; rejects with its error (the line goes on).
   */
  run(channelId: string, call: () => Promise<unknown> | undefined): Promise<void> {
    const previous = this.lanes.get(channelId) ?? Promise.resolve();
    const done = previous.then(async () => {
      const request = call();
      if (request === undefined) return;
      try {
        await request;
      } finally {
        await new Promise((resolve) => setTimeout(resolve, this.gapMs));
      }
    });
    const tail = done.catch(() => {});
    this.lanes.set(channelId, tail);
    // Forget an idle channel, so the map holds only channels with calls in flight.
    void tail.then(() => {
      if (this.lanes.get(channelId) === tail) this.lanes.delete(channelId);
    });
    return done;
  }

  /** Channels with calls waiting or running (tests, metrics). */
  get busyChannels(): number {
    return this.lanes.size;
  }
}
