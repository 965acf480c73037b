/**
 * The webgpu loop (src/diffusion/gpu-loop.ts) on a real WebGPU device: onnxruntime-node's WebGPU provider (Dawn)
 * over Vulkan, on Chromium's SwiftShader, a software Vulkan device that CI installs with the chromium package. Real
 * adapter, real shaders, slow. Each case runs the same job on webgpu and on cpu and compares the pictures.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isUserError } from '../../src/errors.js';
import { createWorkerPool } from '../../src/diffusion/engine/worker-pool.js';
import { loadModel, type DiffusionModel } from '../../src/diffusion/model.js';
import { generate, generateBatch } from '../../src/diffusion/pipeline.js';
import type { GenerateParams, GenerateResult, Preview } from '../../src/diffusion/types.js';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
const haveDevice = existsSync(SWIFTSHADER_ICD);
if (!haveDevice) {
  console.warn(`gpu-loop.test.ts: skipped: ${SWIFTSHADER_ICD} is absent (Debian's chromium package installs SwiftShader's Vulkan ICD)`);
} else {
  // Read by the Vulkan loader when Dawn makes its first device (the first webgpu session), not at import.
  process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
}

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'models');
const EMBEDDED = join(import.meta.dirname, '..', '..', 'models', 'imagine-shapes');

/**
 * Largest and mean absolute difference per RGB byte between the cpu's and the GPU's pictures. The GPU's kernels
 * sum in another order, and the step graph computes x_{t−1} = a·x + b·m + c·x0 where the cpu scheduler rounds
 * step by step: float32 differences of ~1e-6 relative that move a byte across a rounding edge now and then.
 */
const MAX_BYTE_DIFF = 3;
const MEAN_BYTE_DIFF = 0.1;

async function pixels(result: GenerateResult): Promise<Buffer[]> {
  return Promise.all(result.images.map((png) => sharp(png).raw().toBuffer()));
}

function compare(a: Buffer[] | Uint8Array[], b: Buffer[] | Uint8Array[]): { max: number; mean: number } {
  expect(b.length).toBe(a.length);
  let max = 0;
  let sum = 0;
  let n = 0;
  for (let k = 0; k < a.length; k++) {
    expect(b[k].length).toBe(a[k].length);
    for (let i = 0; i < a[k].length; i++) {
      const d = Math.abs(a[k][i] - b[k][i]);
      max = Math.max(max, d);
      sum += d;
      n++;
    }
  }
  return { max, mean: sum / n };
}

interface Run {
  result: GenerateResult;
  steps: number[];
  previews: Preview[];
}

async function run(model: DiffusionModel, params: GenerateParams): Promise<Run> {
  const steps: number[] = [];
  const previews: Preview[] = [];
  const result = await generate(model, params, {
    onProgress: (p) => {
      steps.push(p.step);
      if (p.preview) previews.push(p.preview);
    },
  });
  return { result, steps, previews };
}

