/**
 * The two image chores of delivery: a small preview PNG from the engine's raw RGB (upscaled with nearest
 * neighbour so a 32×32 estimate reads as pixels, not blur), and making the final picture fit the upload limit.
 */
import sharp from 'sharp';
import type { Preview } from '../diffusion/types.js';
import { gridPng } from '../image/grid.js';
import { PARAMETERS_KEYWORD } from '../image/infotext.js';
import { copyPngText, readPngText } from '../image/png-text.js';
import { withWebpUserComment } from '../image/webp-exif.js';
import type { OutgoingFile } from './render.js';

/** Discord's default per-file upload limit, used when the interaction does not say (10 MiB). */
export const DEFAULT_ATTACHMENT_LIMIT = 10 * 1024 * 1024;

/**
 * Encodes a preview as a PNG whose longer side is about `targetSide` pixels (an integer multiple of the preview,
 * so every cell stays square).
 */
export async function previewPng(preview: Preview, targetSide = 256): Promise<OutgoingFile> {
  const { width, height, rgb } = preview;
  if (rgb.length !== width * height * 3) {
    throw new Error(`Expected a preview of ${width}×${height}×3 = ${width * height * 3} bytes, got ${rgb.length}`);
  }
  const scale = Math.max(1, Math.floor(targetSide / Math.max(width, height)));
  const data = await sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), { raw: { width, height, channels: 3 } })
    .resize(width * scale, height * scale, { kernel: 'nearest' })
    .png({ compressionLevel: 6 })
    .toBuffer();
  return { name: 'preview.png', data, contentType: 'image/png' };
}

/**
 * A picture whose longer side is under `minSide` pixels (the embedded model makes 32×32) would show as a speck in
 * Discord: enlarge it by a whole factor with nearest neighbour, so that every generated pixel becomes a square
 * block and no pixel is invented, to a longer side of about `targetSide`. Larger pictures come back unchanged.
 * The enlarged PNG keeps the original's text chunks (its `parameters`).
 */
export async function enlargeSmall(png: Uint8Array, minSide = 64, targetSide = 256): Promise<Uint8Array> {
  const input = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  const { width = 0, height = 0 } = await sharp(input).metadata();
  const side = Math.max(width, height);
  if (side === 0 || side >= minSide) return png;
  const scale = Math.max(1, Math.floor(targetSide / side));
  return copyPngText(png, await sharp(input).resize(width * scale, height * scale, { kernel: 'nearest' }).png().toBuffer());
}

/** sharp writes an extended WebP (a VP8X chunk, which EXIF needs) when it is given any EXIF; ours replaces it. */
const EXTENDED = { IFD0: { Software: 'imagine' } };

/** `webp` with `parameters` in its EXIF UserComment (see image/webp-exif.ts); as it is when there are none. */
function webpWithParameters(webp: Buffer, parameters: string | undefined): Uint8Array {
  return parameters === undefined ? webp : withWebpUserComment(webp, parameters);
}

/**
 * Returns the picture as a file no larger than `limit` bytes: the PNG itself when it fits, else the first of
 * a palette PNG, WebP at falling quality, then smaller sizes, that fits. A palette PNG keeps the original's text
 * chunks; a WebP fallback carries the original's `parameters` as EXIF UserComment, where A1111 reads them in WebP.
 * @throws Error when even the smallest encoding is over the limit.
 */
export async function fitImage(png: Uint8Array, baseName: string, limit = DEFAULT_ATTACHMENT_LIMIT): Promise<OutgoingFile> {
  if (png.byteLength <= limit) return { name: `${baseName}.png`, data: png, contentType: 'image/png' };
  const input = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  const { width = 0 } = await sharp(input).metadata();
  const parameters = readPngText(png).get(PARAMETERS_KEYWORD);
  const attempts: Array<() => Promise<OutgoingFile>> = [
    async () => ({
      name: `${baseName}.png`,
      data: copyPngText(png, await sharp(input).png({ palette: true, compressionLevel: 9 }).toBuffer()),
      contentType: 'image/png',
    }),
    ...[92, 80, 65].map((quality) => async () => ({
      name: `${baseName}.webp`,
      data: webpWithParameters(await sharp(input).webp({ quality }).withExif(EXTENDED).toBuffer(), parameters),
      contentType: 'image/webp',
    })),
    ...[0.75, 0.5, 0.25].map((factor) => async () => ({
      name: `${baseName}.webp`,
      data: webpWithParameters(
        await sharp(input)
          .resize(Math.max(1, Math.round(width * factor)))
          .webp({ quality: 80 })
          .withExif(EXTENDED)
          .toBuffer(),
        parameters,
      ),
      contentType: 'image/webp',
    })),
  ];
  for (const attempt of attempts) {
    const file = await attempt();
    if (file.data.byteLength <= limit) return file;
  }
  throw new Error(`The picture does not fit the upload limit of ${limit} bytes even at a quarter of its size`);
}

/** A finished job's files: the one the embed shows, and every file of the message in order. */
export interface PictureFiles {
  /** The picture alone, or the grid of several (the first of `files`). */
  shown: OutgoingFile;
  /**
   * The message's attachments: the picture alone; or the grid, then picture i at index i (1-based, full size,
   * its own `parameters`), so a member can save the one they want and a later control can name picture i.
   */
  files: OutgoingFile[];
}

/**
 * The files for a job's pictures: one picture as itself; several as their grid (see image/grid.ts, the first
 * picture's `parameters` on it, as A1111 does) followed by each picture, named by its own seed (picture i:
 * seed + i, the engine's rule). Small pictures are enlarged first (enlargeSmall); together the files fit `limit`
 * (each gets an equal share), each re-encoded smaller by fitImage when its share is not enough.
 * @param spoiler name every file SPOILER_… (Discord blurs them until clicked).
 */
export async function pictureFiles(
  pngs: readonly Uint8Array[],
  options: { seed: number; spoiler?: boolean; limit?: number },
): Promise<PictureFiles> {
  if (pngs.length === 0) throw new Error('Expected at least one picture, got none');
  const prefix = options.spoiler ? 'SPOILER_' : '';
  const seedOf = (i: number) => (options.seed + i) >>> 0;
  const enlarged = await Promise.all(pngs.map((png) => enlargeSmall(png)));
  const limit = options.limit ?? DEFAULT_ATTACHMENT_LIMIT;
  if (enlarged.length === 1) {
    const shown = await fitImage(enlarged[0], `${prefix}imagine-${seedOf(0)}`, limit);
    return { shown, files: [shown] };
  }
  const share = Math.floor(limit / (enlarged.length + 1));
  const grid = copyPngText(enlarged[0], await gridPng(enlarged));
  const [shown, ...pictures] = await Promise.all([
    fitImage(grid, `${prefix}imagine-${seedOf(0)}-grid`, share),
    ...enlarged.map((png, i) => fitImage(png, `${prefix}imagine-${seedOf(i)}`, share)),
  ]);
  return { shown, files: [shown, ...pictures] };
}
