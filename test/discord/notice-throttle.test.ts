import { describe, expect, it } from 'vitest';
import { NoticeThrottle } from '../../src/discord/notice-throttle.js';

describe('NoticeThrottle', () => {
  it('GIVEN repeated refusals for one member and message THEN one notice per window, others keys independent', () => {
    let now = 1_000;
    const throttle = new NoticeThrottle(60_000, () => now);
    expect(throttle.allow('alice:m1')).toBe(true);
    expect(throttle.allow('alice:m1')).toBe(false);
    expect(throttle.allow('alice:m2')).toBe(true);
    expect(throttle.allow('bob:m1')).toBe(true);
    now += 59_999;
    expect(throttle.allow('alice:m1')).toBe(false);
    now += 1;
    expect(throttle.allow('alice:m1')).toBe(true);
  });

  it('GIVEN thousands of keys over time THEN closed windows are forgotten (memory stays bounded)', () => {
    let now = 0;
    const throttle = new NoticeThrottle(10, () => now);
    for (let i = 0; i < 5000; i++) {
      now += 1;
      throttle.allow(`k${i}`);
    }
    expect((throttle as unknown as { last: Map<string, number> }).last.size).toBeLessThanOrEqual(1001);
  });
});
