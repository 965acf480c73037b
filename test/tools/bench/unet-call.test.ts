/**
 * tools/bench/unet-call.ts on sd-tiny's UNet: on cpu, and on webgpu over Chromium's SwiftShader (a software Vulkan
 * device; skipped when absent), where run() returns once the work is queued and its outputs live in GPU buffers.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel, type DiffusionModel } from '../../../src/diffusion/model.js';
import { unetCallMs, unetCallTimer } from '../../../tools/bench/unet-call.js';
import { unetFeeds, unetShapeOf } from '../../../tools/bench/unet-feeds.js';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
const haveDevice = existsSync(SWIFTSHADER_ICD);
if (haveDevice) {
  process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
}
const SD_TINY = join(import.meta.dirname, '..', '..', 'fixtures', 'models', 'sd-tiny');

/** Every output `run()` handed out, to check what became of it. */
function recordOutputs(model: DiffusionModel): ort.Tensor[] {
  const outputs: ort.Tensor[] = [];
  const session = model.unet.session;
  const run = session.run.bind(session) as (...args: unknown[]) => Promise<ort.InferenceSession.OnnxValueMapType>;
  (session as { run: unknown }).run = async (...args: unknown[]) => {
    const result = await run(...args);
    outputs.push(result[session.outputNames[0]] as ort.Tensor);
    return result;
  };
  return outputs;
}

describe('unetCallTimer', () => {
  const models: DiffusionModel[] = [];
  afterAll(async () => {
    for (const model of models) await model.release();
  });

  it('GIVEN a cpu UNet WHEN timed THEN a positive ms per call comes back for each way of asking', async () => {
    const model = await loadModel(SD_TINY);
    models.push(model);
    const feeds = unetFeeds(model, unetShapeOf(model, 2));
    const timer = await unetCallTimer(model.unet.session, false);
    const ms = await timer.callMs(feeds, 3);
    await timer.release();
    expect(ms).toBeGreaterThan(0);
    expect(await unetCallMs(model.unet.session, feeds, 3, false)).toBeGreaterThan(0);
  });

  it.skipIf(!haveDevice)('GIVEN a webgpu UNet (outputs in GPU buffers) WHEN timed THEN every output is disposed after the last is read back', async () => {
    const model = await loadModel(SD_TINY, { executionProviders: ['webgpu'] });
    models.push(model);
    expect(model.executionProvider).toBe('webgpu');
    const feeds = unetFeeds(model, unetShapeOf(model, 2));
    const outputs = recordOutputs(model);
    const timer = await unetCallTimer(model.unet.session, true);
    const ms = await timer.callMs(feeds, 4);
    await timer.release();
    expect(ms).toBeGreaterThan(0);
    expect(outputs).toHaveLength(4);
    // A disposed GPU tensor's location is 'none': no buffer is left behind.
    expect(outputs.map((t) => t.location)).toEqual(['none', 'none', 'none', 'none']);
  }, 120_000);
});
