/**
 * The happy path with the real engine: the ONNX worker pool running the tiny SD test model in a worker thread,
 * while the bot keeps answering (the engine never blocks the event loop).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, originalEdits, startHarness, type Harness } from '../../tools/discord-emulator/harness.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('/imagine with the real worker pool and an ONNX model', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      env: {
        SAMPLER: 'workers',
        MODEL_DIR: path.join(ROOT, 'test/fixtures/models/sd-tiny'),
        // The tiny test model makes 150 steps in well under a second: edit as fast as one edit in flight allows,
        // and lift the emulator's per-message edit bucket (pacing at Discord's rate is tested with the stand-in).
        EDIT_INTERVAL_MS: '0',
        STEPS_MAX: '150',
        GUIDANCE_DEFAULT: '7.5',
      },
      emulator: { rateLimits: [] },
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('GIVEN /imagine THEN progress edits and a PNG that decodes to the model’s size; /help answers within 3 s meanwhile', async () => {
    const { emulator } = h;
    const model = h.app.model;
    // While the worker generates, another command is answered in time: send /help at the first step.
    let help: ReturnType<typeof emulator.sendCommand> | undefined;
    const off = h.app.queue.events.on('progress', () => {
      help ??= emulator.sendCommand({ name: 'help' });
    });
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'a red circle', steps: 150, seed: 3 } });
    const response = await handle.waitForResponse();
    expect(response.body.type).toBe(5);
    expect(response.at - handle.state.createdAt).toBeLessThan(3000);
    await eventually(() => help, 60_000, () => `the job's first step; bot log:\n${h.logs.join('\n')}`);
    off();
    const helpResponse = await help!.waitForResponse();
    expect(helpResponse.at - help!.state.createdAt).toBeLessThan(3000);

    const done = await eventually(() => {
      const original = handle.original();
      return original && original.message.embeds.length > 0 && original.message.attachments.length > 0 ? original : undefined;
    }, 90_000, () => `the final image; bot log:\n${h.logs.join('\n')}`);
    const png = emulator.attachmentBytes(done.message.id)!;
    const meta = await sharp(png).metadata();
    expect([meta.width, meta.height]).toEqual([model.width, model.height]);
    const fields = Object.fromEntries(done.message.embeds[0]!.fields!.map((f) => [f.name, f.value]));
    expect(fields).toMatchObject({ Seed: '3', Steps: '150', Model: 'sd-tiny', Size: `${model.width}×${model.height}` });
    const progress = originalEdits(emulator, handle.token).filter((call) => String(call.body?.content ?? '').includes('Step '));
    expect(progress.length, JSON.stringify(originalEdits(emulator, handle.token).map((c) => [c.at, c.status, c.body?.content]))).toBeGreaterThanOrEqual(2);
    expect(progress[0]!.body.content).toMatch(/^🎨 Step \d+\/150 `[█░]{20}`/);
  });
});
