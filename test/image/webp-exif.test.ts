/**
 * The WebP fallback's `parameters`, read back the way AUTOMATIC1111 does (Pillow's EXIF, then piexif's UserComment:
 * an 8-byte character code, "UNICODE\0" meaning UTF-16 big-endian). The reader below walks the RIFF chunks and the
 * TIFF IFDs itself, so it does not share code with the writer.
 */
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { fitImage } from '../../src/delivery/images.js';
import { withPngText } from '../../src/image/png-text.js';
import { withWebpUserComment } from '../../src/image/webp-exif.js';

function riffChunks(file: Uint8Array): { id: string; data: Uint8Array }[] {
  const buf = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  expect(buf.toString('latin1', 0, 4)).toBe('RIFF');
  expect(buf.readUInt32LE(4)).toBe(buf.length - 8);
  expect(buf.toString('latin1', 8, 12)).toBe('WEBP');
  const chunks: { id: string; data: Uint8Array }[] = [];
  for (let at = 12; at < buf.length; ) {
    const size = buf.readUInt32LE(at + 4);
    chunks.push({ id: buf.toString('latin1', at, at + 4), data: buf.subarray(at + 8, at + 8 + size) });
    at += 8 + size + (size % 2);
  }
  return chunks;
}

/** UserComment (0x9286) of the Exif IFD (pointer 0x8769 in IFD0), decoded by its character code. */
function userComment(exifChunk: Uint8Array): string | undefined {
  let tiff = Buffer.from(exifChunk.buffer, exifChunk.byteOffset, exifChunk.byteLength);
  if (tiff.toString('latin1', 0, 6) === 'Exif\0\0') tiff = tiff.subarray(6);
  const little = tiff.toString('latin1', 0, 2) === 'II';
  const u16 = (at: number) => (little ? tiff.readUInt16LE(at) : tiff.readUInt16BE(at));
  const u32 = (at: number) => (little ? tiff.readUInt32LE(at) : tiff.readUInt32BE(at));
  expect(u16(2)).toBe(42);
  const entries = (ifd: number) => Array.from({ length: u16(ifd) }, (_, k) => ifd + 2 + 12 * k);
  const pointer = entries(u32(4)).find((e) => u16(e) === 0x8769);
  if (pointer === undefined) return undefined;
  const comment = entries(u32(pointer + 8)).find((e) => u16(e) === 0x9286);
  if (comment === undefined) return undefined;
  const count = u32(comment + 4);
  const bytes = tiff.subarray(u32(comment + 8), u32(comment + 8) + count);
  const code = bytes.toString('latin1', 0, 8);
  if (code === 'UNICODE\0') return bytes.subarray(8).swap16().toString('utf16le');
  if (code === 'ASCII\0\0\0') return bytes.toString('latin1', 8);
  throw new Error(`unknown character code ${JSON.stringify(code)}`);
}

const PARAMETERS = 'a lighthouse at dusk, café 🌅\nNegative prompt: blurry\nSteps: 20, Sampler: DDIM, CFG scale: 7.5, Seed: 42, Size: 512x512, Model: sd15';

/**
 * Smooth colour waves: a palette PNG of them is still about 24 KB at 256² (dithering), a WebP about 5 KB, so a
 * 12 KB limit takes fitImage past the palette to its first WebP, with room either way.
 */
async function wavesPng(side: number): Promise<Uint8Array> {
  const rgb = Buffer.alloc(side * side * 3);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const k = (y * side + x) * 3;
      rgb[k] = Math.sin(x / 17) * 60 + Math.cos(y / 23) * 60 + 128;
      rgb[k + 1] = Math.sin((x + y) / 29) * 120 + 128;
      rgb[k + 2] = Math.cos((x * y) / 3000) * 120 + 128;
    }
  }
  return new Uint8Array(await sharp(rgb, { raw: { width: side, height: side, channels: 3 } }).png().toBuffer());
}

const LIMIT = 12_000;

describe('parameters in a WebP', () => {
  it('GIVEN a PNG with parameters over the upload limit THEN its WebP fallback carries them, non-ASCII intact, as EXIF UserComment', async () => {
    const png = withPngText(await wavesPng(256), { parameters: PARAMETERS });
    const file = await fitImage(png, 'imagine-42', LIMIT);
    expect(file.contentType).toBe('image/webp');
    expect(file.data.length).toBeLessThanOrEqual(LIMIT);
    const chunks = riffChunks(file.data);
    expect(chunks[0].id).toBe('VP8X');
    expect(chunks[0].data[0] & 0x08).toBe(0x08);
    const exif = chunks.filter((c) => c.id === 'EXIF');
    expect(exif).toHaveLength(1);
    expect(userComment(exif[0].data)).toBe(PARAMETERS);
    // Still a picture every decoder reads, at the same size.
    expect(await sharp(file.data).metadata()).toMatchObject({ format: 'webp', width: 256, height: 256 });
  });

  it('GIVEN a PNG without parameters THEN the WebP fallback has no UserComment', async () => {
    const file = await fitImage(await wavesPng(256), 'imagine-1', LIMIT);
    expect(file.contentType).toBe('image/webp');
    const exif = riffChunks(file.data).filter((c) => c.id === 'EXIF');
    expect(exif.every((c) => userComment(c.data) === undefined)).toBe(true);
  });

  it('GIVEN a WebP that already has EXIF THEN writing twice leaves one EXIF chunk with the last text', async () => {
    const webp = await sharp(await wavesPng(32)).webp().withExif({ IFD0: { Software: 'x' } }).toBuffer();
    const once = withWebpUserComment(webp, 'first');
    const twice = withWebpUserComment(once, 'second ✓');
    const exif = riffChunks(twice).filter((c) => c.id === 'EXIF');
    expect(exif).toHaveLength(1);
    expect(userComment(exif[0].data)).toBe('second ✓');
    expect(await sharp(twice).metadata()).toMatchObject({ format: 'webp', width: 32, height: 32 });
  });

  it('GIVEN bytes that are not an extended WebP THEN it says so', async () => {
    const simple = await sharp(await wavesPng(16)).webp().toBuffer();
    expect(() => withWebpUserComment(simple, 'x')).toThrow(/extended WebP/);
    expect(() => withWebpUserComment(new Uint8Array(20), 'x')).toThrow(/RIFF WebP/);
  });
});
