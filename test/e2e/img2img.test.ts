/**
 * `/imagine image:<attachment> strength:` end to end: the member's file is resolved in the interaction as
 * Discord resolves it, served by the emulator's CDN, fetched with the bot's limits, kept beside the job in the
 * journal; the stand-in engine's img2img mixes it into the picture. Every refusal is one ephemeral line.
 */
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPngText } from '../../src/image/png-text.js';
import type { StoredMessage } from '../../src/playground/emulator/index.js';
import { eventually, startHarness, type Harness } from '../../tools/discord-emulator/harness.js';

function finished(handle: { original(): StoredMessage | undefined }): Promise<StoredMessage> {
  return eventually(() => {
    const original = handle.original();
    return original && original.message.embeds.length > 0 && original.message.attachments.length > 0 ? original : undefined;
  }, 30_000, 'the final message');
}

async function solid(r: number, g: number, b: number, side = 48): Promise<Buffer> {
  return sharp({ create: { width: side, height: side, channels: 3, background: { r, g, b } } }).png().toBuffer();
}

describe('/imagine image: strength: (stand-in engine)', () => {
  let h: Harness;
  const jobCount = () => (h.app.db.prepare('SELECT count(*) AS n FROM jobs').get() as { n: number }).n;

  beforeAll(async () => {
    h = await startHarness({ env: { STAND_IN_STEP_MS: '20', EDIT_INTERVAL_MS: '0' } });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('GIVEN a PNG attached with strength 0.5 THEN the picture starts from it, the bytes are kept beside the job, and 🔁 starts from them again', async () => {
    const { emulator } = h;
    const red = await solid(250, 10, 10);
    const image = emulator.uploadAttachment({ filename: 'red.png', bytes: red });
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'redder', image: image.id, strength: 0.5, steps: 4, seed: 3 } });
    const done = await finished(handle);
    const job = h.app.queue.findByMessageId(done.message.id)!;
    expect(job.params).toMatchObject({ strength: 0.5 });
    expect(job.params).not.toHaveProperty('initImage');
    expect(Buffer.from(h.app.queue.initImage(job.id)!).equals(red)).toBe(true);
    const png = emulator.attachmentBytes(done.message.id)!;
    expect(readPngText(png).get('parameters')).toMatch(/Seed: 3, Size: 64x64, Model: stand-in, Denoising strength: 0\.5$/);
    // Half of the red start picture is in every pixel: red is the strongest channel on average.
    const { channels } = await sharp(png).stats();
    expect(channels[0].mean).toBeGreaterThan(channels[1].mean + 40);

    await eventually(() => done.reactions.get('🔁')?.has(emulator.defaults.botUserId), 10_000, 'the bot’s 🔁');
    emulator.addReaction({ userId: emulator.defaults.users.alice.id, messageId: done.message.id, emoji: '🔁' });
    const reroll = await eventually(
      () => emulator.messages(emulator.defaults.channelId).find((m) => m.message.message_reference?.message_id === done.message.id && m.message.embeds.length > 0),
      30_000,
      'the reroll',
    );
    const rerolled = h.app.queue.findByMessageId(reroll.message.id)!;
    expect(rerolled).toMatchObject({ kind: 'reroll', params: { strength: 0.5 } });
    expect(Buffer.from(h.app.queue.initImage(rerolled.id)!).equals(red)).toBe(true);
  });

  it.each([
    ['too large (Discord says 11 MiB)', { filename: 'big.png', size: 11 * 1024 * 1024 }, /^Expected a picture of at most 10 MiB, got 11 MiB$/],
    ['not a picture by its type', { filename: 'notes.txt', contentType: 'text/plain', text: 'hello' }, /^Expected a picture \(PNG, JPEG or WebP\), got a file of type `text\/plain`$/],
    ['not a picture by its bytes', { filename: 'fake.png', text: 'this is not a PNG' }, /^Expected a picture \(PNG, JPEG or WebP\), got a file that is not a picture$/],
    ['unreachable', { filename: 'gone.png', url: 'http://127.0.0.1:9/gone.png' }, /^Could not download the picture: /],
    ['slow', { filename: 'slow.png', delayMs: 5000 }, /^The picture took longer than 2 s to download$/],
  ])('GIVEN an attachment %s THEN one ephemeral line and nothing queued', async (_label, file, message) => {
    const { emulator } = h;
    const { text, ...rest } = file as { text?: string } & Parameters<typeof emulator.uploadAttachment>[0];
    const image = emulator.uploadAttachment({ ...rest, bytes: text === undefined ? await solid(0, 0, 255) : Buffer.from(text) });
    const before = jobCount();
    const response = await emulator.sendCommand({ name: 'imagine', options: { prompt: 'from a file', image: image.id } }).waitForResponse();
    expect(response.body.type).toBe(4);
    expect(response.body.data.flags & 64).toBe(64);
    expect(response.body.data.content).toMatch(message);
    expect(jobCount()).toBe(before);
  });

  it('GIVEN strength without an image THEN one ephemeral line saying to attach one', async () => {
    const response = await h.emulator.sendCommand({ name: 'imagine', options: { prompt: 'no file', strength: 0.4 } }).waitForResponse();
    expect(response.body.data.flags & 64).toBe(64);
    expect(response.body.data.content).toBe('`strength` says how far to move from a picture: attach one with `image`, or leave `strength` out.');
  });
});
