/**
 * Paces the edits of one message. Discord allows about five edits per five seconds per message (unpublished;
 * see the reference notes), and a progress bar that edits per step would hit 429 at once on a fast engine.
 * So: at most one edit in flight; progress edits at least `intervalMs` apart (from the end of one, a 429 waited
 * out included, to the start of the next), the latest state winning (intermediate ones are dropped, never
 * queued), and a state that renders the same as the last one skipped. The last edit (the picture) does not wait
 * out that smoothing interval: it goes as soon as the edit in flight is done, unless the message has used its
 * burst (`burst` edits in `windowMs`), so a picture made in 0.2 s is shown in about that.
 */

export interface EditPacerOptions<T> {
  /** Performs one edit. A rejected progress edit goes to `onError` and is otherwise dropped. */
  send: (state: T) => Promise<void>;
  /** What the member would see; a state whose key equals the last one sent is skipped. */
  keyOf: (state: T) => string;
  /** Minimum milliseconds from the end of one edit to the start of the next. Default 1500. */
  intervalMs?: number;
  /** Told about failed progress edits (the final edit rejects its own promise instead). Default: ignore. */
  onError?: (error: unknown) => void;
  /**
   * Awaited before each progress edit picks its state (e.g. a per-channel budget). Its signal aborts when the
   * pacer finishes or is disposed, so the last edit never waits behind it. Default: none.
   */
  beforeSend?: (signal: AbortSignal) => Promise<void>;
  /** Edits one message may take within `windowMs` (Discord: about 5 per 5 s). Default 5. */
  burst?: number;
  /** The sliding window for `burst`, in milliseconds. Default 5000. */
  windowMs?: number;
}

export class EditPacer<T> {
  private readonly send: (state: T) => Promise<void>;
  private readonly keyOf: (state: T) => string;
  private readonly intervalMs: number;
  private readonly onError: (error: unknown) => void;
  private readonly beforeSend: ((signal: AbortSignal) => Promise<void>) | undefined;
  private readonly closing = new AbortController();
  private pending: T | undefined;
  private inFlight: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastEndedAt = Number.NEGATIVE_INFINITY;
  private lastKey: string | undefined;
  private closed = false;
  private readonly burst: number;
  private readonly windowMs: number;
  /** Start times of the edits within the last window. */
  private readonly starts: number[] = [];
  /** Edits actually sent (progress and final). */
  sent = 0;

  constructor(options: EditPacerOptions<T>) {
    this.send = options.send;
    this.keyOf = options.keyOf;
    this.intervalMs = options.intervalMs ?? 1500;
    this.onError = options.onError ?? (() => {});
    this.beforeSend = options.beforeSend;
    this.burst = options.burst ?? 5;
    this.windowMs = options.windowMs ?? 5000;
  }

  /** Offers a progress state; it replaces any state not yet sent. Ignored after `finish` or `dispose`. */
  push(state: T): void {
    if (this.closed) return;
    this.pending = state;
    this.schedule();
  }

  /**
   * Sends the last state of this message: drops any pending progress, waits for the edit in flight and for the
   * interval, then sends `state`. Rejects if that edit fails, so the caller can fall back.
   */
  async finish(state: T): Promise<void> {
    await this.reserveLast();
    this.lastKey = this.keyOf(state);
    await this.send(state);
  }

  /**
   * For a last edit the caller makes itself (the final picture): drops pending progress, waits for the edit in
   * flight and, only if the message has used its burst, for room in the window; counts the caller's edit as
   * started now.
   */
  async reserveLast(): Promise<void> {
    this.closed = true;
    this.closing.abort();
    this.pending = undefined;
    this.clearTimer();
    await this.settle();
    const wait = this.burstWait();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    this.noteStart();
    this.sent += 1;
  }

  /** Milliseconds until one more edit fits in the burst window (0: now). */
  private burstWait(): number {
    const now = Date.now();
    while (this.starts.length > 0 && this.starts[0]! <= now - this.windowMs) this.starts.shift();
    if (this.starts.length < this.burst) return 0;
    return this.starts[this.starts.length - this.burst]! + this.windowMs - now + 1;
  }

  private noteStart(): void {
    this.starts.push(Date.now());
  }

  /** Resolves when no edit is in flight (progress edits still pending are not waited for). */
  async settle(): Promise<void> {
    while (this.inFlight) await this.inFlight;
  }

  /** Stops without a final edit: pending progress is dropped. */
  dispose(): void {
    this.closed = true;
    this.closing.abort();
    this.pending = undefined;
    this.clearTimer();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.inFlight || this.timer || this.pending === undefined) return;
    const wait = Math.max(this.lastEndedAt + this.intervalMs - Date.now(), this.burstWait());
    if (wait <= 0) this.run();
    else this.timer = setTimeout(() => this.run(), wait);
  }

  private run(): void {
    this.timer = undefined;
    if (this.pending === undefined || this.closed) return;
    this.inFlight = this.runOne()
      .catch((error: unknown) => this.onError(error))
      .finally(() => {
        this.lastEndedAt = Date.now();
        this.inFlight = undefined;
        this.schedule();
      });
  }

  private async runOne(): Promise<void> {
    // A shared budget (the channel's) may hold this edit back; states that arrive meanwhile replace the pending
    // one, so what is sent after the wait is the latest.
    if (this.beforeSend) await this.beforeSend(this.closing.signal);
    const state = this.pending;
    this.pending = undefined;
    if (state === undefined || this.closed) return;
    const key = this.keyOf(state);
    if (key === this.lastKey) return;
    this.lastKey = key;
    this.sent += 1;
    this.noteStart();
    await this.send(state);
  }
}
