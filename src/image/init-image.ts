/**
 * Pixels into the pipeline (img2img): a member's picture, decoded by sharp whatever its name or claimed type
 * said, turned upright by its EXIF orientation, scaled to cover the requested size and cropped at the centre, as
 * planar float [3, height, width] in [-1, 1] (diffusers' VaeImageProcessor.preprocess: x / 255 × 2 − 1).
 */
import sharp from 'sharp';
import { Identifiers, UserError } from '../errors.js';

/** The formats a picture may come in. */
export const INIT_IMAGE_FORMATS = ['png', 'jpeg', 'webp'] as const;

/** Largest picture decoded, in pixels (sharp's `limitInputPixels`): a small file cannot claim a huge canvas. */
export const MAX_INIT_IMAGE_PIXELS = 4096 * 4096;

/**
 * Decode `bytes` (PNG, JPEG or WebP) to planar RGB in [-1, 1] at width × height. Alpha is dropped, as PIL's
 * `convert("RGB")` does. Throws a UserError (`invalidInput`) for anything else, naming what arrived.
 */
export async function initImagePixels(bytes: Uint8Array, width: number, height: number): Promise<Float32Array> {
  const input = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let format: string | undefined;
  try {
    ({ format } = await sharp(input, { limitInputPixels: MAX_INIT_IMAGE_PIXELS }).metadata());
  } catch {
    throw refused('bytes that are not a picture');
  }
  if (!(INIT_IMAGE_FORMATS as readonly (string | undefined)[]).includes(format)) throw refused(`a ${format ?? 'unknown'} file`);
  let data: Buffer;
  try {
    data = await sharp(input, { limitInputPixels: MAX_INIT_IMAGE_PIXELS, failOn: 'error' })
      .rotate()
      .resize(width, height, { fit: 'cover', position: 'centre' })
      .toColourspace('srgb')
      .removeAlpha()
      .raw()
      .toBuffer();
  } catch (error) {
    throw refused(`a ${format} file sharp cannot decode (${(error as Error).message})`);
  }
  const plane = width * height;
  if (data.length !== plane * 3) throw refused(`a ${format} file that decoded to ${data.length} bytes, not ${plane * 3}`);
  const out = new Float32Array(3 * plane);
  for (let p = 0; p < plane; p++) {
    // In float32, as numpy does: x / 255, then 2x − 1.
    for (let c = 0; c < 3; c++) out[c * plane + p] = 2 * Math.fround(data[p * 3 + c] / 255) - 1;
  }
  return out;
}

function refused(got: string): UserError {
  return new UserError(Identifiers.InvalidInput, `Expected \`initImage\` to be a PNG, JPEG or WebP picture, got ${got}`);
}
