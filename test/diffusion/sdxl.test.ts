/**
 * SDXL through the pipeline (issue 12) with sdxl-tiny (test/fixtures/build-sdxl-tiny.py): what the UNet is fed is
 * recorded at its session and compared with values computed here, independently, by running the fixture's text
 * encoders directly: diffusers' StableDiffusionXLPipeline.encode_prompt and _get_add_time_ids as the reference.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, ModelLoadError, type DiffusionModel } from '../../src/diffusion/model.js';
import { checkUnet } from '../../src/diffusion/model-parts.js';
import { generate, generateBatch } from '../../src/diffusion/pipeline.js';
import type { GenerateParams } from '../../src/diffusion/types.js';

const MODELS = join(import.meta.dirname, '..', 'fixtures', 'models');
const SDXL_TINY = join(MODELS, 'sdxl-tiny');
const temp = mkdtempSync(join(tmpdir(), 'imagine-sdxl-'));
const SEQ = 77;

interface Fed {
  name: string;
  type: string;
  dims: readonly number[];
  data: Float32Array;
}

/** Records every UNet call's float inputs (copies: the pipeline refills its buffers in place). */
function recordUnet(model: DiffusionModel): Record<string, Fed>[] {
  const calls: Record<string, Fed>[] = [];
  const session = model.unet.session;
  const run = session.run.bind(session) as (...args: unknown[]) => Promise<ort.InferenceSession.OnnxValueMapType>;
  (session as { run: unknown }).run = (feeds: Record<string, ort.Tensor>, ...rest: unknown[]) => {
    const call: Record<string, Fed> = {};
    for (const [name, tensor] of Object.entries(feeds)) {
      call[name] = { name, type: tensor.type, dims: tensor.dims, data: tensor.type === 'float32' ? Float32Array.from(tensor.data as Float32Array) : new Float32Array() };
    }
    calls.push(call);
    return run(feeds, ...rest);
  };
  return calls;
}

/** One encoder's named outputs for one prompt, run here on the ONNX file itself. */
async function encoderOutputs(file: string, ids: number[]): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(file);
  try {
    const out = await session.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, SEQ]) });
    return Object.fromEntries(Object.entries(out).map(([name, tensor]) => [name, tensor.data as Float32Array]));
  } finally {
    await session.release();
  }
}

/** Per token, `a`'s row then `b`'s row: diffusers' torch.concat(prompt_embeds_list, dim=-1). */
function concatFeatures(a: Float32Array, b: Float32Array): Float32Array {
  const [wa, wb] = [a.length / SEQ, b.length / SEQ];
  const out = new Float32Array(SEQ * (wa + wb));
  for (let t = 0; t < SEQ; t++) {
    out.set(a.subarray(t * wa, (t + 1) * wa), t * (wa + wb));
    out.set(b.subarray(t * wb, (t + 1) * wb), t * (wa + wb) + wa);
  }
  return out;
}

/** What the pipeline should feed for `text`, computed from the encoders' own outputs. */
async function expectedFor(model: DiffusionModel, dir: string, text: string) {
  const first = await encoderOutputs(join(dir, 'text_encoder', 'model.onnx'), model.tokenizer.encode(text).ids);
  const second = await encoderOutputs(join(dir, 'text_encoder_2', 'model.onnx'), model.sdxl!.tokenizer2.encode(text).ids);
  return {
    hidden: concatFeatures(first['hidden_states.1'], second['hidden_states.1']),
    last: concatFeatures(first.last_hidden_state, second.last_hidden_state),
    pooled: second.text_embeds,
  };
}

const row = (fed: Fed, index: number) => {
  const per = fed.data.length / fed.dims[0];
  return fed.data.subarray(index * per, (index + 1) * per);
};

function expectClose(actual: Float32Array, expected: Float32Array): void {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  expect(worst).toBeLessThan(1e-5);
}

const allZero = (values: Float32Array) => values.every((v) => v === 0);
const base: GenerateParams = { prompt: 'a red circle on a white background', steps: 2, seed: 3, guidanceScale: 5, width: 128, height: 64 };

