import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, originalEdits, startHarness, type Harness } from './harness.js';

describe('/imagine end to end (stand-in sampler)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { STAND_IN_STEP_MS: '250', STEPS_DEFAULT: '16' } });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('GIVEN /imagine THEN defer within 3 s, ≥ 2 paced progress edits, then the PNG at the requested size with 🔁', async () => {
    const { emulator } = h;
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'a red circle', aspect: 'landscape', seed: 42 } });
    const response = await handle.waitForResponse();
    expect(response.body.type).toBe(5); // deferred channel message
    expect(response.at - handle.state.createdAt).toBeLessThan(3000);

    const job = await eventually(() => h.app.queue.findByMessageId(handle.original()?.message.id ?? '') ?? (h.app.queue.snapshot().running[0]?.job), 10_000, 'the job');
    expect(job.params).toMatchObject({ prompt: 'a red circle', seed: 42, steps: 16, width: 80, height: 56 });

    const done = await eventually(() => {
      const original = handle.original();
      return original && original.message.attachments.some((a) => a.filename.startsWith('imagine-')) ? original : undefined;
    }, 60_000, 'the final image');

    const edits = originalEdits(emulator, handle.token);
    const progress = edits.filter((call) => String(call.body?.content ?? '').includes('Step '));
    expect(progress.length).toBeGreaterThanOrEqual(2);
    // Paced: never two edits of one message within 1.5 s (small slack for clock reads on either side).
    for (let i = 1; i < edits.length; i++) expect(edits[i]!.at - edits[i - 1]!.at).toBeGreaterThanOrEqual(1400);
    expect(progress.some((call) => call.files.some((file) => file.name === 'preview.png'))).toBe(true);
    const limited = emulator.calls.filter((c) => c.status === 429).map((c) => `${c.method} ${c.route}`);
    expect(limited).toEqual([]);

    const png = emulator.attachmentBytes(done.message.id)!;
    const meta = await sharp(png).metadata();
    expect([meta.width, meta.height]).toEqual([80, 56]);
    const embed = done.message.embeds[0]!;
    expect(embed.description).toBe('a red circle');
    expect(Object.fromEntries(embed.fields!.map((f) => [f.name, f.value]))).toMatchObject({ Seed: '42', Steps: '16', Size: '80×56', Model: 'stand-in' });
    await eventually(() => done.reactions.get('🔁')?.has(emulator.defaults.botUserId), 10_000, '🔁 on the result');
    await eventually(() => !done.reactions.get('❌')?.has(emulator.defaults.botUserId), 10_000, '❌ taken back');
    expect(done.allowedMentions?.parse).toEqual([]);
  });
});
