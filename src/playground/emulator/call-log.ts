import type { IncomingHttpHeaders } from 'node:http';
import type { UploadedFile } from './multipart.js';

/** One REST request the emulator answered, with what it answered. */
export interface RecordedCall {
  /** 1-based order of arrival. */
  seq: number;
  /** Real time the request finished, ms since the epoch. */
  at: number;
  method: string;
  /** Route template, e.g. `/webhooks/:applicationId/:token/messages/:messageId`; `(unknown)` when no route matched. */
  route: string;
  /** Path below `/api/v10`, URL-decoded per segment (so `%40original` reads `@original`). */
  path: string;
  params: Record<string, string>;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  /** The JSON body, or the `payload_json` of a multipart body. */
  body: any;
  files: UploadedFile[];
  multipart: boolean;
  /** HTTP status answered. */
  status: number;
  /** JSON answered, undefined for 204. */
  response: any;
  /** Headers answered (rate-limit headers included), lower-case names. */
  responseHeaders: Record<string, string>;
}

type Waiter = {
  predicate: (call: RecordedCall) => boolean;
  resolve: (call: RecordedCall) => void;
  reject: (error: Error) => void;
};

/** The list of every REST call, and promises that wait for one to arrive. */
export class CallLog {
  readonly calls: RecordedCall[] = [];
  #waiters = new Set<Waiter>();

  add(call: RecordedCall): void {
    this.calls.push(call);
    for (const waiter of [...this.#waiters]) {
      if (waiter.predicate(call)) {
        this.#waiters.delete(waiter);
        waiter.resolve(call);
      }
    }
  }

  /**
   * Resolves with the first call, past or future, that matches; rejects after `timeoutMs`
   * with the last calls in the message so a failing test says what did arrive.
   */
  waitFor(predicate: (call: RecordedCall) => boolean, timeoutMs = 10_000, description = 'a matching REST call'): Promise<RecordedCall> {
    const found = this.calls.find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        predicate,
        resolve: (call) => {
          clearTimeout(timer);
          resolve(call);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${description}; last calls:\n${this.describeLast(10)}`));
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  /** Resolves with the first `count` matching calls once that many have arrived. */
  async waitForCount(predicate: (call: RecordedCall) => boolean, count: number, timeoutMs = 10_000): Promise<RecordedCall[]> {
    // Every call is in `this.calls` before waiters run, so counting the whole list is exact.
    await this.waitFor(() => this.calls.filter(predicate).length >= count, timeoutMs, `${count} matching REST calls`);
    return this.calls.filter(predicate).slice(0, count);
  }

  /** Rejects every pending wait, so nothing keeps a timer alive after the emulator closed. */
  close(): void {
    for (const waiter of this.#waiters) waiter.reject(new Error('The Discord emulator was closed while waiting for a REST call'));
    this.#waiters.clear();
  }

  describeLast(n: number): string {
    return this.calls
      .slice(-n)
      .map((c) => `  #${c.seq} ${c.method} ${c.path} → ${c.status}`)
      .join('\n');
  }
}
