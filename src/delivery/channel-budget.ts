/**
 * Edits per channel in a sliding minute. Discord limits message edits per channel as well as per message
 * (about 30 a minute, unpublished: see the reference notes), so with many jobs waiting in one channel their
 * progress edits share this budget. Progress waits for room; last edits (the picture, "cancelled") never wait
 * but are counted.
 */
export class ChannelBudget {
  private readonly sent = new Map<string, number[]>();

  /**
   * @param perMinute Edits per channel per `windowMs`; 0 turns the budget off.
   * @param windowMs The sliding window. Default 60 000.
   */
  constructor(
    private readonly perMinute: number,
    private readonly windowMs = 60_000,
  ) {
    if (!Number.isInteger(perMinute) || perMinute < 0) {
      throw new RangeError(`Expected \`perMinute\` to be an integer ≥ 0, got \`${perMinute}\``);
    }
  }

  /** Waits until the channel has room, then counts one edit. Returns early, counting nothing, if `signal` aborts. */
  async take(channelId: string, signal?: AbortSignal): Promise<void> {
    if (this.perMinute === 0) return;
    for (;;) {
      if (signal?.aborted) return;
      const recent = this.recent(channelId);
      if (recent.length < this.perMinute) {
        recent.push(Date.now());
        return;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, recent[0]! + this.windowMs - Date.now() + 1);
        signal?.addEventListener('abort', done, { once: true });
        function done() {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          resolve();
        }
      });
    }
  }

  /** Counts an edit that does not wait. */
  note(channelId: string): void {
    if (this.perMinute === 0) return;
    this.recent(channelId).push(Date.now());
  }

  private recent(channelId: string): number[] {
    const since = Date.now() - this.windowMs;
    const list = (this.sent.get(channelId) ?? []).filter((at) => at > since);
    this.sent.set(channelId, list);
    return list;
  }
}
