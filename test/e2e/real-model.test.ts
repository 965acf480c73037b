/**
 * The happy path with the real engine: the ONNX worker pool running the tiny SD test model in a worker thread,
 * while the bot keeps answering (the engine never blocks the event loop).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPngText } from '../../src/image/png-text.js';
import type { StoredMessage } from '../../src/playground/emulator/index.js';
import { eventually, originalEdits, startHarness, type Harness } from '../../tools/discord-emulator/harness.js';
import { customIdOf } from './picture-messages.js';

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

/** The bot on a real model (worker pool), and its finished message for a `/imagine count:2` with `options`. */
async function twoPictures(modelDir: string, options: { prompt: string; steps: number; seed: number }): Promise<{ h: Harness; grid: StoredMessage }> {
  const h = await startHarness({ env: { SAMPLER: 'workers', MODEL_DIR: modelDir, EDIT_INTERVAL_MS: '0' }, emulator: { rateLimits: [] } });
  try {
    const handle = h.emulator.sendCommand({ name: 'imagine', options: { ...options, count: 2 } });
    const grid = await eventually(() => {
      const original = handle.original();
      return original && original.message.embeds.length > 0 && original.message.attachments.length === 3 ? original : undefined;
    }, 90_000, () => `the grid; bot log:\n${h.logs.join('\n')}`);
    return { h, grid };
  } catch (error) {
    await h.close();
    throw error;
  }
}

/** How many jobs the bot's journal holds. */
function jobCount(h: Harness): number {
  return (h.app.db.prepare('SELECT count(*) AS n FROM jobs').get() as { n: number }).n;
}

/** The finished reply to `messageId` whose text starts with `prefix`. */
function replyTo(h: Harness, messageId: string, prefix: string) {
  return eventually(
    () =>
      h.emulator
        .messages(h.emulator.defaults.channelId)
        .find((m) => m.message.message_reference?.message_id === messageId && m.message.content.startsWith(prefix) && m.message.attachments.length > 0),
    90_000,
    () => `the reply "${prefix}"; bot log:\n${h.logs.slice(-20).join('\n')}`,
  );
}