let model: DiffusionModel;
beforeAll(async () => {
  model = await loadModel(SDXL_TINY);
});
afterAll(async () => {
  await model?.release();
  rmSync(temp, { recursive: true, force: true });
});

describe('SDXL (sdxl-tiny)', () => {
  it('GIVEN sdxl-tiny THEN it loads as SDXL: both encoders’ penultimate states, text_embeds, time_ids, 1024², VAE scaling 0.13025', () => {
    expect(model.info).toMatchObject({ name: 'sdxl-tiny', width: 1024, height: 1024, latentFactor: 8, defaultScheduler: 'euler', maxTokens: 77 });
    expect(model.scalingFactor).toBe(0.13025);
    expect(model.sdxl?.textEncoder.penultimate.name).toBe('hidden_states.1');
    expect(model.sdxl?.textEncoder2.penultimate.name).toBe('hidden_states.1');
    expect(model.sdxl?.textEncoder2.textEmbeds).toEqual({ name: 'text_embeds', type: 'float32', shape: ['batch_size', 16] });
    expect(model.sdxl?.forceZerosForEmptyPrompt).toBe(true);
    expect(model.sdxl?.tokenizer2.encode('a').ids.at(-1)).not.toBe(model.tokenizer.encode('a').ids.at(-1)); // "!" pads tokenizer_2
    expect(model.unet.textEmbeds).toEqual({ name: 'text_embeds', type: 'float32', shape: ['batch_size', 16] });
    expect(model.unet.timeIds).toEqual({ name: 'time_ids', type: 'float32', shape: ['batch_size', 6] });
  });

  it('GIVEN guidance and no negative prompt THEN the UNet gets both encoders’ penultimate states, text_embeds, time_ids (h, w, 0, 0, h, w) and zeros for the unconditional row', async () => {
    const calls = recordUnet(model);
    const result = await generate(model, base);
    expect(calls.length).toBe(2);
    const fed = calls[0];
    expect(Object.keys(fed).sort()).toEqual(['encoder_hidden_states', 'sample', 'text_embeds', 'time_ids', 'timestep']);
    expect(fed.encoder_hidden_states).toMatchObject({ type: 'float32', dims: [2, 77, 56] });
    expect(fed.text_embeds).toMatchObject({ type: 'float32', dims: [2, 16] });
    expect(fed.time_ids).toMatchObject({ type: 'float32', dims: [2, 6] });
    expect(fed.sample.dims).toEqual([2, 4, 8, 16]);
    expect(fed.timestep).toMatchObject({ type: 'float32', dims: [] });

    const expected = await expectedFor(model, SDXL_TINY, base.prompt);
    expectClose(row(fed.encoder_hidden_states, 1), expected.hidden);
    expectClose(row(fed.text_embeds, 1), expected.pooled);
    // The penultimate states, not the last ones: they differ.
    expect(Math.max(...row(fed.encoder_hidden_states, 1).map((v, i) => Math.abs(v - expected.last[i])))).toBeGreaterThan(0.01);
    // force_zeros_for_empty_prompt: the unconditional row is zeros, hidden states and pooled text alike.
    expect(allZero(row(fed.encoder_hidden_states, 0))).toBe(true);
    expect(allZero(row(fed.text_embeds, 0))).toBe(true);
    // original size (height, width), crop (0, 0), target size (height, width): 64 high, 128 wide.
    expect(Array.from(fed.time_ids.data)).toEqual([64, 128, 0, 0, 64, 128, 64, 128, 0, 0, 64, 128]);
    // Every step feeds the same conditioning.
    expect(calls[1].time_ids.data).toEqual(fed.time_ids.data);

    const png = await sharp(result.images[0]).raw().toBuffer({ resolveWithObject: true });
    expect([png.info.width, png.info.height, png.info.channels]).toEqual([128, 64, 3]);
    expect(new Set(png.data).size).toBeGreaterThan(16);
  });

  it('GIVEN a negative prompt THEN the unconditional row is its encoding', async () => {
    const calls = recordUnet(model);
    await generate(model, { ...base, negativePrompt: 'blurry, lowres', steps: 1 });
    const negative = await expectedFor(model, SDXL_TINY, 'blurry, lowres');
    expectClose(row(calls[0].encoder_hidden_states, 0), negative.hidden);
    expectClose(row(calls[0].text_embeds, 0), negative.pooled);
  });

  it('GIVEN force_zeros_for_empty_prompt false THEN an empty negative prompt is encoded like any other', async () => {
    const dir = join(temp, 'no-zeros');
    cpSync(SDXL_TINY, dir, { recursive: true });
    const index = JSON.parse(readFileSync(join(dir, 'model_index.json'), 'utf8'));
    writeFileSync(join(dir, 'model_index.json'), JSON.stringify({ ...index, force_zeros_for_empty_prompt: false }));
    const other = await loadModel(dir);
    try {
      expect(other.sdxl?.forceZerosForEmptyPrompt).toBe(false);
      const calls = recordUnet(other);
      await generate(other, { ...base, steps: 1 });
      const empty = await expectedFor(other, dir, '');
      expectClose(row(calls[0].encoder_hidden_states, 0), empty.hidden);
      expectClose(row(calls[0].text_embeds, 0), empty.pooled);
    } finally {
      await other.release();
    }
  });

  it('GIVEN two jobs in one batch, one with guidance and one without THEN each row gets its own job’s conditioning', async () => {
    const calls = recordUnet(model);
    const outcomes = await generateBatch(model, [
      { params: { ...base, prompt: 'a blue square', negativePrompt: 'ugly', steps: 1 } },
      { params: { ...base, prompt: 'a green triangle', guidanceScale: 0, steps: 1, seed: 9 } },
    ]);
    expect(outcomes.map((o) => o.ok)).toEqual([true, true]);
    const fed = calls[0];
    expect(fed.encoder_hidden_states.dims).toEqual([3, 77, 56]);
    // Rows: [blue square's uncond | blue square | green triangle].
    const [ugly, blue, green] = await Promise.all(['ugly', 'a blue square', 'a green triangle'].map((t) => expectedFor(model, SDXL_TINY, t)));
    for (const [index, expected] of [ugly, blue, green].entries()) {
      expectClose(row(fed.encoder_hidden_states, index), expected.hidden);
      expectClose(row(fed.text_embeds, index), expected.pooled);
    }
    expect(fed.time_ids.dims).toEqual([3, 6]);
  });

  it('GIVEN the UNet alone THEN its output depends on text_embeds and on time_ids (the fixture conditions on both)', async () => {
    const feeds = (pooled: number, size: number) => ({
      sample: new ort.Tensor('float32', new Float32Array(4 * 8 * 8).fill(0.5), [1, 4, 8, 8]),
      timestep: new ort.Tensor('float32', new Float32Array([500]), []),
      encoder_hidden_states: new ort.Tensor('float32', new Float32Array(77 * 56).fill(0.1), [1, 77, 56]),
      text_embeds: new ort.Tensor('float32', new Float32Array(16).fill(pooled), [1, 16]),
      time_ids: new ort.Tensor('float32', Float32Array.from([size, size, 0, 0, size, size]), [1, 6]),
    });
    const out = async (pooled: number, size: number) => (await model.unet.session.run(feeds(pooled, size))).out_sample.data as Float32Array;
    const reference = await out(0, 1024);
    const differs = (other: Float32Array) => other.some((v, i) => Math.abs(v - reference[i]) > 1e-4);
    expect(differs(await out(0, 1024))).toBe(false);
    expect(differs(await out(1, 1024))).toBe(true);
    expect(differs(await out(0, 512))).toBe(true);
  });

  it('GIVEN an SDXL model with a vae_encoder THEN img2img runs with the same conditioning and gives a PNG of the asked size', async () => {
    const dir = join(temp, 'with-encoder');
    cpSync(SDXL_TINY, dir, { recursive: true });
    cpSync(join(MODELS, 'sd-tiny', 'vae_encoder'), join(dir, 'vae_encoder'), { recursive: true });
    const other = await loadModel(dir);
    try {
      const calls = recordUnet(other);
      const red = await sharp({ create: { width: 128, height: 64, channels: 3, background: '#d02020' } }).png().toBuffer();
      const result = await generate(other, { ...base, steps: 4, initImage: new Uint8Array(red), strength: 0.5 });
      expect(calls.length).toBe(2); // floor(4 × 0.5) steps
      expect(Array.from(calls[0].time_ids.data.subarray(0, 6))).toEqual([64, 128, 0, 0, 64, 128]);
      expectClose(row(calls[0].text_embeds, 1), (await expectedFor(other, dir, base.prompt)).pooled);
      expect(await sharp(result.images[0]).metadata()).toMatchObject({ format: 'png', width: 128, height: 64 });
    } finally {
      await other.release();
    }
  });

  it('GIVEN the same job twice THEN the same PNG bytes', async () => {
    const [a, b] = [await generate(model, { ...base, steps: 1 }), await generate(model, { ...base, steps: 1 })];
    expect(Buffer.from(a.images[0]).equals(Buffer.from(b.images[0]))).toBe(true);
  });
});