describe.skipIf(!haveDevice)('the webgpu loop on SwiftShader', () => {
  const gpu = {} as Record<'shapes' | 'tiny' | 'pixel', DiffusionModel>;
  const cpu = {} as Record<'shapes' | 'tiny' | 'pixel', DiffusionModel>;
  const dirs = { shapes: EMBEDDED, tiny: join(FIXTURES, 'sd-tiny'), pixel: join(FIXTURES, 'pixel-tiny') };

  beforeAll(async () => {
    for (const [name, dir] of Object.entries(dirs) as [keyof typeof dirs, string][]) {
      gpu[name] = await loadModel(dir, { executionProviders: ['webgpu'] });
      cpu[name] = await loadModel(dir);
    }
  });
  afterAll(async () => {
    for (const model of [...Object.values(gpu), ...Object.values(cpu)]) await model?.release();
  });

  it('GIVEN webgpu asked for THEN the sessions run on it and the UNet hands back a GPU buffer', async () => {
    const model = gpu.tiny;
    expect(model.executionProvider).toBe('webgpu');
    const { unet } = model;
    const dims = [2, model.channels, model.info.height / model.info.latentFactor, model.info.width / model.info.latentFactor];
    const seq = model.tokenizer.maxLength;
    const hidden = Number(unet.encoderHiddenStates.shape[2]);
    const out = await unet.session.run({
      [unet.sample.name]: new ort.Tensor('float32', new Float32Array(dims.reduce((a, b) => a * b)), dims),
      [unet.timestep.name]: new ort.Tensor('int64', new BigInt64Array(2).fill(500n), [2]),
      [unet.encoderHiddenStates.name]: new ort.Tensor('float32', new Float32Array(2 * seq * hidden), [2, seq, hidden]),
    });
    const prediction = out[unet.output.name];
    expect(prediction.location).toBe('gpu-buffer');
    prediction.dispose();
  });

  it('GIVEN the embedded model (DDIM, v-prediction) with guidance THEN pictures and previews match the cpu loop, and only the previews and the last latents come back', async () => {
    const params: GenerateParams = { prompt: 'a red circle on a blue background', steps: 3, seed: 7, guidanceScale: 7.5, count: 2 };
    const [onGpu, onCpu] = [await run(gpu.shapes, params), await run(cpu.shapes, params)];
    const diff = compare(await pixels(onCpu.result), await pixels(onGpu.result));
    expect(diff.max).toBeLessThanOrEqual(MAX_BYTE_DIFF);
    expect(diff.mean).toBeLessThanOrEqual(MEAN_BYTE_DIFF);
    expect(onGpu.steps).toEqual([1, 2, 3]);
    expect(onGpu.previews).toHaveLength(3);
    expect(compare(onCpu.previews.map((p) => p.rgb), onGpu.previews.map((p) => p.rgb)).max).toBeLessThanOrEqual(MAX_BYTE_DIFF);
    // Host reads: one preview a step (3 RGB planes of the first image) and the last latents of both images; the
    // UNet's prediction and the latents never came back between steps.
    const cells = (gpu.shapes.info.width / gpu.shapes.info.latentFactor) * (gpu.shapes.info.height / gpu.shapes.info.latentFactor);
    expect(onGpu.result.timings.gpuCopies).toMatchObject({ toHost: 3 + 1, toHostBytes: 3 * 3 * cells * 4 + 2 * gpu.shapes.channels * cells * 4 });
    expect(onCpu.result.timings.gpuCopies).toBeUndefined();
  });

  it('GIVEN a batch of a guided and an unguided job (Euler) THEN each matches its cpu picture', async () => {
    const jobs = [
      { params: { prompt: 'a blue square', steps: 3, seed: 1, guidanceScale: 7.5, scheduler: 'euler', count: 2 } as GenerateParams },
      { params: { prompt: 'a green triangle', steps: 3, seed: 2, guidanceScale: 1, scheduler: 'euler' } as GenerateParams },
    ];
    const [onGpu, onCpu] = [await generateBatch(gpu.tiny, jobs), await generateBatch(cpu.tiny, jobs)];
    for (let k = 0; k < jobs.length; k++) {
      const [g, c] = [onGpu[k], onCpu[k]];
      if (!g.ok || !c.ok) throw new Error(`job ${k} failed: ${!g.ok ? g.error.message : !c.ok ? c.error.message : ''}`);
      const diff = compare(await pixels(c.result), await pixels(g.result));
      expect(diff.max, `job ${k}`).toBeLessThanOrEqual(MAX_BYTE_DIFF);
      expect(diff.mean, `job ${k}`).toBeLessThanOrEqual(MEAN_BYTE_DIFF);
    }
  });

  it('GIVEN a scheduler that steps in JS (euler_a) THEN guidance runs on the GPU, one guided read a step, same pictures', async () => {
    const params: GenerateParams = { prompt: 'a red circle', steps: 3, seed: 5, guidanceScale: 7.5, scheduler: 'euler_a', count: 2 };
    const [onGpu, onCpu] = [await run(gpu.tiny, params), await run(cpu.tiny, params)];
    const diff = compare(await pixels(onCpu.result), await pixels(onGpu.result));
    expect(diff.max).toBeLessThanOrEqual(MAX_BYTE_DIFF);
    expect(diff.mean).toBeLessThanOrEqual(MEAN_BYTE_DIFF);
    const cells = (gpu.tiny.info.width / gpu.tiny.info.latentFactor) * (gpu.tiny.info.height / gpu.tiny.info.latentFactor);
    // The guided prediction of the 2 images (not the 4 UNet rows) each step; previews from the host's estimate.
    expect(onGpu.result.timings.gpuCopies).toMatchObject({ toHost: 3, toHostBytes: 3 * 2 * gpu.tiny.channels * cells * 4 });
    expect(onGpu.previews).toHaveLength(3);
  });

  it('GIVEN img2img (a picture, strength 0.5, Euler) THEN the loop starts mid-schedule as on cpu', async () => {
    const picture = new Uint8Array(await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 200, g: 40, b: 40 } } }).png().toBuffer());
    const params: GenerateParams = { prompt: 'a red circle', steps: 4, seed: 4, guidanceScale: 7.5, scheduler: 'euler', initImage: picture, strength: 0.5 };
    const [onGpu, onCpu] = [await run(gpu.tiny, params), await run(cpu.tiny, params)];
    expect(onGpu.steps).toEqual(onCpu.steps);
    const diff = compare(await pixels(onCpu.result), await pixels(onGpu.result));
    expect(diff.max).toBeLessThanOrEqual(MAX_BYTE_DIFF);
    expect(diff.mean).toBeLessThanOrEqual(MEAN_BYTE_DIFF);
  });

  it('GIVEN a pixel-space model (3 channels) THEN its previews come from the GPU and match the cpu ones', async () => {
    const params: GenerateParams = { prompt: 'a red circle', steps: 2, seed: 3, guidanceScale: 7.5, scheduler: 'euler' };
    const [onGpu, onCpu] = [await run(gpu.pixel, params), await run(cpu.pixel, params)];
    expect(compare(await pixels(onCpu.result), await pixels(onGpu.result)).max).toBeLessThanOrEqual(MAX_BYTE_DIFF);
    expect(onGpu.previews).toHaveLength(2);
    expect(compare(onCpu.previews.map((p) => p.rgb), onGpu.previews.map((p) => p.rgb)).max).toBeLessThanOrEqual(MAX_BYTE_DIFF);
  });

  it('GIVEN an abort after step 1 THEN the job is cancelled between steps, and the next job on the same model runs', async () => {
    const controller = new AbortController();
    const steps: number[] = [];
    const params: GenerateParams = { prompt: 'a red circle', steps: 4, seed: 9, guidanceScale: 7.5, scheduler: 'euler' };
    const error = await generate(gpu.tiny, params, {
      signal: controller.signal,
      onProgress: (p) => {
        steps.push(p.step);
        if (p.step === 1) controller.abort();
      },
    }).catch((e: unknown) => e);
    expect(isUserError(error) && error.identifier).toBe('cancelled');
    expect(steps).toEqual([1]);
    const after = await generate(gpu.tiny, { ...params, steps: 2 });
    const onCpu = await generate(cpu.tiny, { ...params, steps: 2 });
    expect(compare(await pixels(onCpu), await pixels(after)).max).toBeLessThanOrEqual(MAX_BYTE_DIFF);
  });

  it('GIVEN a float16 model and a device without float16 kernels (SwiftShader) THEN it loads on cpu and says why', async () => {
    const lines: string[] = [];
    const model = await loadModel(join(FIXTURES, 'sd-tiny-fp16'), { executionProviders: ['webgpu'], log: (line) => lines.push(line) });
    try {
      expect(model.executionProvider).toBe('cpu');
      expect(lines.join('\n')).toMatch(/float16 model and this webgpu device has no float16 kernels/);
      const result = await generate(model, { prompt: 'a red circle', steps: 2, seed: 1, guidanceScale: 7.5, scheduler: 'euler' });
      expect(result.images).toHaveLength(1);
    } finally {
      await model.release();
    }
  });

  it('GIVEN EXECUTION_PROVIDERS=webgpu as the bot runs it (the engine in worker threads) THEN the worker runs the GPU loop and its picture matches cpu', async () => {
    const lines: string[] = [];
    const pool = await createWorkerPool({ modelDir: EMBEDDED, log: (line) => lines.push(line), loadOptions: { executionProviders: ['webgpu'] } });
    try {
      const params: GenerateParams = { prompt: 'a blue square', steps: 4, seed: 3, guidanceScale: 7.5, scheduler: 'ddim' };
      const onGpu = await pool.generate(params);
      expect(lines.join('\n')).toMatch(/running on webgpu/);
      // One read-back of the finished latents: the loop itself stayed on the GPU.
      expect(onGpu.timings.gpuCopies?.toHost).toBe(1);
      const onCpu = await generate(cpu.shapes, params);
      expect(compare(await pixels(onCpu), await pixels(onGpu)).max).toBeLessThanOrEqual(MAX_BYTE_DIFF);
    } finally {
      await pool.close();
    }
  });
});
