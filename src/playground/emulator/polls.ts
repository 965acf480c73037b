/** The emulator's `waitUntil` polls, which `close()` rejects at once. */
export class Polls {
  readonly #polls = new Set<{ timer: NodeJS.Timeout; reject: (error: Error) => void }>();

  /** Resolves once `predicate()` holds, checked every 10 ms; rejects with `description` after `timeoutMs`. */
  waitUntil(predicate: () => boolean, timeoutMs: number, description: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    return new Promise((resolve, reject) => {
      const poll = { timer: setTimeout(() => check(), 0), reject };
      this.#polls.add(poll);
      const check = () => {
        if (predicate()) {
          this.#polls.delete(poll);
          return resolve();
        }
        if (Date.now() > deadline) {
          this.#polls.delete(poll);
          return reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${description}`));
        }
        poll.timer = setTimeout(check, 10);
      };
    });
  }

  /** Clears every pending poll and rejects it: the emulator was closed. */
  close(): void {
    for (const poll of this.#polls) {
      clearTimeout(poll.timer);
      poll.reject(new Error('The Discord emulator was closed while waiting'));
    }
    this.#polls.clear();
  }
}
