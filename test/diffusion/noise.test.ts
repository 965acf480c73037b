import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type DiffusionModel } from '../../src/diffusion/model.js';
import { noiseSource } from '../../src/diffusion/noise.js';
import { generate, generateBatch } from '../../src/diffusion/pipeline.js';
import { BatchNoise } from '../../src/diffusion/pipeline-steps.js';
import { EulerAncestralDiscreteScheduler } from '../../src/diffusion/schedulers/euler-ancestral-discrete.js';
import { createScheduler } from '../../src/diffusion/schedulers/index.js';
import { Rng } from '../../src/diffusion/rng.js';
import { TorchCpuGenerator } from '../../src/diffusion/torch-generator.js';
import { DEFAULT_NOISE, type GenerateParams } from '../../src/diffusion/types.js';
import { readPngText } from '../../src/image/png-text.js';

/** PyTorch's own values: test/fixtures/torch-randn.py (torch 1.13, `torch.Generator('cpu').manual_seed` + randn). */
interface Expected {
  shape: number[];
  cases: { seed: number; draws: number[][] }[];
  odd: { shape: number[]; seed: number; draws: number[][] };
}
const expected = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'torch-randn-expected.json'), 'utf8')) as Expected;
const drawsOf = (seed: number) => expected.cases.find((c) => c.seed === seed)!.draws;

/**
 * Equal to float32 rounding: torch's vectorised log/sin/cos and JavaScript's may differ in the last bits of a
 * float32, so each value may be a few float32 ulps off (relative 2^-21), never more.
 */
function expectFloat32Close(actual: ArrayLike<number>, wanted: readonly number[]) {
  expect(actual.length).toBe(wanted.length);
  let worst = 0;
  for (let i = 0; i < wanted.length; i++) worst = Math.max(worst, Math.abs(actual[i] - wanted[i]) / Math.max(1, Math.abs(wanted[i])));
  expect(worst).toBeLessThanOrEqual(2 ** -21);
}

describe('TorchCpuGenerator against PyTorch', () => {
  it.each(expected.cases.map((c) => c.seed))('GIVEN seed %i THEN two randn((1, 4, 8, 8)) draws are torch\'s, in order', (seed) => {
    const generator = new TorchCpuGenerator(seed);
    for (const draw of drawsOf(seed)) {
      const out = new Float32Array(draw.length);
      generator.fillNormal(out);
      expectFloat32Close(out, draw);
    }
  });

  it('GIVEN a size that is not a multiple of 16 THEN the redrawn tail is torch\'s too', () => {
    const generator = new TorchCpuGenerator(expected.odd.seed);
    for (const draw of expected.odd.draws) {
      const out = new Float32Array(draw.length);
      generator.fillNormal(out);
      expectFloat32Close(out, draw);
    }
  });
});

describe('BatchNoise', () => {
  it('GIVEN a job of two torch images THEN each image draws from its own generator (seed + i), latents first, step noise next', () => {
    // diffusers' randn_tensor with a list of generators: one randn((1,) + shape[1:]) per image, per call.
    const noise = BatchNoise.of([{ checked: { seed: 0, count: 2, noise: 'torch' } }]);
    const per = expected.shape.reduce((a, b) => a * b, 1);
    for (const k of [0, 1]) {
      const out = new Float32Array(2 * per);
      noise.fillNormal(out);
      expectFloat32Close(out.subarray(0, per), drawsOf(0)[k]);
      expectFloat32Close(out.subarray(per), drawsOf(1)[k]);
    }
  });

  it('GIVEN jobs with different generators in one batch THEN each gets its own kind', () => {
    const noise = BatchNoise.of([
      { checked: { seed: 42, count: 1, noise: 'xoshiro' } },
      { checked: { seed: 42, count: 1, noise: 'torch' } },
    ]);
    const out = new Float32Array(2 * 256);
    noise.fillNormal(out);
    const xoshiro = new Float32Array(256);
    new Rng(42).fillNormal(xoshiro);
    expect(Array.from(out.subarray(0, 256))).toEqual(Array.from(xoshiro));
    expectFloat32Close(out.subarray(256), drawsOf(42)[0]);
  });

  it('GIVEN the names THEN noiseSource makes the matching generator', () => {
    expect(noiseSource('torch', 1)).toBeInstanceOf(TorchCpuGenerator);
    expect(noiseSource('xoshiro', 1)).toBeInstanceOf(Rng);
  });
});

