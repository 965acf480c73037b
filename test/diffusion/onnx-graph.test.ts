import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { identityGraph, previewGraph, stepGraph } from '../../src/diffusion/gpu-graphs.js';
import { onnxModel } from '../../src/diffusion/onnx-graph.js';
import { previewOf } from '../../src/diffusion/preview.js';

// An Identity model (float [1] x → y, graph "g", opset 13, ir_version 8) as onnx.helper serialized it: the bytes
// src/diffusion/execution-providers.ts carried, written out, until b88699f (its comment named onnx.helper).
const ONNX_HELPER_IDENTITY = [
  0x08, 0x08, 0x3a, 0x37, 0x0a, 0x10, 0x0a, 0x01, 0x78, 0x12, 0x01, 0x79, 0x22, 0x08, 0x49, 0x64, 0x65, 0x6e, 0x74,
  0x69, 0x74, 0x79, 0x12, 0x01, 0x67, 0x5a, 0x0f, 0x0a, 0x01, 0x78, 0x12, 0x0a, 0x0a, 0x08, 0x08, 0x01, 0x12, 0x04,
  0x0a, 0x02, 0x08, 0x01, 0x62, 0x0f, 0x0a, 0x01, 0x79, 0x12, 0x0a, 0x0a, 0x08, 0x08, 0x01, 0x12, 0x04, 0x0a, 0x02,
  0x08, 0x01, 0x42, 0x04, 0x0a, 0x00, 0x10, 0x0d,
];

const f32 = (values: number[], dims: number[]) => new ort.Tensor('float32', Float32Array.from(values), dims);
const scalar = (v: number) => new ort.Tensor('float32', Float32Array.of(v), []);
const int64 = (values: number[]) => new ort.Tensor('int64', BigInt64Array.from(values, BigInt), [values.length]);

describe('onnxModel', () => {
  it('GIVEN the Identity graph onnx.helper wrote THEN it writes the same bytes', () => {
    const bytes = onnxModel({
      name: 'g',
      inputs: [{ name: 'x', type: 'float32', dims: [1] }],
      outputs: [{ name: 'y', type: 'float32', dims: [1] }],
      nodes: [{ op: 'Identity', inputs: ['x'], outputs: ['y'] }],
      opset: 13,
    });
    expect(Array.from(bytes)).toEqual(ONNX_HELPER_IDENTITY);
  });

  it('GIVEN the identity graph of any rank THEN onnxruntime runs it on a 3-d tensor', async () => {
    const session = await ort.InferenceSession.create(identityGraph('float32'));
    const out = await session.run({ x: f32([1, 2, 3, 4, 5, 6], [1, 2, 3]) });
    expect(Array.from(out.y.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(out.y.dims).toEqual([1, 2, 3]);
    await session.release();
  });
});

describe('the GPU loop graphs, run on cpu', () => {
  it('GIVEN a guided and an unguided image THEN the step graph computes guidance, x0 (clipped), x_{t−1} and the next input as written out', async () => {
    const session = await ort.InferenceSession.create(stepGraph({ sample: 'float32', hidden: 'float32', output: 'float32' }));
    // 2 images of 1×1×2; UNet rows: [uncond of image 0 | cond 0 | cond 1] (image 1 has no guidance).
    const pred = [0.1, -0.2, 0.5, 0.4, -0.3, 0.7];
    const latents = [1, -2, 0.5, 3];
    const c = { x0Sample: 0.9, x0Output: -0.6, clip: 1.5, prevSample: 0.3, prevOutput: 0.2, prevX0: 0.8, nextScale: 0.25 };
    const g = [7.5, 1];
    const out = await session.run({
      noise_pred: f32(pred, [3, 1, 1, 2]),
      latents: f32(latents, [2, 1, 1, 2]),
      uncond_index: int64([0, 2]),
      cond_index: int64([1, 2]),
      guidance: f32(g, [2, 1, 1, 1]),
      expand_index: int64([0, 0, 1]),
      x0_sample: scalar(c.x0Sample),
      x0_output: scalar(c.x0Output),
      clip_min: scalar(-c.clip),
      clip_max: scalar(c.clip),
      prev_sample: scalar(c.prevSample),
      prev_output: scalar(c.prevOutput),
      prev_x0: scalar(c.prevX0),
      next_scale: scalar(c.nextScale),
    });
    const guided = [0, 1].flatMap((k) => {
      const u = k === 0 ? pred.slice(0, 2) : pred.slice(4, 6);
      const cond = k === 0 ? pred.slice(2, 4) : pred.slice(4, 6);
      return u.map((ui, i) => ui + g[k] * (cond[i] - ui));
    });
    const x0 = latents.map((x, i) => Math.min(Math.max(c.x0Sample * x + c.x0Output * guided[i], -c.clip), c.clip));
    const prev = latents.map((x, i) => c.prevSample * x + c.prevOutput * guided[i] + c.prevX0 * x0[i]);
    const sample = [...prev.slice(0, 2), ...prev].map((v) => v * c.nextScale);
    const close = (got: ort.Tensor, want: number[]) => Array.from(got.data as Float32Array).forEach((v, i) => expect(v).toBeCloseTo(want[i], 5));
    close(out.denoised, x0);
    close(out.latents_out, prev);
    close(out.sample_out, sample);
    expect(out.sample_out.dims).toEqual([3, 1, 1, 2]);
    expect(x0.some((v) => Math.abs(v) === c.clip)).toBe(true); // the clip was exercised
    await session.release();
  });

  it('GIVEN float16 UNet types THEN the step graph takes and gives float16 where the UNet does', async () => {
    const session = await ort.InferenceSession.create(stepGraph({ sample: 'float16', hidden: 'float16', output: 'float16' }));
    expect(session.inputMetadata.find((m) => m.name === 'noise_pred')).toMatchObject({ type: 'float16' });
    expect(session.outputMetadata.find((m) => m.name === 'sample_out')).toMatchObject({ type: 'float16' });
    expect(session.outputMetadata.find((m) => m.name === 'latents_out')).toMatchObject({ type: 'float32' });
    await session.release();
  });

  it('GIVEN 4-channel latents THEN the preview graph gives the rows previewOf maps, as RGB planes', async () => {
    const session = await ort.InferenceSession.create(previewGraph(4));
    // 2 images of 4 channels × 1×2 cells.
    const data = Float32Array.from({ length: 16 }, (_, i) => Math.sin(i * 0.9));
    const out = await session.run({ denoised: new ort.Tensor('float32', data, [2, 4, 1, 2]), rows: int64([1]) });
    expect(out.rgb.dims).toEqual([1, 3, 1, 2]);
    const planes = out.rgb.data as Float32Array;
    const expected = previewOf(data, 1, 4, 2, 1)!.rgb;
    for (let p = 0; p < 2; p++) {
      for (let ch = 0; ch < 3; ch++) {
        // previewOf's bytes are v × 127.5 + 128 truncated: the planes' values must land in the same byte.
        expect(Math.trunc(planes[ch * 2 + p] * 127.5 + 128)).toBe(expected[p * 3 + ch]);
      }
    }
    await session.release();
  });
});
