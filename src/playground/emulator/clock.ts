/**
 * The emulator's notion of "now" for Discord's interaction deadlines (3 s first response,
 * 15 min token). Tests move it forward with {@link EmulatorClock.advance} instead of waiting;
 * rate-limit windows deliberately stay on the real clock because discord.js sleeps in real time.
 */
export class EmulatorClock {
  #offsetMs = 0;

  /** Milliseconds since the Unix epoch, shifted by every `advance()` so far. */
  now(): number {
    return Date.now() + this.#offsetMs;
  }

  /** Moves the clock forward; negative values are refused because deadlines only ever pass. */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) {
      throw new RangeError(`Expected \`ms\` to be a finite number of milliseconds >= 0, got \`${ms}\``);
    }
    this.#offsetMs += ms;
  }
}
