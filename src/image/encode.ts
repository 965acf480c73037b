/**
 * Pixels out of the pipeline: planar float images in [-1, 1] to interleaved RGB bytes, and RGB bytes to PNG.
 */
import sharp from 'sharp';

/**
 * Planar (CHW) float image in [-1, 1] → interleaved RGB bytes, as diffusers' postprocess does:
 * clip(x / 2 + 0.5, 0, 1), then × 255 and round.
 * @param data the batch tensor's data; the image starts at `offset` and has 3 planes of width × height.
 */
export function planarToRgb(data: Float32Array, offset: number, width: number, height: number, out?: Uint8Array): Uint8Array {
  const plane = width * height;
  const rgb = out ?? new Uint8Array(plane * 3);
  if (rgb.length !== plane * 3) throw new Error(`Expected an output of ${plane * 3} bytes, got ${rgb.length}`);
  for (let c = 0; c < 3; c++) {
    const base = offset + c * plane;
    for (let p = 0; p < plane; p++) {
      const v = data[base + p] / 2 + 0.5;
      rgb[p * 3 + c] = Math.round((v < 0 ? 0 : v > 1 ? 1 : v) * 255);
    }
  }
  return rgb;
}

/** Encode interleaved RGB bytes as a PNG. The same bytes in give the same PNG out. */
export async function encodePng(rgb: Uint8Array, width: number, height: number): Promise<Uint8Array> {
  if (rgb.length !== width * height * 3) {
    throw new Error(`Expected ${width}×${height}×3 = ${width * height * 3} bytes, got ${rgb.length}`);
  }
  const png = await sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), { raw: { width, height, channels: 3 } })
    .png({ compressionLevel: 6 })
    .toBuffer();
  // A copy that owns its whole ArrayBuffer: it can be transferred between threads (a Buffer may be a pool slice).
  return new Uint8Array(png);
}

/** Enlarge RGB bytes by an integer factor with nearest neighbour (crisp cells for small previews). */
export async function upscaleRgb(rgb: Uint8Array, width: number, height: number, factor: number): Promise<Uint8Array> {
  if (!Number.isInteger(factor) || factor < 1) throw new Error(`Expected \`factor\` to be a positive integer, got \`${factor}\``);
  const out = await sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), { raw: { width, height, channels: 3 } })
    .resize(width * factor, height * factor, { kernel: 'nearest' })
    .raw()
    .toBuffer();
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}
