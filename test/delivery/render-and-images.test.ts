import { randomBytes } from 'node:crypto';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { fitImage, pictureFiles, previewPng } from '../../src/delivery/images.js';
import { readPngText, withPngText } from '../../src/image/png-text.js';
import { formatDuration, progressBar, renderFinal, renderKey, renderStage } from '../../src/delivery/render.js';

const params = { prompt: '@everyone a red circle', steps: 20, seed: 7, guidanceScale: 0 };

describe('renderStage', () => {
  it('GIVEN a queued job THEN place and ETA are shown, the prompt quoted, mentions disabled', () => {
    const message = renderStage({ kind: 'queued', place: 3, etaMs: 65_000 }, params);
    expect(message.content).toBe(
      '⏳ Waiting: place 3 in the queue, starts in about 1 min 5 s. React ❌ to cancel.\n> @everyone a red circle',
    );
    expect(message.allowed_mentions).toEqual({ parse: [], replied_user: false });
    expect(message.attachments).toEqual([]);
  });

  it('GIVEN a running job with a preview THEN step i/N, a bar and the preview attachment', () => {
    const preview = { name: 'preview.png', data: new Uint8Array([1]) };
    const message = renderStage({ kind: 'running', step: 7, totalSteps: 20, elapsedMs: 1000, preview }, params);
    expect(message.content.split('\n')[0]).toBe('🎨 Step 7/20 `███████░░░░░░░░░░░░░` 35%');
    expect(message.attachments).toEqual([{ id: 0, filename: 'preview.png' }]);
    expect(message.files).toEqual([preview]);
  });

  it('GIVEN two renders that differ only in preview bytes THEN their keys are equal', () => {
    const a = renderStage({ kind: 'running', step: 1, totalSteps: 2, elapsedMs: 1, preview: { name: 'preview.png', data: new Uint8Array([1]) } }, params);
    const b = renderStage({ kind: 'running', step: 1, totalSteps: 2, elapsedMs: 9, preview: { name: 'preview.png', data: new Uint8Array([2]) } }, params);
    const c = renderStage({ kind: 'running', step: 2, totalSteps: 2, elapsedMs: 9 }, params);
    expect(renderKey(a)).toBe(renderKey(b));
    expect(renderKey(a)).not.toBe(renderKey(c));
  });

  it('formats bars and durations', () => {
    expect(progressBar(0)).toBe('░'.repeat(20));
    expect(progressBar(1)).toBe('█'.repeat(20));
    expect(formatDuration(400)).toBe('0 s');
    expect(formatDuration(120_000)).toBe('2 min');
    expect(formatDuration(3_720_000)).toBe('1 h 2 min');
  });
});

describe('renderFinal', () => {
  it('GIVEN a result THEN the embed carries every parameter and points at the attached image', () => {
    const message = renderFinal({
      params: { ...params, negativePrompt: 'blurry' },
      result: { width: 32, height: 32, seed: 7, steps: 20, guidanceScale: 0, scheduler: 'ddim', noise: 'torch', model: 'imagine-shapes', truncated: false, timings: { totalMs: 1234, runtimeMs: 1000, unetMs: 900 } },
      image: { name: 'imagine-7.png', data: new Uint8Array([1, 2]) },
      jobId: 'j1',
    });
    const [embed] = message.embeds;
    expect(embed!.description).toBe('@everyone a red circle');
    expect(Object.fromEntries(embed!.fields!.map((f) => [f.name, f.value]))).toEqual({
      Negative: 'blurry',
      Seed: '7',
      Steps: '20',
      Guidance: '0',
      Scheduler: 'ddim',
      Size: '32×32',
      Model: 'imagine-shapes',
      Noise: 'torch CPU',
      Time: '1.2 s',
    });
    expect(embed!.image).toEqual({ url: 'attachment://imagine-7.png' });
    expect(message.attachments).toEqual([{ id: 0, filename: 'imagine-7.png' }]);
    expect(message.allowed_mentions.parse).toEqual([]);
  });

  it('GIVEN a picture made with xoshiro noise THEN the embed says so', () => {
    const message = renderFinal({
      params,
      result: { width: 32, height: 32, seed: 7, steps: 20, guidanceScale: 0, scheduler: 'ddim', noise: 'xoshiro', model: 'm', truncated: false, timings: { totalMs: 1, runtimeMs: 1, unetMs: 1 } },
      image: { name: 'imagine-7.png', data: new Uint8Array([1, 2]) },
      jobId: 'j1',
    });
    expect(message.embeds[0]!.fields!.find((f) => f.name === 'Noise')?.value).toBe('xoshiro (imagine)');
  });
});

