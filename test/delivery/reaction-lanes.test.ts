import { describe, expect, it } from 'vitest';
import { ReactionLanes } from '../../src/delivery/reaction-lanes.js';

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('ReactionLanes', () => {
  it('GIVEN calls in one channel THEN they run one at a time, in order, with the gap between them', async () => {
    const lanes = new ReactionLanes(40);
    const starts: number[] = [];
    const t0 = performance.now();
    await Promise.all([1, 2, 3].map(() => lanes.run('c1', async () => starts.push(performance.now() - t0))));
    expect(starts).toHaveLength(3);
    expect(starts[1]! - starts[0]!).toBeGreaterThanOrEqual(35);
    expect(starts[2]! - starts[1]!).toBeGreaterThanOrEqual(35);
  });

  it('GIVEN calls in two channels THEN neither waits for the other', async () => {
    const lanes = new ReactionLanes(200);
    const order: string[] = [];
    const a = lanes.run('c1', async () => order.push('c1 first'));
    const b = lanes.run('c1', async () => order.push('c1 second'));
    let seenByC2: string[] = [];
    const c = lanes.run('c2', async () => {
      order.push('c2 first');
      seenByC2 = [...order];
    });
    await c;
    // c2's call ran while c1's second call still waited out c1's gap.
    expect(seenByC2).toEqual(['c1 first', 'c2 first']);
    await Promise.all([a, b]);
    expect(order).toEqual(['c1 first', 'c2 first', 'c1 second']);
  });

  it('GIVEN a call that declines when its turn comes THEN no pause follows it', async () => {
    const lanes = new ReactionLanes(500);
    let made = 0;
    const t0 = performance.now();
    await lanes.run('c1', () => undefined);
    await lanes.run('c1', () => undefined);
    await lanes.run('c1', async () => made++);
    expect(made).toBe(1);
    expect(performance.now() - t0).toBeLessThan(1_000);
  });

  it('GIVEN a call that fails THEN its promise rejects and the line goes on; idle channels are forgotten', async () => {
    const lanes = new ReactionLanes(1);
    const failed = lanes.run('c1', async () => {
      throw new Error('403 Missing Permissions');
    });
    const next = lanes.run('c1', async () => 'ok');
    await expect(failed).rejects.toThrow('Missing Permissions');
    await next;
    await tick(10);
    expect(lanes.busyChannels).toBe(0);
  });
});
