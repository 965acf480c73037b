import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isUserError } from '../../src/errors.js';
import { loadModel, type DiffusionModel } from '../../src/diffusion/model.js';
import { EMBEDDED_MODEL_DIR } from '../../src/diffusion/model-path.js';
import { generate } from '../../src/diffusion/pipeline.js';
import { describeImage, scoreImage, type Expectation, type RgbImage } from '../../src/eval/checker.js';

// The embedded model (models/imagine-shapes, trained by training/: v2, latent, 64×64) through the normal loader and pipeline, judged by
// the same checker as `npm run eval`. Each prompt runs with four fixed seeds and must come out right for at least
// three: a model that meets the eval targets does that easily, one that ignores the prompt cannot.

let model: DiffusionModel;

beforeAll(async () => {
  model = await loadModel(EMBEDDED_MODEL_DIR, { intraOpNumThreads: 1 });
});

afterAll(async () => {
  await model?.release();
});

async function draw(prompt: string, seed: number): Promise<RgbImage> {
  const out = await generate(model, { prompt, seed, steps: 20, guidanceScale: 7.5 }, { previewEvery: 0 });
  const { data, info } = await sharp(out.images[0]).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, rgb: new Uint8Array(data) };
}

const SEEDS = [1, 2, 3, 4];

async function passes(prompt: string, want: Expectation): Promise<{ passed: number; scores: object[] }> {
  const scores = [];
  let passed = 0;
  for (const seed of SEEDS) {
    const score = scoreImage(await draw(prompt, seed), want);
    scores.push(score);
    if (Object.values(score).every(Boolean)) passed++;
  }
  return { passed, scores };
}

describe('embedded model (models/imagine-shapes)', () => {
  it('GIVEN the model folder THEN the normal loader reads a 64×64 latent model with its own VAE, tokenizer and scheduler', () => {
    expect(model.info).toMatchObject({ name: 'imagine-shapes', width: 64, height: 64, latentFactor: 4, maxTokens: 32 });
    expect(model.vaeDecoder?.latentSample.name).toBe('latent_sample');
    expect(model.vaeEncoder?.latentKind).toBe('sample');
    expect(model.channels).toBe(4);
    // training/vae.py's measured 1 / std of the latents, not diffusers' SD default.
    expect(model.scalingFactor).not.toBeCloseTo(0.18215, 3);
    expect(model.info.defaultScheduler).toBe('ddim');
  });

  it('GIVEN "a red circle on a white background" THEN a red, round foreground on white', async () => {
    const want: Expectation = { background: 'white', count: 1, objects: [{ color: 'red', shape: 'circle', position: null }] };
    const { passed, scores } = await passes('a red circle on a white background', want);
    expect(passed, JSON.stringify(scores)).toBeGreaterThanOrEqual(3);
  });

  it('GIVEN "a big yellow square on a blue background" THEN a yellow square on blue', async () => {
    const want: Expectation = { background: 'blue', count: 1, objects: [{ color: 'yellow', shape: 'square', position: null }] };
    const { passed, scores } = await passes('a big yellow square on a blue background', want);
    expect(passed, JSON.stringify(scores)).toBeGreaterThanOrEqual(3);
  });

  it('GIVEN "a small green triangle on the left, black background" THEN a green triangle on the left on black', async () => {
    const want: Expectation = { background: 'black', count: 1, objects: [{ color: 'green', shape: 'triangle', position: 'left' }] };
    const { passed, scores } = await passes('a small green triangle on the left, black background', want);
    expect(passed, JSON.stringify(scores)).toBeGreaterThanOrEqual(3);
  });

  // Relations are v2's weak point (64.6 % of `npm run eval`'s held-out relation prompts with torch noise, short of
  // the 80 % target; the misses swap the two shapes, never the colours' sides). This prompt holds on at least 3 of
  // its 4 seeds with the default noise.
  it('GIVEN "a red circle to the left of a blue square on a white background" THEN the red circle stands left of the blue square', async () => {
    const want: Expectation = {
      background: 'white',
      count: 2,
      objects: [
        { color: 'red', shape: 'circle', position: null },
        { color: 'blue', shape: 'square', position: null },
      ],
      relation: 'left',
    };
    const { passed, scores } = await passes('a red circle to the left of a blue square on a white background', want);
    expect(passed, JSON.stringify(scores)).toBeGreaterThanOrEqual(3);
  });

  it('GIVEN "two green triangles on a white background" THEN exactly two green objects', async () => {
    const want: Expectation = { background: 'white', count: 2, objects: [{ color: 'green', shape: 'triangle', position: null }], counted: true };
    const { passed, scores } = await passes('two green triangles on a white background', want);
    expect(passed, JSON.stringify(scores)).toBeGreaterThanOrEqual(3);
  });

  it('GIVEN words the model never saw THEN they become [UNK] and the picture still follows the words it knows', async () => {
    const prompt = 'a gorgeous red circle on a white background, trending on artstation, 8k';
    const ids = model.tokenizer.encode(prompt).ids;
    const unk = model.tokenizer.rawIds('zxqv')[1];
    expect(ids.filter((id) => id === unk).length).toBeGreaterThanOrEqual(4);
    const want: Expectation = { background: 'white', count: 1, objects: [{ color: 'red', shape: 'circle', position: null }] };
    const { passed, scores } = await passes(prompt, want);
    expect(passed, JSON.stringify(scores)).toBeGreaterThanOrEqual(3);
  });

  it('GIVEN a prompt of only punctuation and emoji THEN a picture is still made (all unknown tokens)', async () => {
    const seen = describeImage(await draw('!!! ??? 🎨', 7));
    expect(seen.background).toMatch(/^(red|green|blue|yellow|purple|orange|white|black)$/);
  });

  it('GIVEN a blank prompt THEN the pipeline refuses it as a user error before any work', async () => {
    const error = await generate(model, { prompt: '   ', seed: 1, steps: 20, guidanceScale: 7.5 }).catch((e: unknown) => e);
    expect(isUserError(error)).toBe(true);
    expect((error as Error).message).toContain('empty prompt');
  });
});
