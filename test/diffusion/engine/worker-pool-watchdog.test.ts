/**
 * The pool's stuck-worker watchdog and its bounded close, with a UNet that spends seconds inside one native
 * call (test/fixtures/build-slow-unet.py): an abort cannot reach the worker until that call returns.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { parseConfig } from '../../../src/config.js';
import { silentLogger } from '../../../src/log.js';
import { createEngine } from '../../../src/diffusion/engine/create.js';
import { StuckWatchdog } from '../../../src/diffusion/engine/stuck-watchdog.js';
import type { WorkerHandle } from '../../../src/diffusion/engine/worker-handle.js';
import { createWorkerPool, type WorkerPool } from '../../../src/diffusion/engine/worker-pool.js';
import type { GenerateParams, ImageEngine, StepProgress } from '../../../src/diffusion/types.js';

const MODELS = join(import.meta.dirname, '..', '..', 'fixtures', 'models');
const temp = mkdtempSync(join(tmpdir(), 'imagine-pool-watchdog-'));
// sd-tiny with the slow UNet: 64 px steps take milliseconds, one 256 px UNet call takes seconds.
const SLOW = join(temp, 'slow');
cpSync(join(MODELS, 'sd-tiny'), SLOW, { recursive: true });
cpSync(join(MODELS, 'slow-unet', 'unet', 'model.onnx'), join(SLOW, 'unet', 'model.onnx'));

// Shaped like a real token (id.timestamp.hmac) but not one: parseConfig wants one.
const TOKEN = 'MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB';
const quick: GenerateParams = { prompt: 'a green triangle', steps: 1, seed: 7, guidanceScale: 7.5, scheduler: 'euler' };
// Two UNet calls of seconds each: after step 1's progress the worker is inside step 2's call.
const slow: GenerateParams = { ...quick, steps: 2, width: 256, height: 256 };

const engines: ImageEngine[] = [];
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
  rmSync(temp, { recursive: true, force: true });
});

async function pool(options: Partial<Parameters<typeof createWorkerPool>[0]> = {}): Promise<{ pool: WorkerPool; logs: string[] }> {
  const logs: string[] = [];
  const p = await createWorkerPool({ modelDir: SLOW, log: (l) => logs.push(l), ...options });
  engines.push(p);
  return { pool: p, logs };
}

/** Resolves at the first progress call: step 1 is done and the worker has gone on into step 2's UNet call. */
function firstProgress(): { onProgress: (p: StepProgress) => void; started: Promise<void> } {
  let resolve!: () => void;
  const started = new Promise<void>((r) => (resolve = r));
  return { onProgress: () => resolve(), started };
}

describe('WorkerPool with a UNet call of seconds', () => {
  it('GIVEN an aborted job whose worker stays in one model call past stuckAfterMs THEN a fresh worker serves the next job and the stuck one is ended when its call returns', async () => {
    const { pool: p, logs } = await pool({ stuckAfterMs: 200 });
    const [stuck] = p.stats().threadIds;
    const controller = new AbortController();
    const { onProgress, started } = firstProgress();
    const running = p.generate(slow, { signal: controller.signal, onProgress });
    await started;
    controller.abort();
    await expect(running).rejects.toMatchObject({ identifier: 'cancelled' });

    // Replaced, not terminated: terminating a thread inside an onnxruntime call aborts the process when it returns.
    await vi.waitFor(() => expect(p.stats().stuckThreadIds).toEqual([stuck]), { timeout: 5_000, interval: 50 });
    const [fresh] = p.stats().threadIds;
    expect(fresh).not.toBe(stuck);
    expect(p.health().restarts).toBe(1);
    const next = await p.generate(quick);
    expect(next.images).toHaveLength(1);

    await vi.waitFor(() => expect(p.stats().stuckThreadIds).toEqual([]), { timeout: 60_000, interval: 100 });
    expect(p.stats().threadIds).toEqual([fresh]);
    expect(logs.some((l) => /stuck in one model call/.test(l))).toBe(true);
    expect(logs.some((l) => new RegExp(`thread ${stuck}\\b.*ended`).test(l))).toBe(true);
  });

  it('GIVEN a worker stuck in a model call THEN close() resolves within its bound and the thread is ended when the call returns', async () => {
    const { pool: p } = await pool();
    const { onProgress, started } = firstProgress();
    const running = p.generate(slow, { onProgress }).catch((e: unknown) => e);
    await started;
    const t0 = performance.now();
    await p.close({ timeoutMs: 300 });
    expect(performance.now() - t0).toBeLessThan(1_500);
    // Still inside its call when close() returned: the bound, not the call, decided when close resolved.
    expect(p.stats().stuckThreadIds).toHaveLength(1);
    expect(p.stats().threadIds).toEqual([]);
    expect(await running).toMatchObject({ identifier: 'shuttingDown' });
    await vi.waitFor(() => expect(p.stats().stuckThreadIds).toEqual([]), { timeout: 60_000, interval: 100 });
  });

  it('GIVEN the engine built from a config with a 1 s job timeout THEN a 256 px job of several seconds still finishes: the queue owns the timeout', async () => {
    const config = parseConfig({ DISCORD_TOKEN: TOKEN, MODEL_DIR: SLOW, JOB_TIMEOUT_SECONDS: '1' });
    const engine = await createEngine(config, silentLogger);
    engines.push(engine);
    const t0 = performance.now();
    const result = await engine.generate({ ...slow, steps: 1 });
    expect(performance.now() - t0).toBeGreaterThan(1_000);
    expect(result.width).toBe(256);
  });
});

