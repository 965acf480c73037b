import { describe, expect, it } from 'vitest';
import { previewOf } from '../../src/diffusion/preview.js';

describe('previewOf', () => {
  it('GIVEN a 3-channel batch THEN image i maps [-1, 1] to bytes, clamped', () => {
    // Two 2×1 images; the second has R = [-1, 1], G = [0, 3], B = [-3, 0.5].
    const data = Float32Array.from([9, 9, 9, 9, 9, 9, -1, 1, 0, 3, -3, 0.5]);
    const preview = previewOf(data, 1, 3, 2, 1)!;
    expect([preview.width, preview.height]).toEqual([2, 1]);
    expect(Array.from(preview.rgb)).toEqual([0, 128, 0, 255, 255, 191]);
  });

  it('GIVEN 4-channel SD latents THEN the fixed linear map applies (first latent channel alone gives its row)', () => {
    const data = Float32Array.from([1, 0, 0, 0]); // 1×1, latent (1, 0, 0, 0)
    const { rgb } = previewOf(data, 0, 4, 1, 1)!;
    // Row 0 of the map: 0.3512, 0.2297, 0.3227 → (v × 127.5 + 128) truncated.
    expect(Array.from(rgb)).toEqual([172, 157, 169]);
  });

  it('GIVEN another channel count THEN there is no preview', () => {
    expect(previewOf(new Float32Array(16), 0, 16, 1, 1)).toBeUndefined();
  });
});
