/**
 * When the ShardingManager starts an exited shard again, and when it stops trying. A shard that dies now and then (a
 * crash after hours) is started again after a short pause, every time. A shard that dies at start every time (a
 * port in use, a broken DATA_DIR) would otherwise be forked in a tight loop forever, flooding the log and the
 * gateway's IDENTIFY budget: its pauses double, and after too many exits in a short window it is given up on, so the
 * owner sees one clear line (and, with no shard left, the manager exits non-zero for its supervisor).
 */

export interface ShardRestartPolicy {
  readonly firstDelayMs: number;
  readonly maxDelayMs: number;
  readonly maxExits: number;
  readonly windowMs: number;
}

/** The numbers of the restart policy, in one place (the README's scale-out section quotes them). */
export const SHARD_RESTARTS: ShardRestartPolicy = Object.freeze({
  /** Pause before starting a shard again after its first exit in the window. */
  firstDelayMs: 1_000,
  /** Each further exit within the window doubles the pause, up to this. */
  maxDelayMs: 30_000,
  /** A shard that exits this many times within `windowMs` is not started again. */
  maxExits: 5,
  /** Exits older than this are forgotten: a shard that dies once an hour is always restarted after `firstDelayMs`. */
  windowMs: 5 * 60_000,
});

export type RestartDecision =
  | { readonly action: 'restart'; readonly delayMs: number; readonly exitsInWindow: number }
  | { readonly action: 'give-up'; readonly exitsInWindow: number };

/** One shard's recent exits, and what to do about the latest. */
export class ShardExits {
  private readonly times: number[] = [];

  constructor(private readonly policy: ShardRestartPolicy = SHARD_RESTARTS) {}

  /** Records an exit at `now` (ms) and decides: start the shard again after `delayMs`, or give up on it. */
  record(now: number): RestartDecision {
    this.times.push(now);
    while (this.times.length > 0 && now - this.times[0]! >= this.policy.windowMs) this.times.shift();
    const exitsInWindow = this.times.length;
    if (exitsInWindow >= this.policy.maxExits) return { action: 'give-up', exitsInWindow };
    const delayMs = Math.min(this.policy.firstDelayMs * 2 ** (exitsInWindow - 1), this.policy.maxDelayMs);
    return { action: 'restart', delayMs, exitsInWindow };
  }
}
