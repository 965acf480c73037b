import { describe, expect, it } from 'vitest';
import { SHARD_RESTARTS, ShardExits } from '../../src/discord/shard-restarts.js';

const policy = { firstDelayMs: 100, maxDelayMs: 350, maxExits: 4, windowMs: 10_000 };

describe('when an exited shard is started again', () => {
  it('GIVEN exits close together THEN the pause doubles up to its cap, and the exit that reaches maxExits gives up', () => {
    const exits = new ShardExits(policy);
    expect([0, 1, 2].map((second) => exits.record(second * 1_000))).toEqual([
      { action: 'restart', delayMs: 100, exitsInWindow: 1 },
      { action: 'restart', delayMs: 200, exitsInWindow: 2 },
      { action: 'restart', delayMs: 350, exitsInWindow: 3 },
    ]);
    expect(exits.record(3_000)).toEqual({ action: 'give-up', exitsInWindow: 4 });
  });

  it('GIVEN exits further apart than the window THEN each is restarted after the first pause, forever', () => {
    const exits = new ShardExits(policy);
    for (let n = 0; n < 20; n++) expect(exits.record(n * policy.windowMs)).toEqual({ action: 'restart', delayMs: 100, exitsInWindow: 1 });
  });

  it('GIVEN old exits leaving the window THEN only the recent ones count', () => {
    const exits = new ShardExits(policy);
    exits.record(0);
    exits.record(1_000);
    exits.record(2_000);
    // At 10.5 s the exit at 0 has left the window: three in it, not four.
    expect(exits.record(10_500)).toEqual({ action: 'restart', delayMs: 350, exitsInWindow: 3 });
  });

  it('GIVEN the default policy THEN a shard that dies at start is given up on well within the window', () => {
    // The pauses before the give-up must fit in the window, or a shard dying at start would never reach maxExits.
    let pauses = 0;
    for (let n = 1; n < SHARD_RESTARTS.maxExits; n++) pauses += Math.min(SHARD_RESTARTS.firstDelayMs * 2 ** (n - 1), SHARD_RESTARTS.maxDelayMs);
    expect(pauses).toBeLessThan(SHARD_RESTARTS.windowMs / 2);
  });
});