describe('images', () => {
  it('GIVEN a 4×2 preview THEN a nearest-neighbour PNG of 256×128 with the same colours', async () => {
    const rgb = new Uint8Array(4 * 2 * 3);
    rgb.set([255, 0, 0], 0); // top-left red
    rgb.set([0, 0, 255], (1 * 4 + 3) * 3); // bottom-right blue
    const file = await previewPng({ width: 4, height: 2, rgb });
    const { data, info } = await sharp(file.data).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([256, 128]);
    const px = (x: number, y: number) => [...data.subarray((y * info.width + x) * info.channels, (y * info.width + x) * info.channels + 3)];
    expect(px(63, 63)).toEqual([255, 0, 0]);
    expect(px(64, 0)).toEqual([0, 0, 0]);
    expect(px(255, 127)).toEqual([0, 0, 255]);
  });

  it('GIVEN a PNG over the limit THEN a smaller encoding that fits and still decodes', async () => {
    // Noise compresses badly: a 256×256 RGB noise PNG is ~190 KiB.
    const noise = Buffer.alloc(256 * 256 * 3);
    for (let i = 0; i < noise.length; i++) noise[i] = (i * 2654435761) >>> 24;
    const png = await sharp(noise, { raw: { width: 256, height: 256, channels: 3 } }).png().toBuffer();
    const fits = await fitImage(png, 'imagine-1', png.length);
    expect(fits.name).toBe('imagine-1.png');
    expect(fits.data).toBe(png);
    const smaller = await fitImage(png, 'imagine-1', 60_000);
    expect(smaller.data.byteLength).toBeLessThanOrEqual(60_000);
    const meta = await sharp(smaller.data).metadata();
    expect(meta.width).toBeGreaterThan(0);
    await expect(fitImage(png, 'imagine-1', 100)).rejects.toThrow(/does not fit the upload limit of 100 bytes/);
  });
});

describe('several pictures in one message', () => {
  const png = (value: number, side = 40) => sharp({ create: { width: side, height: side, channels: 3, background: { r: value, g: value, b: value } } }).png().toBuffer();

  it('GIVEN three small pictures THEN the grid first (enlarged cells, the first picture’s parameters), then each picture named by its seed', async () => {
    const pictures = await Promise.all([10, 20, 30].map(async (v, i) => withPngText(await png(v, 32), { parameters: `p\nSteps: 1, Seed: ${9 + i}` })));
    const { shown, files } = await pictureFiles(pictures, { seed: 9 });
    expect(files.map((f) => f.name)).toEqual(['imagine-9-grid.png', 'imagine-9.png', 'imagine-10.png', 'imagine-11.png']);
    expect(shown).toBe(files[0]);
    expect(await sharp(files[0]!.data).metadata()).toMatchObject({ width: 512, height: 512 });
    expect(await sharp(files[2]!.data).metadata()).toMatchObject({ width: 256, height: 256 });
    expect(readPngText(files[0]!.data).get('parameters')).toMatch(/Seed: 9$/);
    expect(readPngText(files[3]!.data).get('parameters')).toMatch(/Seed: 11$/);
  });

  it('GIVEN spoiler THEN every file is SPOILER_; a seed near 2^32 wraps as the engine’s does', async () => {
    const { files } = await pictureFiles([await png(1), await png(2)], { seed: 0xffff_ffff, spoiler: true });
    expect(files.map((f) => f.name)).toEqual(['SPOILER_imagine-4294967295-grid.png', 'SPOILER_imagine-4294967295.png', 'SPOILER_imagine-0.png']);
  });

  it('GIVEN a limit THEN the files share it: each fits its part', async () => {
    const noisy = await sharp(randomBytes(300 * 300 * 3), { raw: { width: 300, height: 300, channels: 3 } }).png().toBuffer();
    const limit = noisy.byteLength * 2;
    const { files } = await pictureFiles([noisy, noisy, noisy, noisy], { seed: 1, limit });
    for (const file of files) expect(file.data.byteLength).toBeLessThanOrEqual(Math.floor(limit / 5));
  });

  it('GIVEN renderFinal with the files THEN every file is attached in order, the embed shows the grid, the seeds are listed', () => {
    const file = (name: string) => ({ name, data: new Uint8Array([1]) });
    const files = [file('imagine-5-grid.png'), file('imagine-5.png'), file('imagine-6.png')];
    const message = renderFinal({
      params,
      result: { width: 64, height: 64, seed: 5, steps: 20, guidanceScale: 0, scheduler: 'euler', model: 'm', truncated: false, timings: { totalMs: 1000, runtimeMs: 0, unetMs: 0 } },
      image: files[0]!,
      files,
      jobId: 'J',
    });
    expect(message.attachments).toEqual(files.map((f, id) => ({ id, filename: f.name })));
    expect(message.embeds[0]!.image).toEqual({ url: 'attachment://imagine-5-grid.png' });
    expect(message.embeds[0]!.fields!.find((f) => f.name === 'Seeds')!.value).toBe('5, 6');
    expect(message.embeds[0]!.footer!.text).toBe('React 🔁 to roll all 2 again with new seeds · job J');
  });
});
