/**
 * A plain 2× enlargement of a picture (Lanczos, sharp's `lanczos3`): what a U does for a model that makes only
 * one size, where the hires fix cannot run. It adds no detail, and the bot says so.
 */
import sharp from 'sharp';
import { PARAMETERS_KEYWORD, withPostprocess } from './infotext.js';
import { copyPngText, readPngText, withPngText } from './png-text.js';

/**
 * `picture` (PNG, JPEG or WebP) brought back to the model's `width` × `height` first (nearest neighbour: the
 * posted copy of a small picture is a whole-number nearest-neighbour enlargement, so this undoes it exactly), then
 * enlarged 2× with Lanczos. The PNG keeps `picture`'s text chunks when it is a PNG that has any; its `parameters`
 * gain A1111's postprocess fields (upscaled 2× by Lanczos), so PNG Info does not read it as a 2× larger generation.
 */
export async function lanczos2x(picture: Uint8Array, width: number, height: number): Promise<Uint8Array> {
  const input = Buffer.from(picture.buffer, picture.byteOffset, picture.byteLength);
  const native = await sharp(input).rotate().resize(width, height, { kernel: 'nearest', fit: 'fill' }).toBuffer();
  const png = await sharp(native).resize(2 * width, 2 * height, { kernel: 'lanczos3' }).png().toBuffer();
  const out = new Uint8Array(png.buffer, png.byteOffset, png.byteLength);
  const isPng = picture.length >= 8 && picture[0] === 0x89 && picture[1] === 0x50 && picture[2] === 0x4e && picture[3] === 0x47;
  if (!isPng) return out;
  const parameters = readPngText(picture).get(PARAMETERS_KEYWORD);
  const copied = copyPngText(picture, out);
  return parameters === undefined ? copied : withPngText(copied, { [PARAMETERS_KEYWORD]: withPostprocess(parameters, 2, 'Lanczos') });
}
