/**
 * Small numeric helpers for the pipeline: float16 conversion at the model's edge and in-place array arithmetic.
 * No allocation inside the loops; callers pass the output buffers.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE 754 binary32 → binary16 bits, round to nearest even (what numpy's astype(float16) does). */
export function floatToHalf(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf or NaN
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow → Inf
  if (e <= 0) {
    if (e < -10) return sign; // underflow → ±0
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half++;
    return sign | half;
  }
  let half = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // Carry into the exponent is correct here: it rounds up to the next binade (or to Inf).
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++;
  return half;
}

/** IEEE 754 binary16 bits → number. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Fill `out` (float16 bits) from `src`. */
export function toHalf(src: Float32Array, out: Uint16Array): Uint16Array {
  for (let i = 0; i < src.length; i++) out[i] = floatToHalf(src[i]);
  return out;
}

/** Fill `out` from `src` (float16 bits). */
export function fromHalf(src: Uint16Array, out: Float32Array): Float32Array {
  for (let i = 0; i < src.length; i++) out[i] = halfToFloat(src[i]);
  return out;
}

/** out[i] = a[i] * s */
export function scaleInto(a: Float32Array, s: number, out: Float32Array): Float32Array {
  for (let i = 0; i < a.length; i++) out[i] = a[i] * s;
  return out;
}

/**
 * Classifier-free guidance, as in diffusers' pipelines: out = uncond + guidanceScale · (cond − uncond), over
 * `length` values read at `uncondOffset` and `condOffset` of the UNet's batched output and written at `outOffset`.
 */
export function guideInto(
  batched: Float32Array,
  uncondOffset: number,
  condOffset: number,
  length: number,
  guidanceScale: number,
  out: Float32Array,
  outOffset = 0,
): Float32Array {
  for (let i = 0; i < length; i++) {
    const uncond = batched[uncondOffset + i];
    out[outOffset + i] = uncond + guidanceScale * (batched[condOffset + i] - uncond);
  }
  return out;
}

/** Number of elements of a shape. */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}
