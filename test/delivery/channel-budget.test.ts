import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ChannelBudget } from '../../src/delivery/channel-budget.js';

describe('ChannelBudget', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(0);
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('GIVEN 3 per minute THEN the 4th edit in a channel waits until the first leaves the window; other channels do not', async () => {
    const budget = new ChannelBudget(3);
    const grantedAt: Record<string, number[]> = { a: [], b: [] };
    const take = (channel: 'a' | 'b') => budget.take(channel).then(() => grantedAt[channel]!.push(Date.now()));
    await Promise.all([take('a'), take('a')]);
    await vi.advanceTimersByTimeAsync(10_000);
    budget.note('a'); // a final edit: counted, never waits
    const fourth = take('a');
    await take('b');
    await vi.advanceTimersByTimeAsync(49_000);
    expect(grantedAt.a).toEqual([0, 0]);
    await vi.advanceTimersByTimeAsync(2_000);
    await fourth;
    expect(grantedAt.a).toEqual([0, 0, 60_001]);
    expect(grantedAt.b).toEqual([10_000]);
  });

  it('GIVEN a waiting take whose signal aborts THEN it returns at once without counting', async () => {
    const budget = new ChannelBudget(1);
    await budget.take('a');
    const controller = new AbortController();
    let done = false;
    const waiting = budget.take('a', controller.signal).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(1000);
    expect(done).toBe(false);
    controller.abort();
    await waiting;
    expect(Date.now()).toBe(1000);
    // The aborted take counted nothing: the next one waits only for the first edit to leave the window.
    const next = budget.take('a');
    await vi.advanceTimersByTimeAsync(59_001);
    await next;
  });

  it('GIVEN 4 edits in the last 5.5 s (pictures included) THEN progress waits, keeping the 5th for a picture; a picture still goes', async () => {
    // Discord takes about 5 edits per 5 s in a channel: a progress edit must not take the slot a picture needs.
    const budget = new ChannelBudget(30);
    await budget.take('a');
    await budget.take('a');
    budget.note('a'); // two pictures posted
    budget.note('a');
    let grantedAt: number | undefined;
    const progress = budget.take('a').then(() => (grantedAt = Date.now()));
    await vi.advanceTimersByTimeAsync(5_000);
    expect(grantedAt).toBeUndefined();
    budget.note('a'); // a last edit never waits: it may take the kept slot
    await vi.advanceTimersByTimeAsync(501);
    await progress;
    // The four edits of t = 0 left the 5.5 s window: room again, with one slot kept.
    expect(grantedAt).toBe(5_501);
    // Other channels are not held by this one.
    await budget.take('b');
  });

  it('GIVEN edits of interaction replies THEN the five-second rule is not theirs: they neither wait for it nor fill it', async () => {
    const budget = new ChannelBudget(30);
    for (let i = 0; i < 4; i++) await budget.take('a');
    // A reply's edit goes through the interaction's webhook, not the channel's message bucket: only the minute counts.
    await budget.take('a', undefined, false);
    for (let i = 0; i < 10; i++) budget.note('a', false);
    let granted = false;
    const progress = budget.take('a').then(() => (granted = true));
    await vi.advanceTimersByTimeAsync(5_000);
    expect(granted).toBe(false);
    await vi.advanceTimersByTimeAsync(501);
    await progress;
    expect(granted).toBe(true);
  });

  it('GIVEN 0 THEN nothing ever waits', async () => {
    const budget = new ChannelBudget(0);
    for (let i = 0; i < 100; i++) await budget.take('a');
    expect(() => new ChannelBudget(-1)).toThrow('Expected `perMinute` to be an integer ≥ 0, got `-1`');
  });
});
