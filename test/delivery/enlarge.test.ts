import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { enlargeSmall, fitImage } from '../../src/delivery/images.js';
import { readPngText, withPngText } from '../../src/image/png-text.js';

/** A width × height PNG whose every pixel differs from its neighbours, so resampling would show. */
async function checkerPng(width: number, height: number): Promise<{ png: Uint8Array; rgb: Uint8Array }> {
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      rgb[i] = (x * 37) % 256;
      rgb[i + 1] = (y * 53) % 256;
      rgb[i + 2] = (x + y) % 2 ? 255 : 0;
    }
  }
  const png = await sharp(Buffer.from(rgb), { raw: { width, height, channels: 3 } }).png().toBuffer();
  return { png, rgb };
}

describe('enlargeSmall', () => {
  it('GIVEN a 32×32 picture THEN it is shown at 256×256 with each pixel a solid 8×8 block', async () => {
    const { png, rgb } = await checkerPng(32, 32);
    const out = await enlargeSmall(png);
    const { data, info } = await sharp(out).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([256, 256]);
    for (const [x, y] of [[0, 0], [7, 7], [8, 0], [255, 255], [100, 37]] as const) {
      const src = (Math.floor(y / 8) * 32 + Math.floor(x / 8)) * 3;
      const dst = (y * 256 + x) * 3;
      expect([...data.subarray(dst, dst + 3)], `pixel ${x},${y}`).toEqual([...rgb.subarray(src, src + 3)]);
    }
  });

  it('GIVEN a non-square small picture THEN both sides grow by the same whole factor', async () => {
    const { png } = await checkerPng(40, 24);
    const meta = await sharp(await enlargeSmall(png)).metadata();
    expect([meta.width, meta.height]).toEqual([240, 144]);
  });

  it('GIVEN a picture of 64 px or more THEN the same bytes come back', async () => {
    const { png } = await checkerPng(80, 56);
    expect(await enlargeSmall(png)).toBe(png);
  });
});

describe('re-encoding keeps the PNG parameters', () => {
  it('GIVEN a 32×32 picture with a `parameters` chunk THEN the enlarged one and a palette fit carry the same text', async () => {
    const { png } = await checkerPng(32, 32);
    const text = 'a square\nSteps: 20, Sampler: Euler, CFG scale: 7.5, Seed: 1, Size: 32x32, Model: imagine-shapes';
    const enlarged = await enlargeSmall(withPngText(png, { parameters: text }));
    expect((await sharp(enlarged).metadata()).width).toBe(256);
    expect(readPngText(enlarged).get('parameters')).toBe(text);
    // Over the limit: the palette PNG (the first fallback) keeps it too.
    const big = withPngText((await checkerPng(300, 300)).png, { parameters: text });
    const fitted = await fitImage(big, 'x', big.byteLength - 1);
    expect(fitted.name).toBe('x.png');
    expect(readPngText(fitted.data).get('parameters')).toBe(text);
  });
});
