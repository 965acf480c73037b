import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { encodePng } from '../../src/image/encode.js';
import { gridLayout, gridPng } from '../../src/image/grid.js';

/** A width × height picture of one colour. */
function solid(value: number, width = 6, height = 4): Promise<Uint8Array> {
  return encodePng(new Uint8Array(width * height * 3).fill(value), width, height);
}

/** RGBA of pixel (x, y). */
async function pixel(png: Uint8Array, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(png).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  const o = (y * info.width + x) * 4;
  return [...data.subarray(o, o + 4)];
}

describe('grid', () => {
  it('GIVEN 1 to 4 pictures THEN A1111 layouts: 1×1, 1×2, 2×2 (one cell empty), 2×2', () => {
    expect([1, 2, 3, 4].map(gridLayout)).toEqual([
      { rows: 1, columns: 1 },
      { rows: 1, columns: 2 },
      { rows: 2, columns: 2 },
      { rows: 2, columns: 2 },
    ]);
  });

  it('GIVEN four pictures THEN a 2×2 grid, each cell exactly its picture, in reading order', async () => {
    const grid = await gridPng(await Promise.all([10, 20, 30, 40].map((v) => solid(v))));
    const meta = await sharp(grid).metadata();
    expect([meta.width, meta.height]).toEqual([12, 8]);
    expect(await pixel(grid, 0, 0)).toEqual([10, 10, 10, 255]);
    expect(await pixel(grid, 11, 3)).toEqual([20, 20, 20, 255]);
    expect(await pixel(grid, 5, 4)).toEqual([30, 30, 30, 255]);
    expect(await pixel(grid, 6, 7)).toEqual([40, 40, 40, 255]);
  });

  it('GIVEN two THEN side by side; three THEN 2×2 with the last cell transparent', async () => {
    const two = await gridPng([await solid(1), await solid(2)]);
    expect((await sharp(two).metadata()).width).toBe(12);
    const three = await gridPng([await solid(1), await solid(2), await solid(3)]);
    expect(await pixel(three, 8, 6)).toEqual([0, 0, 0, 0]);
    expect(await pixel(three, 2, 6)).toEqual([3, 3, 3, 255]);
  });

  it('GIVEN pictures of different sizes or none THEN it says what was expected', async () => {
    await expect(gridPng([await solid(1), await solid(2, 8, 4)])).rejects.toThrow(/share one size \(6×4\), got 8×4 for picture 2/);
    await expect(gridPng([])).rejects.toThrow(/at least one picture/);
  });
});
