/**
 * The gate of an image worker: one run at a time in the process (one GPU), whichever model's ticket it came from.
 * Each served model's BullMQ worker holds at most one ticket waiting here. When a worker serves several models
 * and its engine keeps only some loaded, taking tickets in arrival order makes two models that alternate in the
 * queues cost a load on every run; so the gate asks model-affinity.ts's rule (its one owner) which run goes next:
 *
 * - when a run ends, it may go on with its own model (loaded: it just ran) under the same ticket, before the
 *   waiting tickets whose models would need a load (that model's later ticket then finds its run already made);
 * - when the gate frees, a waiting ticket whose model is loaded may start before those that arrived earlier.
 *
 * In both cases each waiting ticket is passed over at most MAX_PASSES times, as in the embedded queue. The order
 * within one model stays the fair order in Redis: the gate only chooses which model's next run comes first.
 */
import { preferredStart } from '../queue/model-affinity.js';

interface WaitingTicket {
  model: string;
  /** Runs that started before it although it was waiting (model-affinity.ts's passes). */
  passes: number;
  start: () => void;
}

/** One run at a time; which waiting ticket runs next, and whether a run goes on, is model-affinity.ts's choice. */
export class RunGate {
  private busy = false;
  /** In arrival order. */
  private readonly waiting: WaitingTicket[] = [];

  /**
   * @param loaded Whether the engine holds `model` now (ImageEngine.modelLoaded). Undefined: no preference,
   *   tickets run in arrival order and a run never goes on.
   */
  constructor(private readonly loaded?: (model: string) => boolean) {}

  /** Run `work` (a ticket of `model`) once the gate is free and the rule picks it; the gate frees when it settles. */
  async run<T>(model: string, work: () => Promise<T>): Promise<T> {
    if (this.busy) await new Promise<void>((start) => this.waiting.push({ model, passes: 0, start }));
    else this.busy = true;
    try {
      return await work();
    } finally {
      this.handOn();
    }
  }

  /**
   * Whether the run that just ended for `model` should go on with another run of it before the waiting tickets.
   * Undefined: no, hand the gate on. Otherwise the function to call once that run has really been taken: it
   * counts a pass for each ticket that was waiting when the rule was asked.
   */
  goOn(model: string): (() => void) | undefined {
    // Only a ticket waiting for a model that needs a load lets a run go on (an idle gate: BullMQ's order).
    if (this.loaded === undefined || this.waiting.length === 0) return undefined;
    const passed = [...this.waiting];
    const order = [...passed.map((ticket) => ({ loaded: this.loaded!(ticket.model), passes: ticket.passes })), { loaded: this.loaded(model), passes: 0 }];
    if (preferredStart(order) !== passed.length) return undefined;
    return () => {
      for (const ticket of passed) ticket.passes++;
    };
  }

  private handOn(): void {
    if (this.waiting.length === 0) {
      this.busy = false;
      return;
    }
    const loaded = this.loaded;
    const next =
      loaded === undefined ? 0 : preferredStart(this.waiting.map((ticket) => ({ loaded: loaded(ticket.model), passes: ticket.passes })));
    for (const ticket of this.waiting.slice(0, next)) ticket.passes++;
    const [ticket] = this.waiting.splice(next, 1);
    // `busy` stays true: the gate passes straight to the chosen ticket.
    ticket.start();
  }
}
