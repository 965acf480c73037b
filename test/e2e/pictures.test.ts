/**
 * The pictures the bot posts, end to end (stand-in engine, real delivery): their `parameters` PNG text chunk.
 */
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPngText } from '../../src/image/png-text.js';
import { eventually, startHarness, type Harness } from '../../tools/discord-emulator/harness.js';

describe('posted pictures (stand-in engine)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { STAND_IN_STEP_MS: '20' } });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('GIVEN /imagine with a seed and a negative prompt THEN the posted PNG carries them in A1111 `parameters`', async () => {
    const { emulator } = h;
    const handle = emulator.sendCommand({
      name: 'imagine',
      options: { prompt: 'a red circle', negative: 'blur', seed: 42, steps: 3, guidance: 6, scheduler: 'dpmpp_2m' },
    });
    const done = await eventually(() => {
      const original = handle.original();
      return original?.message.attachments.some((a) => a.filename.startsWith('imagine-')) ? original : undefined;
    }, 30_000, 'the picture');
    const png = emulator.attachmentBytes(done.message.id)!;
    const meta = await sharp(png).metadata();
    expect(meta.format).toBe('png');
    expect(readPngText(png).get('parameters')).toBe(
      `a red circle\nNegative prompt: blur\nSteps: 3, Sampler: DPM++ 2M, CFG scale: 6, Seed: 42, Size: ${meta.width}x${meta.height}, Model: stand-in`,
    );
  });
});
