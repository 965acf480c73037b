import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { encodePng, planarToRgb, upscaleRgb } from '../../src/image/encode.js';

describe('planarToRgb', () => {
  it('GIVEN values in and beyond [-1, 1] THEN it applies diffusers postprocess: clip(x/2 + 0.5) × 255, rounded', () => {
    // 2×1 image, planes R, G, B.
    const data = Float32Array.from([-1, 1, 0, 0.5, -3, 3]);
    expect(Array.from(planarToRgb(data, 0, 2, 1))).toEqual([0, 128, 0, 255, 191, 255]);
  });

  it('GIVEN an offset THEN it reads the second image of a batch', () => {
    const batch = new Float32Array(2 * 3 * 4).fill(-1);
    batch.fill(1, 12);
    expect(Array.from(planarToRgb(batch, 12, 2, 2))).toEqual(new Array(12).fill(255));
  });
});

describe('encodePng', () => {
  it('GIVEN RGB bytes THEN the PNG decodes to the same pixels and is stable', async () => {
    const width = 5;
    const height = 3;
    const rgb = Uint8Array.from({ length: width * height * 3 }, (_, i) => (i * 37) % 256);
    const png = await encodePng(rgb, width, height);
    expect(Array.from(png.subarray(1, 4))).toEqual([0x50, 0x4e, 0x47]); // "PNG"
    expect(png.byteOffset).toBe(0);
    expect(png.byteLength).toBe(png.buffer.byteLength); // transferable on its own
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([width, height, 3]);
    expect(Array.from(data)).toEqual(Array.from(rgb));
    expect(Buffer.compare(Buffer.from(await encodePng(rgb, width, height)), Buffer.from(png))).toBe(0);
  });

  it('GIVEN the wrong byte count THEN it says what it expected', async () => {
    await expect(encodePng(new Uint8Array(10), 2, 2)).rejects.toThrow('Expected 2×2×3 = 12 bytes, got 10');
  });
});

describe('upscaleRgb', () => {
  it('GIVEN a 2×1 image and factor 3 THEN each pixel becomes a 3×3 block', async () => {
    const rgb = Uint8Array.from([255, 0, 0, 0, 0, 255]);
    const big = await upscaleRgb(rgb, 2, 1, 3);
    expect(big).toHaveLength(6 * 3 * 3);
    for (let y = 0; y < 3; y++) {
      expect(Array.from(big.subarray((y * 6 + 0) * 3, (y * 6 + 1) * 3))).toEqual([255, 0, 0]);
      expect(Array.from(big.subarray((y * 6 + 5) * 3, (y * 6 + 6) * 3))).toEqual([0, 0, 255]);
    }
  });
});