describe('U and V with real ONNX models (worker pool)', () => {
  it('GIVEN a latent model (sd-tiny, 64×64, vae_encoder) THEN U1 is the hires fix at 128×128 and V2 makes two 64×64 variations', async () => {
    const { h, grid } = await twoPictures(path.join(ROOT, 'test/fixtures/models/sd-tiny'), { prompt: 'a red circle', steps: 10, seed: 9 });
    try {
      const { emulator } = h;
      emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, 'U1') });
      const upscaled = await replyTo(h, grid.message.id, '🔍 Upscaled picture 1');
      const png = emulator.attachmentBytes(upscaled.message.id, 0)!;
      expect(await sharp(png).metadata()).toMatchObject({ format: 'png', width: 128, height: 128 });
      expect(readPngText(png).get('parameters')).toMatch(/Seed: 9, Size: 128x128, Model: sd-tiny, Denoising strength: 0\.35, RNG: CPU$/);

      emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, 'V2') });
      const variations = await replyTo(h, grid.message.id, '🎲 Variations of picture 2');
      expect(variations.message.attachments.map((a) => [a.width, a.height])).toEqual([[128, 64], [64, 64], [64, 64]]);
    } finally {
      await h.close();
    }
  });

  it('GIVEN the embedded model (64×64 only) THEN U1 posts a 2× Lanczos resize, labelled as one, and queues nothing', async () => {
    const { h, grid } = await twoPictures(path.join(ROOT, 'models/imagine-shapes'), { prompt: 'a red circle', steps: 10, seed: 4 });
    try {
      const { emulator } = h;
      const jobs = () => jobCount(h);
      const before = jobs();
      const press = emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, 'U1') });
      const resized = await replyTo(h, grid.message.id, '🔍 Picture 1, enlarged 2×');
      expect(resized.message.content).toMatch(/a Lanczos resize, no new detail \(this model makes only 64×64 pictures\)/);
      const png = emulator.attachmentBytes(resized.message.id, 0)!;
      expect(await sharp(png).metadata()).toMatchObject({ format: 'png', width: 128, height: 128 });
      // PNG Info reads a 64×64 generation, enlarged afterwards (A1111's Extras fields), not a 128×128 one.
      expect(readPngText(png).get('parameters')).toMatch(/Size: 64x64, .*Postprocess upscale by: 2, Postprocess upscaler: Lanczos$/);
      // The picture it enlarged is picture 1 as the model made it (the posted copy is a nearest-neighbour enlargement).
      const made = await sharp(emulator.attachmentBytes(grid.message.id, 1)!).resize(64, 64, { kernel: 'nearest' }).removeAlpha().raw().toBuffer();
      const back = await sharp(png).resize(64, 64, { kernel: 'nearest' }).removeAlpha().raw().toBuffer();
      let diff = 0;
      for (let i = 0; i < made.length; i++) diff += Math.abs(made[i] - back[i]);
      expect(diff / made.length).toBeLessThan(12);
      expect(jobs()).toBe(before);
      await eventually(() => (press.original()?.message.content ?? '').startsWith('🔍 U1: posted below'), 10_000, 'the ephemeral answer');
      // It is posted outside the queue's caps: a second press within the minute is refused privately, nothing posted.
      const again = emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, 'U1') });
      await eventually(() => (again.original()?.message.content ?? '').startsWith('U1: picture 1 was just enlarged'), 10_000, 'the refusal');
      const resizes = emulator.messages(emulator.defaults.channelId).filter((m) => m.message.content.startsWith('🔍 Picture 1, enlarged'));
      expect(resizes).toHaveLength(1);
    } finally {
      await h.close();
    }
  });

  it('GIVEN a latent model without vae_encoder/ (lcm-tiny) THEN V and /imagine image: are refused in one ephemeral line, nothing queued', async () => {
    const { h, grid } = await twoPictures(path.join(ROOT, 'test/fixtures/models/lcm-tiny'), { prompt: 'a red circle', steps: 4, seed: 2 });
    try {
      const { emulator } = h;
      const jobs = () => jobCount(h);
      const before = jobs();
      const press = emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, 'V1') });
      const answer = await eventually(() => press.original()?.message.content || undefined, 30_000, 'the answer');
      expect(answer).toBe('The model `lcm-tiny` cannot start from a picture: it has no vae_encoder/ folder (img2img needs vae_encoder/model.onnx).');
      expect((press.original()!.message.flags ?? 0) & 64).toBe(64);

      const image = emulator.uploadAttachment({ filename: 'start.png', bytes: emulator.attachmentBytes(grid.message.id, 1)! });
      const response = await emulator.sendCommand({ name: 'imagine', options: { prompt: 'from a file', image: image.id } }).waitForResponse();
      expect(response.body.data.flags & 64).toBe(64);
      expect(response.body.data.content).toMatch(/^The model `lcm-tiny` cannot start from a picture/);
      expect(jobs()).toBe(before);
    } finally {
      await h.close();
    }
  });

  it('GIVEN a model with its own upscaler/ (pixel-tiny + a 2× network) THEN U1 is a queued job through that network, even at a fixed size', async () => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imagine-upscaler-'));
    const modelDir = path.join(dir, 'pixel-tiny');
    fs.cpSync(path.join(ROOT, 'test/fixtures/models/pixel-tiny'), modelDir, { recursive: true });
    fs.cpSync(path.join(ROOT, 'test/fixtures/parts/upscaler-2x'), path.join(modelDir, 'upscaler'), { recursive: true });
    const { h, grid } = await twoPictures(modelDir, { prompt: 'a red circle', steps: 4, seed: 5 });
    try {
      const { emulator } = h;
      expect(h.app.model).toMatchObject({ fixedSize: true, upscaler: { scale: 2 } });
      const press = emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, 'U1') });
      const upscaled = await replyTo(h, grid.message.id, '🔍 Upscaled picture 1');
      expect(press.original()?.message.content).toMatch(/^🔍 U1: upscaling picture 1 to 64×64/);
      const job = h.app.queue.findByMessageId(upscaled.message.id)!;
      expect(job).toMatchObject({ kind: 'upscale', sourcePicture: 0, params: { upscale: true, width: 64, height: 64, seed: 5 } });
      expect(job.params).not.toHaveProperty('strength');
      const png = emulator.attachmentBytes(upscaled.message.id, 0)!;
      expect(readPngText(png).get('parameters')).toMatch(/Seed: 5, Size: 64x64, Model: pixel-tiny, Postprocess upscale by: 2$/);
      // The fixture network is a nearest-neighbour 2×: every 2×2 block of the posted picture is one colour.
      const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      expect([info.width, info.height]).toEqual([64, 64]);
      let uneven = 0;
      for (let y = 0; y < 64; y += 2) {
        for (let x = 0; x < 64; x += 2) {
          for (const [dx, dy] of [[1, 0], [0, 1], [1, 1]]) {
            for (let c = 0; c < 3; c++) if (data[(y * 64 + x) * 3 + c] !== data[((y + dy) * 64 + x + dx) * 3 + c]) uneven++;
          }
        }
      }
      expect(uneven).toBe(0);
    } finally {
      await h.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
