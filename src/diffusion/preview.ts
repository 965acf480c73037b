import type { Preview } from './types.js';

/**
 * Cheap previews of the current estimate, with no VAE call.
 *
 * For 4-channel SD latents, a fixed linear map from the latent channels to RGB. The factors are the commonly used
 * SD 1.x approximation (ComfyUI, comfy/latent_formats.py, `SD15.latent_rgb_factors`), applied to the latents as the
 * UNet sees them; the result is roughly in [-1, 1].
 */
const SD_LATENT_RGB: readonly (readonly [number, number, number])[] = [
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
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      let v: number;
      if (channels === 3) {
        v = data[base + c * plane + p];
      } else {
        v = 0;
        for (let k = 0; k < 4; k++) v += data[base + k * plane + p] * SD_LATENT_RGB[k][c];
      }
      const u = v / 2 + 0.5;
      rgb[p * 3 + c] = Math.round((u < 0 ? 0 : u > 1 ? 1 : u) * 255);
    }
  }
  return { width, height, rgb };
}
