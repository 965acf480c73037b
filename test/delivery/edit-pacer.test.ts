import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EditPacer } from '../../src/delivery/edit-pacer.js';

interface Sent {
  state: string;
  at: number;
}

function makePacer(options: { sendMs?: number; fail?: (state: string) => boolean } = {}) {
  const sent: Sent[] = [];
  const errors: unknown[] = [];
  let concurrent = 0;
  let maxConcurrent = 0;
  const pacer = new EditPacer<string>({
    intervalMs: 1500,
    keyOf: (state) => state.replace(/#.*/, ''),
    onError: (error) => errors.push(error),
    send: async (state) => {
      concurrent += 1;
      maxConcurrent = Math.max(maxConcurrent, concurrent);
      sent.push({ state, at: Date.now() });
      await new Promise((resolve) => setTimeout(resolve, options.sendMs ?? 100));
      concurrent -= 1;
      if (options.fail?.(state)) throw new Error(`failed ${state}`);
    },
  });
  return { pacer, sent, errors, maxConcurrent: () => maxConcurrent };
}

describe('EditPacer', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(0);
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('GIVEN one state per 100 ms for 10 s THEN edits are ≥ 1.5 s apart, one at a time, latest wins', async () => {
    const { pacer, sent, maxConcurrent } = makePacer();
    for (let step = 1; step <= 100; step++) {
      pacer.push(`step ${step}`);
      await vi.advanceTimersByTimeAsync(100);
    }
    await vi.advanceTimersByTimeAsync(3000);
    expect(sent.length).toBeGreaterThanOrEqual(6);
    expect(sent.length).toBeLessThanOrEqual(8);
    for (let i = 1; i < sent.length; i++) expect(sent[i]!.at - sent[i - 1]!.at).toBeGreaterThanOrEqual(1500);
    expect(maxConcurrent()).toBe(1);
    expect(sent[0]!.state).toBe('step 1');
    // The last state offered is the last one shown: nothing stale arrives after it.
    expect(sent.at(-1)!.state).toBe('step 100');
  });

  it('GIVEN a state that renders like the last one sent THEN it is skipped', async () => {
    const { pacer, sent } = makePacer();
    pacer.push('place 2#a');
    await vi.advanceTimersByTimeAsync(2000);
    pacer.push('place 2#b');
    await vi.advanceTimersByTimeAsync(2000);
    pacer.push('place 1#c');
    await vi.advanceTimersByTimeAsync(2000);
    expect(sent.map((s) => s.state)).toEqual(['place 2#a', 'place 1#c']);
  });

  it('GIVEN a slow edit (a 429 being waited out) THEN the next waits for it, never overlapping', async () => {
    const { pacer, sent, maxConcurrent } = makePacer({ sendMs: 5000 });
    pacer.push('a');
    await vi.advanceTimersByTimeAsync(10);
    pacer.push('b');
    pacer.push('c');
    await vi.advanceTimersByTimeAsync(20_000);
    expect(sent.map((s) => s.state)).toEqual(['a', 'c']);
    expect(sent[1]!.at).toBeGreaterThanOrEqual(5000);
    expect(maxConcurrent()).toBe(1);
  });

  it('GIVEN finish THEN pending progress is dropped and the final edit goes once the edit in flight is done', async () => {
    const { pacer, sent } = makePacer();
    pacer.push('step 1');
    await vi.advanceTimersByTimeAsync(200);
    pacer.push('step 2');
    const done = pacer.finish('final');
    pacer.push('step 3'); // late progress after the end is ignored
    await vi.advanceTimersByTimeAsync(5000);
    await done;
    expect(sent.map((s) => s.state)).toEqual(['step 1', 'final']);
    // The message has used 1 edit of its 5 per 5 s: the picture does not wait out the 1.5 s smoothing.
    expect(sent[1]!.at).toBeLessThan(300);
  });

  it('GIVEN the message used its burst (5 edits in 5 s) THEN the final edit waits for room in the window', async () => {
    const sent: Sent[] = [];
    const pacer = new EditPacer<string>({
      intervalMs: 0,
      keyOf: (state) => state,
      send: async (state) => {
        sent.push({ state, at: Date.now() });
        await new Promise((resolve) => setTimeout(resolve, 10));
      },
    });
    for (let i = 1; i <= 5; i++) {
      pacer.push(`step ${i}`);
      await vi.advanceTimersByTimeAsync(100);
    }
    expect(sent).toHaveLength(5);
    const done = pacer.finish('final');
    await vi.advanceTimersByTimeAsync(6000);
    await done;
    const final = sent.at(-1)!;
    expect(final.state).toBe('final');
    // Never more than 5 edits in any 5 s.
    for (let i = 5; i < sent.length; i++) expect(sent[i]!.at - sent[i - 5]!.at).toBeGreaterThanOrEqual(5000);
  });

  it('GIVEN a failing progress edit THEN it is reported and later edits go on; a failing final rejects', async () => {
    const { pacer, sent, errors } = makePacer({ fail: (state) => state === 'bad' || state === 'final' });
    pacer.push('bad');
    await vi.advanceTimersByTimeAsync(2000);
    pacer.push('good');
    await vi.advanceTimersByTimeAsync(2000);
    expect(errors).toHaveLength(1);
    expect(sent.map((s) => s.state)).toEqual(['bad', 'good']);
    const final = pacer.finish('final');
    const assertion = expect(final).rejects.toThrow('failed final');
    await vi.advanceTimersByTimeAsync(2000);
    await assertion;
  });
});
