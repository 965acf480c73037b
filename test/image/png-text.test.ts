import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { encodePng } from '../../src/image/encode.js';
import { a1111Sampler, infotext, PARAMETERS_KEYWORD } from '../../src/image/infotext.js';
import { copyPngText, readPngText, withPngText } from '../../src/image/png-text.js';

const rgb = Uint8Array.from({ length: 4 * 3 * 3 }, (_, i) => (i * 29) % 256);
const png = () => encodePng(rgb, 4, 3);

/** Chunk types in file order, each checked against its CRC. */
function chunkTypes(bytes: Uint8Array): string[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const types: string[] = [];
  for (let offset = 8; offset < bytes.length; ) {
    const length = view.getUint32(offset);
    types.push(String.fromCharCode(...bytes.subarray(offset + 4, offset + 8)));
    expect(view.getUint32(offset + 8 + length)).toBe(crc32(bytes.subarray(offset + 4, offset + 8 + length)));
    offset += 12 + length;
  }
  return types;
}

describe('PNG text chunks', () => {
  it('GIVEN a Latin-1 text THEN it is written as tEXt after IHDR, read back the same, and sharp reads it too', async () => {
    const text = 'a red circle, on white\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 4x3, Model: m';
    const out = withPngText(await png(), { [PARAMETERS_KEYWORD]: text });
    expect(readPngText(out).get('parameters')).toBe(text);
    expect(chunkTypes(out).slice(0, 2)).toEqual(['IHDR', 'tEXt']);
    const meta = await sharp(out).metadata();
    expect(meta.comments).toEqual([{ keyword: 'parameters', text }]);
    // The pixels are untouched.
    expect(Array.from(await sharp(out).raw().toBuffer())).toEqual(Array.from(rgb));
  });

  it('GIVEN a text Latin-1 cannot hold THEN it is an uncompressed UTF-8 iTXt (as Pillow writes it) that reads back the same', async () => {
    const text = '富士山 at dawn 🌅, café';
    const out = withPngText(await png(), { parameters: text });
    expect(chunkTypes(out)[1]).toBe('iTXt');
    expect(readPngText(out).get('parameters')).toBe(text);
    expect((await sharp(out).metadata()).comments).toEqual([{ keyword: 'parameters', text }]);
  });

  it('GIVEN the same keyword written twice THEN one chunk is left, with the newer text', async () => {
    const once = withPngText(await png(), { parameters: 'old', other: 'kept' });
    const twice = withPngText(once, { parameters: 'new' });
    expect([...readPngText(twice)]).toEqual([
      ['parameters', 'new'],
      ['other', 'kept'],
    ]);
    expect(chunkTypes(twice).filter((type) => type === 'tEXt')).toHaveLength(2);
  });

  it('GIVEN a re-encoded PNG THEN copyPngText gives it the original texts; a PNG without texts leaves it as it was', async () => {
    const original = withPngText(await png(), { parameters: 'p' });
    const resized = await sharp(original).resize(8, 6, { kernel: 'nearest' }).png().toBuffer();
    expect(readPngText(resized).size).toBe(0);
    expect(readPngText(copyPngText(original, resized)).get('parameters')).toBe('p');
    const plain = await png();
    expect(copyPngText(plain, resized)).toBe(resized);
  });

  it('GIVEN bytes that are not a PNG, or a bad keyword THEN it says what was expected', async () => {
    const PNG_STUB = await png();
    expect(() => readPngText(new Uint8Array([1, 2, 3]))).toThrow(/PNG signature/);
    expect(() => withPngText(new Uint8Array(0), { parameters: 'x' })).toThrow(/PNG signature/);
    expect(() => withPngText(PNG_STUB, { '': 'x' })).toThrow(/keyword of 1 to 79 Latin-1 characters/);
  });
});

describe('infotext (AUTOMATIC1111 `parameters`)', () => {
  it('GIVEN a picture with a negative prompt THEN three lines in A1111 order', () => {
    expect(
      infotext({ prompt: 'a cat', negativePrompt: 'dog', steps: 20, scheduler: 'euler_a', guidanceScale: 7.5, seed: 42, width: 512, height: 512, model: 'imagine-shapes' }),
    ).toBe('a cat\nNegative prompt: dog\nSteps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 512x512, Model: imagine-shapes');
  });

  it('GIVEN no negative prompt, and a model name with a comma THEN no negative line, and the name is quoted as A1111 quotes', () => {
    expect(infotext({ prompt: 'p', negativePrompt: '', steps: 4, scheduler: 'lcm', guidanceScale: 0, seed: 0, width: 32, height: 48, model: 'a, b' })).toBe(
      'p\nSteps: 4, Sampler: LCM, CFG scale: 0, Seed: 0, Size: 32x48, Model: "a, b"',
    );
  });

  it('GIVEN the noise generator THEN A1111\'s RNG field last: CPU for torch\'s CPU generator, imagine for xoshiro', () => {
    const p = { prompt: 'p', steps: 4, scheduler: 'ddim', guidanceScale: 1, seed: 3, width: 32, height: 32, model: 'm' };
    expect(infotext({ ...p, noise: 'torch' })).toBe('p\nSteps: 4, Sampler: DDIM, CFG scale: 1, Seed: 3, Size: 32x32, Model: m, RNG: CPU');
    expect(infotext({ ...p, strength: 0.5, noise: 'xoshiro' })).toMatch(/, Denoising strength: 0\.5, RNG: imagine$/);
  });

  it('GIVEN each scheduler THEN A1111 sampler names, Karras only where A1111 has it', () => {
    const names = ['ddim', 'euler', 'euler_a', 'heun', 'lms', 'dpmpp_2m', 'pndm', 'lcm', 'ddpm'].map((s) => a1111Sampler(s));
    expect(names).toEqual(['DDIM', 'Euler', 'Euler a', 'Heun', 'LMS', 'DPM++ 2M', 'PLMS', 'LCM', 'DDPM']);
    expect(a1111Sampler('dpmpp_2m', true)).toBe('DPM++ 2M Karras');
    expect(a1111Sampler('lms', true)).toBe('LMS Karras');
    expect(a1111Sampler('euler_a', true)).toBe('Euler a');
  });
});
