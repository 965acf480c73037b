import type { Preview } from './types.js';

/**
 * Cheap previews of the current estimate, with no VAE call.
 *
 * For 4-channel SD latents, a fixed linear map from the latent channels to RGB. The factors are the commonly used
 * SD 1.x approximation (ComfyUI, comfy/latent_formats.py, `SD15.latent_rgb_factors`), applied to the latents as the
 * UNet sees them; the result is roughly in [-1, 1].
 */
export const SD_LATENT_RGB: readonly (readonly [number, number, number])[] = [
  [0.3512, 0.2297, 0.3227],
  [0.325, 0.4974, 0.235],
  [-0.2829, 0.1762, 0.2721],
  [-0.212, -0.2616, -0.7177],
];

/**
 * Preview of image `index` in a batch laid out [batch, channels, height, width].
 * 3 channels: the image itself (pixel-space models, values in [-1, 1]); 4 channels: SD latents through the map
 * above; anything else: no preview.
 */
export function previewOf(
  data: Float32Array,
  index: number,
  channels: number,
  width: number,
  height: number,
): Preview | undefined {
  if (channels !== 3 && channels !== 4) return undefined;
  const plane = width * height;
  const base = index * channels * plane;
  const rgb = new Uint8Array(plane * 3);
  if (channels === 3) {
    for (let p = 0, o = 0; p < plane; p++, o += 3) {
      rgb[o] = toByte(data[base + p]);
      rgb[o + 1] = toByte(data[base + plane + p]);
      rgb[o + 2] = toByte(data[base + 2 * plane + p]);
    }
  } else {
    const [f0, f1, f2, f3] = SD_LATENT_RGB;
    for (let p = 0, o = 0; p < plane; p++, o += 3) {
      const l0 = data[base + p];
      const l1 = data[base + plane + p];
      const l2 = data[base + 2 * plane + p];
      const l3 = data[base + 3 * plane + p];
      rgb[o] = toByte(l0 * f0[0] + l1 * f1[0] + l2 * f2[0] + l3 * f3[0]);
      rgb[o + 1] = toByte(l0 * f0[1] + l1 * f1[1] + l2 * f2[1] + l3 * f3[1]);
      rgb[o + 2] = toByte(l0 * f0[2] + l1 * f1[2] + l2 * f2[2] + l3 * f3[2]);
    }
  }
  return { width, height, rgb };
}

/**
 * Preview from planar RGB already mapped to roughly [-1, 1] (the WebGPU loop maps latents to RGB on the GPU with
 * the same factors and reads back only these three planes): image `index` of `data` laid out [k, 3, height, width].
 */
export function previewOfRgbPlanes(data: Float32Array, index: number, width: number, height: number): Preview {
  const plane = width * height;
  const base = index * 3 * plane;
  const rgb = new Uint8Array(plane * 3);
  for (let p = 0, o = 0; p < plane; p++, o += 3) {
    rgb[o] = toByte(data[base + p]);
    rgb[o + 1] = toByte(data[base + plane + p]);
    rgb[o + 2] = toByte(data[base + 2 * plane + p]);
  }
  return { width, height, rgb };
}

/** [-1, 1] → 0..255 (clamped, rounded half up: a preview needs no more care). */
function toByte(v: number): number {
  const u = v * 127.5 + 128;
  return u <= 0 ? 0 : u >= 255 ? 255 : u | 0;
}
