/**
 * Refusals to reactions are posted in the channel (a reaction has no ephemeral answer), so a member toggling 🔁
 * could make the bot post again and again and spend the channel's send budget. This lets one notice through per
 * key (member and message) per window; the rest are dropped.
 */
export class NoticeThrottle {
  private readonly last = new Map<string, number>();

  /**
   * @param windowMs at most one notice per key in this many milliseconds. Default 60 000.
   * @param now clock (tests).
   */
  constructor(
    private readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** True when a notice for `key` may be sent now (and records it); false while the key's window is open. */
  allow(key: string): boolean {
    const now = this.now();
    const previous = this.last.get(key);
    if (previous !== undefined && now - previous < this.windowMs) return false;
    // Keep the map bounded: forget keys whose window has closed.
    if (this.last.size >= 1000) {
      for (const [other, at] of this.last) if (now - at >= this.windowMs) this.last.delete(other);
    }
    this.last.set(key, now);
    return true;
  }
}
