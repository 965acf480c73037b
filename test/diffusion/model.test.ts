import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel, ModelLoadError } from '../../src/diffusion/model.js';

const MODELS = join(import.meta.dirname, '..', 'fixtures', 'models');
const temp = mkdtempSync(join(tmpdir(), 'imagine-model-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

/** A copy of sd-tiny with one file replaced by another model's file. */
function misfitCopy(name: string, replace: string, withFile: string): string {
  const dir = join(temp, name);
  cpSync(join(MODELS, 'sd-tiny'), dir, { recursive: true });
  cpSync(withFile, join(dir, replace));
  return dir;
}

describe('loadModel', () => {
  it('GIVEN sd-tiny THEN it reads an SD-1-like model from its metadata and configs', async () => {
    const model = await loadModel(join(MODELS, 'sd-tiny'));
    try {
      expect(model.info).toEqual({ name: 'sd-tiny', width: 64, height: 64, latentFactor: 8, defaultScheduler: 'pndm', maxTokens: 77, safetyChecker: false, img2img: true });
      expect(model.info.fixedSize).toBeUndefined();
      expect(model.channels).toBe(4);
      expect(model.scalingFactor).toBe(0.18215);
      expect(model.textEncoder.inputIds.type).toBe('int32');
      expect(model.unet.timestep).toEqual({ name: 'timestep', type: 'int64', shape: ['steps'] });
      expect(model.unet.timestepCond).toBeUndefined();
      expect(model.vaeDecoder?.latentSample.name).toBe('latent_sample');
      expect(model.executionProvider).toBe('cpu');
      // Parts imagine never uses are present and ignored.
      expect(existsSync(join(MODELS, 'sd-tiny', 'feature_extractor'))).toBe(true);
    } finally {
      await model.release();
    }
  });

  it('GIVEN lcm-tiny THEN it finds timestep_cond, a float [1] timestep, int64 ids and the default scaling factor', async () => {
    const model = await loadModel(join(MODELS, 'lcm-tiny'));
    try {
      expect(model.info.defaultScheduler).toBe('lcm');
      // A latent model without vae_encoder/ cannot start from a picture.
      expect(model.info.img2img).toBe(false);
      expect(model.timestepCondDim).toBe(256);
      expect(model.unet.timestep).toEqual({ name: 'timestep', type: 'float32', shape: [1] });
      expect(model.textEncoder.inputIds.type).toBe('int64');
      expect(model.textEncoder.attentionMask).toEqual({ name: 'attention_mask', type: 'int64', shape: ['batch', 77] });
      expect(model.scalingFactor).toBe(0.18215);
      expect(model.tokenizer.form).toBe('tokenizer.json');
      expect(existsSync(join(MODELS, 'lcm-tiny', 'safety_checker'))).toBe(true);
    } finally {
      await model.release();
    }
  });

  it('GIVEN sd-tiny-fp16 THEN fp16 tensors and a UNet with external weights (model.onnx_data) load', async () => {
    expect(existsSync(join(MODELS, 'sd-tiny-fp16', 'unet', 'model.onnx_data'))).toBe(true);
    const model = await loadModel(join(MODELS, 'sd-tiny-fp16'));
    try {
      expect(model.unet.sample.type).toBe('float16');
      expect(model.unet.timestep).toEqual({ name: 'timestep', type: 'float16', shape: [] });
      expect(model.textEncoder.lastHiddenState.type).toBe('float16');
      expect(model.vaeDecoder?.sample.type).toBe('float16');
      expect(model.info.defaultScheduler).toBe('euler');
    } finally {
      await model.release();
    }
  });

  it('GIVEN a folder without vae_decoder/ THEN it is a pixel-space model of 3 channels', async () => {
    const model = await loadModel(join(MODELS, 'pixel-tiny'));
    try {
      expect(model.vaeDecoder).toBeUndefined();
      expect(model.info.latentFactor).toBe(1);
      expect(model.channels).toBe(3);
      expect(model.info).toMatchObject({ width: 32, height: 32, fixedSize: true, maxTokens: 77 });
      // Exported like the embedded model: symbolic sequence axis, no pooler_output.
      expect(model.textEncoder.inputIds.shape).toEqual(['batch', 'sequence']);
      expect(model.textEncoder.session.outputNames).toEqual(['last_hidden_state']);
    } finally {
      await model.release();
    }
  });

  it('GIVEN cuda and webgpu requested on a machine without them THEN it runs on cpu and says so in one line', async () => {
    const lines: string[] = [];
    const model = await loadModel(join(MODELS, 'sd-tiny'), { executionProviders: ['cuda', 'webgpu', 'cpu'], log: (l) => lines.push(l) });
    try {
      // On a machine with a GPU this test still holds its shape: one line naming what is used.
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`running on ${model.executionProvider}`));
    } finally {
      await model.release();
    }
  });

  it('GIVEN an unknown execution provider THEN it is refused', async () => {
    // @ts-expect-error: checking the runtime guard
    await expect(loadModel(join(MODELS, 'sd-tiny'), { executionProviders: ['tpu'] })).rejects.toThrow(/Expected execution providers from cpu, cuda, webgpu, got `tpu`/);
  });

  it('GIVEN a UNet that is really a VAE decoder THEN it is refused naming unet/model.onnx and `sample`', async () => {
    const dir = misfitCopy('vae-as-unet', 'unet/model.onnx', join(MODELS, 'sd-tiny', 'vae_decoder', 'model.onnx'));
    const error = await loadModel(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelLoadError);
    expect((error as Error).message).toContain(join(dir, 'unet', 'model.onnx'));
    expect((error as Error).message).toMatch(/expected an input `sample`.*got `latent_sample` float32/);
  });

  it('GIVEN a text encoder that is really a UNet THEN it is refused naming text_encoder/model.onnx and `input_ids`', async () => {
    const dir = misfitCopy('unet-as-te', 'text_encoder/model.onnx', join(MODELS, 'sd-tiny', 'unet', 'model.onnx'));
    await expect(loadModel(dir)).rejects.toThrow(new RegExp(`${join(dir, 'text_encoder', 'model.onnx')}: expected an input \`input_ids\``));
  });

  it('GIVEN a pixel-space UNet beside an SD VAE THEN the channel mismatch is refused', async () => {
    const dir = misfitCopy('pixel-unet', 'unet/model.onnx', join(MODELS, 'pixel-tiny', 'unet', 'model.onnx'));
    await expect(loadModel(dir)).rejects.toThrow(/vae_decoder\/model.onnx: expected 3 latent channels to match the UNet, got 4/);
  });

  it('GIVEN no model_index.json THEN the error names it', async () => {
    const dir = misfitCopy('no-index', 'model_index.json', join(MODELS, 'sd-tiny', 'model_index.json'));
    unlinkSync(join(dir, 'model_index.json'));
    await expect(loadModel(dir)).rejects.toThrow(new RegExp(`${join(dir, 'model_index.json')}: expected a diffusers model_index.json`));
  });

  it('GIVEN a PyTorch diffusers folder THEN the error says to export it to ONNX', async () => {
    const dir = misfitCopy('pytorch', 'model_index.json', join(MODELS, 'sd-tiny', 'model_index.json'));
    unlinkSync(join(dir, 'unet', 'model.onnx'));
    writeFileSync(join(dir, 'unet', 'diffusion_pytorch_model.safetensors'), '');
    await expect(loadModel(dir)).rejects.toThrow(/unet\/model\.onnx: expected the unet ONNX model \(this looks like a PyTorch diffusers folder: export it to ONNX first/);
  });

  it('GIVEN a missing tokenizer vocabulary THEN the error names the tokenizer folder', async () => {
    const dir = misfitCopy('no-vocab', 'model_index.json', join(MODELS, 'sd-tiny', 'model_index.json'));
    unlinkSync(join(dir, 'tokenizer', 'merges.txt'));
    await expect(loadModel(dir)).rejects.toThrow(/tokenizer.*merges\.txt is missing/);
  });
});

describe('the embedded model', () => {
  const dir = join(import.meta.dirname, '..', '..', 'models', 'imagine-shapes');
  it.skipIf(!existsSync(join(dir, 'model_index.json')))('GIVEN models/imagine-shapes THEN it loads with no special case and makes a picture', async () => {
    const { generate } = await import('../../src/diffusion/pipeline.js');
    const model = await loadModel(dir);
    try {
      const result = await generate(model, { prompt: 'a red circle', steps: 2, seed: 1, guidanceScale: 3 });
      expect(result.images).toHaveLength(1);
      expect([result.width, result.height]).toEqual([model.info.width, model.info.height]);
    } finally {
      await model.release();
    }
  });
});

describe('session options', () => {
  it('GIVEN sessionOptions THEN they reach the sessions (profiling writes its files)', async () => {
    const dir = mkdtempSync(join(temp, 'profile-'));
    const model = await loadModel(join(MODELS, 'sd-tiny'), { sessionOptions: { enableProfiling: true, profileFilePrefix: join(dir, 'session') } });
    await model.release();
    // One profile per session: text encoder, UNet, VAE decoder, VAE encoder (img2img).
    expect(readdirSync(dir).filter((f) => f.startsWith('session') && f.endsWith('.json'))).toHaveLength(4);
  });
});
