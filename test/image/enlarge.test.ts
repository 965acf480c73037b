import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { lanczos2x } from '../../src/image/enlarge.js';
import { PARAMETERS_KEYWORD } from '../../src/image/infotext.js';
import { readPngText, withPngText } from '../../src/image/png-text.js';

async function picture(width: number, height: number, texts: Record<string, string>): Promise<Uint8Array> {
  const rgb = Buffer.alloc(width * height * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 37) % 251;
  const png = await sharp(rgb, { raw: { width, height, channels: 3 } }).png().toBuffer();
  return withPngText(new Uint8Array(png), texts);
}

describe('lanczos2x', () => {
  it('GIVEN a 32×32 PNG with parameters THEN a 64×64 PNG whose parameters say it was upscaled 2× by Lanczos after generation', async () => {
    const made = 'a red circle\nSteps: 20, Sampler: DDIM, CFG scale: 7.5, Seed: 4, Size: 32x32, Model: imagine-shapes';
    const out = await lanczos2x(await picture(32, 32, { [PARAMETERS_KEYWORD]: made, Software: 'imagine' }), 32, 32);
    expect(await sharp(out).metadata()).toMatchObject({ format: 'png', width: 64, height: 64 });
    const texts = readPngText(out);
    expect(texts.get(PARAMETERS_KEYWORD)).toBe(`${made}, Postprocess upscale by: 2, Postprocess upscaler: Lanczos`);
    expect(texts.get('Software')).toBe('imagine');
  });

  it('GIVEN a PNG without parameters THEN no parameters are invented', async () => {
    const out = await lanczos2x(await picture(16, 16, { Software: 'imagine' }), 16, 16);
    expect(readPngText(out).has(PARAMETERS_KEYWORD)).toBe(false);
  });
});