describe('SDXL models imagine refuses', () => {
  it('GIVEN an SDXL folder without text_encoder_2/ THEN loading names the missing file', async () => {
    const dir = join(temp, 'half');
    cpSync(SDXL_TINY, dir, { recursive: true });
    rmSync(join(dir, 'text_encoder_2'), { recursive: true });
    const error = await loadModel(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelLoadError);
    expect((error as Error).message).toBe(`${join(dir, 'text_encoder_2', 'model.onnx')}: expected the text_encoder_2 ONNX model`);
  });

  it('GIVEN an SDXL refiner (requires_aesthetics_score) THEN it is refused in one line before anything loads', async () => {
    const dir = join(temp, 'refiner');
    cpSync(SDXL_TINY, dir, { recursive: true });
    const index = JSON.parse(readFileSync(join(dir, 'model_index.json'), 'utf8'));
    writeFileSync(join(dir, 'model_index.json'), JSON.stringify({ ...index, requires_aesthetics_score: true }));
    const error = await loadModel(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelLoadError);
    expect((error as Error).message).toMatch(/model_index\.json: this is an SDXL refiner .*aesthetic score.*; imagine runs SDXL base models only$/);
  });

  it('GIVEN an SDXL UNet with an SD text encoder (no hidden_states outputs) THEN loading says what the encoder must export', async () => {
    const dir = join(temp, 'no-hidden');
    cpSync(SDXL_TINY, dir, { recursive: true });
    cpSync(join(MODELS, 'lcm-tiny', 'text_encoder', 'model.onnx'), join(dir, 'text_encoder', 'model.onnx'));
    const error = await loadModel(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelLoadError);
    expect((error as Error).message).toContain(`${join(dir, 'text_encoder', 'model.onnx')}: expected outputs \`hidden_states.0\` … \`hidden_states.N\``);
  });

  it('GIVEN a UNet with 5 time ids (a refiner’s aesthetic score) or text_embeds without time_ids THEN its contract check refuses it in one line', () => {
    const tensor = (name: string, shape: (number | string)[]) => ({ name, isTensor: true, type: 'float32', shape });
    const unet = (extra: ReturnType<typeof tensor>[]) =>
      ({
        inputMetadata: [tensor('sample', ['b', 4, 'h', 'w']), tensor('timestep', []), tensor('encoder_hidden_states', ['b', 77, 2048]), ...extra],
        outputMetadata: [tensor('out_sample', ['b', 4, 'h', 'w'])],
      }) as unknown as ort.InferenceSession;
    const refiner = unet([tensor('text_embeds', ['b', 1280]), tensor('time_ids', ['b', 5])]);
    expect(() => checkUnet(refiner, 'refiner/unet/model.onnx')).toThrow(
      'refiner/unet/model.onnx: this is an SDXL refiner (`time_ids` of 5: original size, crop and an aesthetic score); imagine runs SDXL base models only, which take 6 (original size, crop, target size)',
    );
    expect(() => checkUnet(unet([tensor('text_embeds', ['b', 1280])]), 'u.onnx')).toThrow(
      'u.onnx: expected both SDXL inputs `text_embeds` and `time_ids`, or neither, got `text_embeds` float32 [b, 1280]',
    );
    expect(checkUnet(unet([tensor('text_embeds', ['b', 1280]), tensor('time_ids', ['b', 6])]), 'base.onnx').timeIds?.name).toBe('time_ids');
  });
});
