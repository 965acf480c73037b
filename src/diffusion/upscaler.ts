/**
 * A model's own super-resolution network, `upscaler/model.onnx` with `upscaler/config.json` (`{ "scale": 2 }`),
 * used by a U instead of the hires fix when the folder has one. The contract is the one Real-ESRGAN's and Swin2SR's
 * ONNX exports share: one float32 input [batch, 3, height, width], RGB in [0, 1], one output [batch, 3,
 * scale × height, scale × width] in [0, 1].
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { initImagePixels } from '../image/init-image.js';
import { ModelLoadError } from './model-error.js';
import { misfit, readJson, specsOf, type TensorSpec } from './model-parts.js';

export interface UpscalerPart {
  session: ort.InferenceSession;
  file: string;
  input: TensorSpec;
  output: TensorSpec;
  /** Output pixels per input pixel, along each side (config.json's `scale`). */
  scale: number;
}

/** The folder's `upscaler/`, checked; undefined when it has none. */
export async function openUpscaler(
  dir: string,
  open: (part: string) => Promise<{ session: ort.InferenceSession; file: string }>,
): Promise<UpscalerPart | undefined> {
  if (!existsSync(join(dir, 'upscaler', 'model.onnx'))) return undefined;
  const configPath = join(dir, 'upscaler', 'config.json');
  if (!existsSync(configPath)) throw new ModelLoadError(`${configPath}: expected the upscaler's config (e.g. { "scale": 2 }) beside upscaler/model.onnx`);
  const scale = readJson(configPath).scale;
  if (scale !== 2 && scale !== 4) throw new ModelLoadError(`${configPath}: expected \`scale\` to be 2 or 4, got \`${JSON.stringify(scale)}\``);
  const { session, file } = await open('upscaler');
  const [input, ...otherInputs] = specsOf(session, 'input');
  if (!input || otherInputs.length > 0 || input.type !== 'float32' || input.shape.length !== 4) {
    throw misfit(file, 'one input of float32 [batch, 3, height, width]', input);
  }
  const [output] = specsOf(session, 'output');
  if (!output || output.type !== 'float32' || output.shape.length !== 4) throw misfit(file, 'an output of float32 [batch, 3, height, width]', output);
  return { session, file, input, output, scale };
}

/**
 * `picture` (PNG, JPEG or WebP) at `width / scale` × `height / scale` (scaled to cover and cropped at the centre,
 * as img2img reads its picture), through the network: RGB bytes of `width` × `height`.
 */
export async function upscalePicture(part: UpscalerPart, picture: Uint8Array, width: number, height: number): Promise<Uint8Array> {
  const sourceWidth = width / part.scale;
  const sourceHeight = height / part.scale;
  // [-1, 1] → [0, 1], the super-resolution networks' range.
  const pixels = await initImagePixels(picture, sourceWidth, sourceHeight);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (pixels[i] + 1) / 2;
  const feeds = { [part.input.name]: new ort.Tensor('float32', pixels, [1, 3, sourceHeight, sourceWidth]) };
  const outputs = await part.session.run(feeds);
  const out = outputs[part.output.name];
  const [, channels, outHeight, outWidth] = out.dims;
  if (channels !== 3 || outHeight !== height || outWidth !== width) {
    throw new Error(`${part.file}: expected an output of [1, 3, ${height}, ${width}], got [${out.dims.join(', ')}]`);
  }
  const data = out.data as Float32Array;
  const plane = width * height;
  const rgb = new Uint8Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < plane; p++) {
      const v = data[c * plane + p];
      rgb[p * 3 + c] = Math.round((v < 0 ? 0 : v > 1 ? 1 : v) * 255);
    }
  }
  return rgb;
}
