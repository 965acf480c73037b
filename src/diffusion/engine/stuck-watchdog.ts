/**
 * When a worker counts as stuck, and what then: the one place for that policy (worker-pool.ts asks it).
 *
 * A worker is watched once no caller waits on its run any more (every job of it was aborted: the queue's timeout,
 * a cancel). If it has not come back `stuckAfterMs` later, it is inside one model call that the abort cannot
 * reach; it is taken out of its slot, a fresh worker takes its place so the pool keeps its capacity, and the stuck
 * one is ended when the call returns (never inside it: see worker-handle.ts). At most one stuck worker per slot
 * is alive at a time, so the pool holds the model at most twice per slot; beyond that a stuck worker keeps its
 * slot until it comes back.
 */
import type { WorkerHandle } from './worker-handle.js';

export interface StuckWatchdogOptions {
  /** How long a watched worker may take to come back. */
  stuckAfterMs: number;
  /** Worker slots in the pool: the most stuck workers kept alive at once. */
  slots: number;
  log: (line: string) => void;
  /** The handle's slot, or -1 when it no longer has one. */
  slotOf: (handle: WorkerHandle) => number;
  /** Put a fresh worker in this slot (the stuck one has been taken out and will end by itself). */
  replace: (slot: number) => void;
}

export class StuckWatchdog {
  /** Workers out of their slot and still inside a model call (stuck, or shut down by close()). */
  readonly stuck = new Set<WorkerHandle>();
  private readonly timers = new Map<WorkerHandle, NodeJS.Timeout>();

  constructor(private readonly options: StuckWatchdogOptions) {}

  /** No caller waits on the handle's run any more: replace it if it is not back in time. */
  watch(handle: WorkerHandle): void {
    if (this.timers.has(handle)) return;
    const timer = setTimeout(() => {
      this.timers.delete(handle);
      const slot = this.options.slotOf(handle);
      if (!handle.busy || slot < 0) return;
      if (this.stuck.size >= this.options.slots) {
        this.options.log(`imagine: image worker ${slot} is stuck in one model call, but ${this.stuck.size} replaced worker(s) still are too; not replacing it yet`);
        this.watch(handle);
        return;
      }
      const { threadId } = handle;
      this.options.log(
        `imagine: image worker ${slot} (thread ${threadId}) is stuck in one model call ${Math.round(this.options.stuckAfterMs / 1000)} s after its jobs were aborted; starting a fresh worker in its place`,
      );
      void handle.ended.then(() => this.options.log(`imagine: the stuck image worker thread ${threadId} came back from its model call and has ended`));
      this.retire(handle);
      this.options.replace(slot);
    }, this.options.stuckAfterMs);
    this.timers.set(handle, timer);
  }

  /** The handle's run has ended (or the worker died): nothing to watch. */
  forget(handle: WorkerHandle): void {
    clearTimeout(this.timers.get(handle));
    this.timers.delete(handle);
  }

  /** Out of its slot: end the handle's thread as soon as its run returns, and count it until then. */
  retire(handle: WorkerHandle): void {
    this.forget(handle);
    this.stuck.add(handle);
    handle.end();
    void handle.ended.then(() => this.stuck.delete(handle));
  }

  /** Watch nothing more (the pool is closing). */
  stop(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }
}
