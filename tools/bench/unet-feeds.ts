/** Inputs for a bare UNet `run()`: the same names, dtypes and shapes the pipeline feeds, filled with seeded noise. */
import * as ort from 'onnxruntime-node';
import type { DiffusionModel, TensorSpec } from '../../src/diffusion/model.js';
import { Rng } from '../../src/diffusion/rng.js';
import { toHalf } from '../../src/diffusion/tensor.js';

function floatTensor(type: string, data: Float32Array, dims: number[]): ort.Tensor {
  return type === 'float16' ? new ort.Tensor('float16', toHalf(data, new Uint16Array(data.length)), dims) : new ort.Tensor('float32', data, dims);
}

function noise(length: number, seed: number): Float32Array {
  const out = new Float32Array(length);
  new Rng(seed).fillNormal(out);
  return out;
}

function timestep(spec: TensorSpec, t: number, batch: number): ort.Tensor {
  const dims = spec.shape.length === 0 ? [] : typeof spec.shape[0] === 'number' && spec.shape[0] > 0 ? [spec.shape[0]] : [batch];
  const n = dims.length === 0 ? 1 : dims[0];
  switch (spec.type) {
    case 'int64':
      return new ort.Tensor('int64', new BigInt64Array(n).fill(BigInt(t)), dims);
    case 'int32':
      return new ort.Tensor('int32', new Int32Array(n).fill(t), dims);
    default:
      return floatTensor(spec.type, new Float32Array(n).fill(t), dims);
  }
}

/** What one guided step feeds the UNet: `batch` rows (2 × images with classifier-free guidance) at the model's size. */
export interface UnetShape {
  batch: number;
  channels: number;
  height: number;
  width: number;
  sequence: number;
  hidden: number;
}

export function unetShapeOf(model: DiffusionModel, batch: number): UnetShape {
  const hidden = model.unet.encoderHiddenStates.shape[2];
  return {
    batch,
    channels: model.channels,
    height: model.info.height / model.info.latentFactor,
    width: model.info.width / model.info.latentFactor,
    sequence: model.tokenizer.maxLength,
    hidden: typeof hidden === 'number' && hidden > 0 ? hidden : model.textEncoder.lastHiddenState.shape[2] as number,
  };
}

/** Feeds for `model.unet.session.run()` at `shape`; timestep 500, as a mid-schedule step. */
export function unetFeeds(model: DiffusionModel, shape: UnetShape): Record<string, ort.Tensor> {
  const { unet } = model;
  const type = unet.sample.type;
  const { batch, channels, height, width, sequence, hidden } = shape;
  const feeds: Record<string, ort.Tensor> = {
    [unet.sample.name]: floatTensor(type, noise(batch * channels * height * width, 1), [batch, channels, height, width]),
    [unet.timestep.name]: timestep(unet.timestep, 500, batch),
    [unet.encoderHiddenStates.name]: floatTensor(type, noise(batch * sequence * hidden, 2), [batch, sequence, hidden]),
  };
  if (unet.timestepCond) {
    feeds[unet.timestepCond.name] = floatTensor(type, noise(batch * model.timestepCondDim, 3), [batch, model.timestepCondDim]);
  }
  return feeds;
}