describe('the pipeline\'s initial latents', () => {
  let model: DiffusionModel;
  /** Copies of the UNet's `sample` input and of its output, one per call. */
  const samples: Float32Array[] = [];
  const outputs: Float32Array[] = [];
  beforeAll(async () => {
    model = await loadModel(join(import.meta.dirname, '..', 'fixtures', 'models', 'sd-tiny'));
    // Watch the UNet's input: with DDIM (init_noise_sigma 1, no input scaling) and no CFG, the first call's sample
    // is the initial latents themselves, image by image.
    const session = model.unet.session;
    const run = session.run.bind(session) as (...args: unknown[]) => Promise<ort.InferenceSession.ReturnType>;
    (session as { run: unknown }).run = async (feeds: Record<string, ort.Tensor>, ...rest: unknown[]) => {
      samples.push(Float32Array.from(feeds[model.unet.sample.name].data as Float32Array));
      const result = await run(feeds, ...rest);
      outputs.push(Float32Array.from(result[model.unet.output.name].data as Float32Array));
      return result;
    };
  });
  afterAll(async () => {
    await model?.release();
  });

  const job: GenerateParams = { prompt: 'a red circle', steps: 2, seed: 0, guidanceScale: 1, scheduler: 'ddim' };

  it('GIVEN the default noise THEN it is torch, and image i\'s latents are torch.randn from seed + i', async () => {
    expect(DEFAULT_NOISE).toBe('torch');
    samples.length = 0;
    const result = await generate(model, { ...job, count: 2 });
    expect(result.noise).toBe('torch');
    const first = samples[0];
    expect(first.length).toBe(2 * 256);
    expectFloat32Close(first.subarray(0, 256), drawsOf(0)[0]);
    expectFloat32Close(first.subarray(256), drawsOf(1)[0]);
    // The picture says which noise: A1111's RNG field, CPU for torch's CPU generator.
    expect(readPngText(result.images[0]).get('parameters')).toMatch(/, RNG: CPU$/);
  });

  it('GIVEN noise xoshiro THEN the latents are imagine\'s own stream, and the picture says so', async () => {
    samples.length = 0;
    const result = await generate(model, { ...job, seed: 42, noise: 'xoshiro' });
    expect(result.noise).toBe('xoshiro');
    const xoshiro = new Float32Array(256);
    new Rng(42).fillNormal(xoshiro);
    expect(Array.from(samples[0])).toEqual(Array.from(xoshiro));
    expect(readPngText(result.images[0]).get('parameters')).toMatch(/, RNG: imagine$/);
  });

  it('GIVEN a torch job and a xoshiro job in one batch THEN each gets the latents it would get alone', async () => {
    samples.length = 0;
    const outcomes = await generateBatch(model, [{ params: { ...job, seed: 123456789, noise: 'torch' } }, { params: { ...job, seed: 7, noise: 'xoshiro' } }]);
    expect(outcomes.every((o) => o.ok)).toBe(true);
    expectFloat32Close(samples[0].subarray(0, 256), drawsOf(123456789)[0]);
    const xoshiro = new Float32Array(256);
    new Rng(7).fillNormal(xoshiro);
    expect(Array.from(samples[0].subarray(256))).toEqual(Array.from(xoshiro));
  });

  it('GIVEN Euler ancestral THEN its step noise is the next torch.randn of the image\'s generator, after the latents', async () => {
    // k-diffusion's sample_euler_ancestral, as diffusers' EulerAncestralDiscreteScheduler.step: x1 = x0 + eps ×
    // (σ_down − σ0) + noise × σ_up, and the UNet's second input is x1 / √(σ1² + 1). Solving for the noise from what
    // the UNet was fed and answered must give PyTorch's second draw of the seed's generator.
    samples.length = 0;
    outputs.length = 0;
    await generate(model, { ...job, seed: 42, steps: 2, scheduler: 'euler_a', noise: 'torch' });
    const scheduler = createScheduler('euler_a', model.schedulerConfig) as EulerAncestralDiscreteScheduler;
    scheduler.setTimesteps(2);
    const [s0, s1] = scheduler.sigmas;
    const sigmaUp = Math.sqrt((s1 * s1 * (s0 * s0 - s1 * s1)) / (s0 * s0));
    const sigmaDown = Math.sqrt(s1 * s1 - sigmaUp * sigmaUp);
    const [first, second] = drawsOf(42);
    const recovered = first.map((n, i) => {
      const x0 = n * scheduler.initNoiseSigma;
      const x1 = samples[1][i] * Math.sqrt(s1 * s1 + 1);
      return (x1 - x0 - outputs[0][i] * (sigmaDown - s0)) / sigmaUp;
    });
    // The first input is the latents × init_noise_sigma / √(σ0² + 1): PyTorch's first draw.
    expectFloat32Close(samples[0].map((x) => (x * Math.sqrt(s0 * s0 + 1)) / scheduler.initNoiseSigma), first);
    let worst = 0;
    for (let i = 0; i < second.length; i++) worst = Math.max(worst, Math.abs(recovered[i] - second[i]));
    // float32 arithmetic over values of size σ0 ≈ 15, divided by σ_up: within 3e-4 here; another draw is off by ~1–6.
    expect(worst).toBeLessThan(1e-3);
  });

  it('GIVEN an unknown noise name THEN the job is refused before any work, naming the choices', async () => {
    await expect(generate(model, { ...job, noise: 'gpu' as never })).rejects.toThrow('Expected `noise` to be one of torch, xoshiro, got `"gpu"`');
  });
});