/** What the watchdog uses of a worker handle, with no thread behind it. */
function fakeHandle(threadId: number) {
  let resolveEnded!: () => void;
  const ended = new Promise<void>((resolve) => (resolveEnded = resolve));
  const handle = { threadId, busy: true, ended, ends: 0, end: () => void handle.ends++ };
  /** Its model call returns and the thread ends. */
  const comeBack = () => {
    handle.busy = false;
    resolveEnded();
  };
  return { handle, asHandle: handle as unknown as WorkerHandle, comeBack };
}

describe('StuckWatchdog', () => {
  it('GIVEN one slot whose replaced worker is still stuck THEN a second stuck worker keeps the slot until the first has ended (the model is held at most twice per slot)', async () => {
    vi.useFakeTimers();
    try {
      const [a, b, c] = [fakeHandle(1), fakeHandle(2), fakeHandle(3)];
      const slots = [a.asHandle];
      const fresh = [b.asHandle, c.asHandle];
      const logs: string[] = [];
      const watchdog = new StuckWatchdog({
        stuckAfterMs: 1_000,
        slots: 1,
        log: (line) => logs.push(line),
        slotOf: (handle) => slots.indexOf(handle),
        replace: (slot) => (slots[slot] = fresh.shift()!),
      });

      watchdog.watch(a.asHandle);
      await vi.advanceTimersByTimeAsync(999);
      expect(slots).toEqual([a.asHandle]);
      await vi.advanceTimersByTimeAsync(1);
      expect(slots).toEqual([b.asHandle]);
      expect([...watchdog.stuck]).toEqual([a.asHandle]);
      expect(a.handle.ends).toBe(1);

      watchdog.watch(b.asHandle);
      await vi.advanceTimersByTimeAsync(1_000);
      expect(slots).toEqual([b.asHandle]);
      expect(b.handle.ends).toBe(0);
      expect(logs.at(-1)).toMatch(/not replacing it yet/);

      a.comeBack();
      await vi.advanceTimersByTimeAsync(1_000);
      expect([...watchdog.stuck]).toEqual([b.asHandle]);
      expect(slots).toEqual([c.asHandle]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('GIVEN the worker comes back before stuckAfterMs THEN it keeps its slot', async () => {
    vi.useFakeTimers();
    try {
      const a = fakeHandle(1);
      const slots = [a.asHandle];
      const watchdog = new StuckWatchdog({ stuckAfterMs: 1_000, slots: 1, log: () => undefined, slotOf: (h) => slots.indexOf(h), replace: () => expect.fail('replaced') });
      watchdog.watch(a.asHandle);
      await vi.advanceTimersByTimeAsync(500);
      watchdog.forget(a.asHandle);
      await vi.advanceTimersByTimeAsync(1_000);
      expect(a.handle.ends).toBe(0);
      expect(watchdog.stuck.size).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
