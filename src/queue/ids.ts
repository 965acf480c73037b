import { randomInt } from 'node:crypto';

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

function encode(value: bigint, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) {
    out = CROCKFORD[Number(value & 31n)] + out;
    value >>= 5n;
  }
  return out;
}

/**
 * Job ids: 20 characters of Crockford base32, 10 for the time in ms and 10 for a random tail that is incremented
 * within the same millisecond (as ULID's monotonic mode), so ids sort in creation order. Short enough to serve as
 * a Discord message nonce (≤ 25 characters).
 */
export class JobIdFactory {
  private lastTime = -1;
  private lastTail = 0n;

  constructor(private readonly now: () => number = Date.now) {}

  next(): string {
    let time = this.now();
    if (time <= this.lastTime) {
      time = this.lastTime;
      this.lastTail = (this.lastTail + 1n) & ((1n << 50n) - 1n);
    } else {
      // Leave headroom so increments within one millisecond never wrap.
      this.lastTail = (BigInt(randomInt(0, 2 ** 24)) << 25n) | BigInt(randomInt(0, 2 ** 24));
      this.lastTime = time;
    }
    return encode(BigInt(time), 10) + encode(this.lastTail, 10);
  }
}
