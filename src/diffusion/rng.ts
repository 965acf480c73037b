import type { NoiseSource } from './schedulers/types.js';

/**
 * Seeded randomness for sampling. A uint32 seed gives the same stream on every machine.
 *
 * The uniform generator is xoshiro128** (Blackman & Vigna, "Scrambled linear pseudorandom number generators",
 * 2018), its state filled from the seed by SplitMix32. Normals come from the Box–Muller transform, using both
 * outputs of each pair. Never Math.random.
 */
export class Rng implements NoiseSource {
  private readonly s = new Uint32Array(4);
  private spare = 0;
  private hasSpare = false;

  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new RangeError(`Expected \`seed\` to be an integer from 0 to 4294967295, got \`${seed}\``);
    }
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      // SplitMix32 (a 32-bit variant of Steele et al.'s SplitMix) to spread the seed over the state.
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
  }

  /** Next uint32. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in (0, 1): never exactly 0, so log() below is finite. */
  nextFloat(): number {
    return (this.nextUint32() + 0.5) / 4294967296;
  }

  /** One standard normal sample. */
  nextNormal(): number {
    if (this.hasSpare) {
      this.hasSpare = false;
      return this.spare;
    }
    const u1 = this.nextFloat();
    const u2 = this.nextFloat();
    const r = Math.sqrt(-2 * Math.log(u1));
    const theta = 2 * Math.PI * u2;
    this.spare = r * Math.sin(theta);
    this.hasSpare = true;
    return r * Math.cos(theta);
  }

  fillNormal(out: Float32Array): void {
    for (let i = 0; i < out.length; i++) out[i] = this.nextNormal();
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
