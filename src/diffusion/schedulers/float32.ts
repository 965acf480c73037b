/**
 * diffusers steps in float32 tensors, rounding after every operation. Near the end of a schedule that rounding is
 * visible (x − (x − σ·ε) is not σ·ε when σ is small), so the step math rounds where torch does: `f32` after each
 * operation, scalars first made float32 as torch makes its 0-d tensors. These helpers name the recurring ones.
 */
export const f32 = Math.fround;

/** sqrt(σ² + 1), op by op in float32: the Euler-family input scaling. */
export function sqrtSigmaSqPlusOne(sigma: number): number {
  return f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
}

/** The two float32 coefficients of the v-prediction x0 estimate: x0 = v · (−σ / sqrt(σ² + 1)) + x / (σ² + 1). */
export function vCoefficients(sigma: number): { vScale: number; xDiv: number } {
  return { vScale: f32(-sigma / sqrtSigmaSqPlusOne(sigma)), xDiv: f32(f32(sigma * sigma) + 1) };
}

/** Σ|x| over a sample, in float64 (for tests and the conformance CLI). */
export function sumAbs(sample: Float32Array): number {
  let sum = 0;
  for (const x of sample) sum += Math.abs(x);
  return sum;
}
