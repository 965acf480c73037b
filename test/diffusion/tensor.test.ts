import { describe, expect, it } from 'vitest';
import { floatToHalf, fromHalf, guideInto, halfToFloat, toHalf } from '../../src/diffusion/tensor.js';

describe('float16 conversion', () => {
  // Bit patterns from IEEE 754 binary16 (as numpy's float16 gives them).
  const cases: [number, number][] = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff], // largest finite
    [1e6, 0x7c00], // overflow → Inf
    [2 ** -24, 0x0001], // smallest subnormal
    [6.103515625e-5, 0x0400], // smallest normal
    [1 + 2 ** -11, 0x3c00], // a tie rounds to even (down)
    [1 + 3 * 2 ** -11, 0x3c02], // a tie rounds to even (up)
    [0.1, 0x2e66],
  ];
  it.each(cases)('GIVEN %d THEN the half bits are %i', (value, bits) => {
    expect(floatToHalf(value)).toBe(bits);
  });

  it('GIVEN NaN and infinities THEN they survive', () => {
    expect(Number.isNaN(halfToFloat(floatToHalf(NaN)))).toBe(true);
    expect(halfToFloat(floatToHalf(-Infinity))).toBe(-Infinity);
  });

  it('GIVEN every finite half THEN half → float → half is the identity', () => {
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00) continue;
      expect(floatToHalf(halfToFloat(h))).toBe(h);
    }
  });

  it('GIVEN arrays THEN toHalf and fromHalf convert in place buffers', () => {
    const src = Float32Array.from([0.25, -1.5, 3]);
    const back = fromHalf(toHalf(src, new Uint16Array(3)), new Float32Array(3));
    expect(Array.from(back)).toEqual([0.25, -1.5, 3]);
  });
});

describe('guideInto', () => {
  it('GIVEN uncond and cond halves THEN it computes uncond + scale × (cond − uncond)', () => {
    const batched = Float32Array.from([1, 2, 3, 5]); // uncond [1, 2], cond [3, 5]
    expect(Array.from(guideInto(batched, 0, 2, 2, 7.5, new Float32Array(2)))).toEqual([16, 24.5]);
  });

  it('GIVEN offsets THEN it reads and writes one job of a shared batch', () => {
    const batched = Float32Array.from([9, 1, 9, 3, 9]); // uncond at 1, cond at 3
    expect(Array.from(guideInto(batched, 1, 3, 1, 2, new Float32Array(3), 2))).toEqual([0, 0, 5]);
  });
});
