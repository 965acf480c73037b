import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoredMessage } from '../../src/playground/emulator/index.js';
import { StandInEngine } from '../../src/diffusion/engine/stand-in.js';
import { eventually, originalEdits, startHarness, type Harness } from '../../tools/discord-emulator/harness.js';

async function finishedOriginal(handle: { original(): StoredMessage | undefined }): Promise<StoredMessage> {
  return eventually(() => {
    const original = handle.original();
    return original && original.message.embeds.length > 0 && original.message.attachments.length > 0 ? original : undefined;
  }, 60_000, 'the final image');
}

describe('delivery under Discord’s rules and faults', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { STAND_IN_STEP_MS: '150', EDIT_INTERVAL_MS: '1500' } });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('GIVEN the token expires mid-job THEN the picture arrives as a channel message replying to the original', async () => {
    const { emulator } = h;
    const { alice } = emulator.defaults.users;
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'late', steps: 20 }, userId: alice.id });
    await handle.waitForResponse();
    const original = await eventually(() => (String(handle.original()?.message.content).includes('Step') ? handle.original() : undefined), 30_000, 'progress on the reply');
    handle.expireToken();
    const reply = await eventually(
      () =>
        emulator
          .messages(emulator.defaults.channelId)
          .find((m) => m.message.message_reference?.message_id === original.message.id && m.message.embeds.length > 0),
      60_000,
      'the picture as a channel message',
    );
    const png = emulator.attachmentBytes(reply.message.id)!;
    expect((await sharp(png).metadata()).width).toBe(64);
    expect(reply.message.embeds[0]!.description).toBe('late');
    // The requester, and only the requester, is pinged: they asked 15 minutes ago.
    expect(reply.allowedMentions).toMatchObject({ parse: [], users: [alice.id] });
    expect(reply.message.mention_everyone).toBe(false);
    // Webhook calls after expiry answered 401 and were not retried in a loop.
    const rejected = originalEdits(emulator, handle.token).filter((call) => call.status === 401);
    expect(rejected.length).toBeLessThanOrEqual(2);
    // The bot token survived the 401s (they were webhook calls, sent without it): it can still post.
    const next = emulator.sendCommand({ name: 'imagine', options: { prompt: 'after', steps: 2 } });
    await finishedOriginal(next);
    const job = await eventually(() => {
      const found = h.app.queue.findByMessageId(reply.message.id);
      return found?.state === 'done' ? found : undefined;
    }, 10_000, 'the late job done');
    expect(job.resultMessageId).toBe(reply.message.id);
  });

  it('GIVEN the token expired and progress moved to a channel message THEN ❌ on that message cancels the job', async () => {
    const { emulator } = h;
    const { alice } = emulator.defaults.users;
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'cancel me late', steps: 40 }, userId: alice.id });
    await handle.waitForResponse();
    const original = await eventually(() => (String(handle.original()?.message.content).includes('Step') ? handle.original() : undefined), 30_000, 'progress on the reply');
    handle.expireToken();
    const fallback = await eventually(
      () =>
        emulator
          .messages(emulator.defaults.channelId)
          .find(
            (m) =>
              m.message.message_reference?.message_id === original.message.id &&
              String(m.message.content).includes('Step') &&
              m.reactions.get('❌')?.has(emulator.defaults.botUserId),
          ),
      30_000,
      'progress in a channel message, with ❌',
    );
    const job = h.app.queue.findByMessageId(original.message.id)!;
    expect(h.app.queue.findByMessageId(fallback.message.id)?.id).toBe(job.id);
    emulator.addReaction({ userId: alice.id, messageId: fallback.message.id, emoji: '❌' });
    await eventually(() => h.app.queue.get(job.id)!.state === 'cancelled', 15_000, 'the job cancelled from the channel message');
  });

  it('GIVEN reaction calls held up by a 429 THEN the picture is posted and the job is done without waiting for them', async () => {
    const { emulator } = h;
    // The next reaction call is told to wait 20 s, holding up the channel's line: pictures must not queue behind it.
    emulator.injectRateLimit((call) => call.route.includes('/reactions/'), { count: 1, retryAfter: 20 });
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'no waiting on emoji', steps: 2 } });
    await handle.waitForResponse();
    const started = Date.now();
    await finishedOriginal(handle);
    const job = h.app.queue.findByMessageId(handle.original()!.message.id)!;
    await eventually(() => h.app.queue.get(job.id)!.state === 'done', 15_000, 'the job done while its reactions wait');
    expect(Date.now() - started).toBeLessThan(15_000);
    // The 🔁 still arrives once the channel's line is through the 429s.
    await eventually(() => handle.original()!.reactions.get('🔁')?.has(emulator.defaults.botUserId), 60_000, 'the bot’s 🔁 in the end');
  });

  it('GIVEN the emulator clock passes 15 minutes while queued THEN delivery falls back the same way', async () => {
    const { emulator } = h;
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'clock', steps: 8 } });
    await handle.waitForResponse();
    emulator.advanceTime(16 * 60_000);
    const first = await eventually(() => handle.original(), 10_000, 'the reply');
    const reply = await eventually(
      () =>
        emulator
          .messages(emulator.defaults.channelId)
          .find((m) => m.message.message_reference?.message_id === first.message.id && m.message.embeds.length > 0),
      60_000,
      'the picture as a channel message',
    );
    expect(reply.message.embeds[0]!.description).toBe('clock');
  });

  it('GIVEN 429s on progress edits THEN they are waited out, the edits stay paced and the picture arrives', async () => {
    const { emulator } = h;
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'limited', steps: 20 } });
    await handle.waitForResponse();
    const limitedBefore = emulator.stats.rateLimited;
    emulator.injectRateLimit('PATCH /webhooks/*', { count: 3, retryAfter: 1 });
    const done = await finishedOriginal(handle);
    expect(emulator.stats.rateLimited - limitedBefore).toBe(3);
    const edits = originalEdits(emulator, handle.token);
    const accepted = edits.filter((call) => call.status < 300);
    // Never more than one edit in flight: at most the 3 injected 429s, no storm of retries.
    expect(edits.filter((call) => call.status === 429)).toHaveLength(3);
    // Progress edits stay spaced; the final one may follow sooner, within Discord's 5 edits per 5 s.
    const progressAccepted = accepted.slice(0, -1);
    for (let i = 1; i < progressAccepted.length; i++) expect(progressAccepted[i]!.at - progressAccepted[i - 1]!.at).toBeGreaterThanOrEqual(900);
    for (let i = 5; i < accepted.length; i++) expect(accepted[i]!.at - accepted[i - 5]!.at).toBeGreaterThanOrEqual(4900);
    expect(done.message.embeds[0]!.description).toBe('limited');
  });

  it('GIVEN Discord answers 5xx to edits THEN they are retried and the picture is delivered once', async () => {
    const { emulator } = h;
    const errorsBefore = emulator.stats.serverErrors;
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'flaky', steps: 4 } });
    await handle.waitForResponse();
    emulator.injectServerError((call) => call.method === 'PATCH' && call.params.token === handle.token, { count: 2, status: 502 });
    const done = await finishedOriginal(handle);
    expect(emulator.stats.serverErrors - errorsBefore).toBe(2);
    expect(done.message.embeds[0]!.description).toBe('flaky');
    const posts = emulator.messages(emulator.defaults.channelId).filter((m) => m.message.embeds[0]?.description === 'flaky');
    expect(posts).toHaveLength(1);
  });

  it('GIVEN a gateway RECONNECT mid-job THEN the job finishes unchanged and later commands still work', async () => {
    const { emulator } = h;
    const resumesBefore = emulator.gatewayStats.resumes;
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'steady', steps: 20, seed: 5 } });
    await eventually(() => (String(handle.original()?.message.content).includes('Step') ? true : undefined), 30_000, 'running');
    emulator.reconnect();
    await eventually(() => emulator.gatewayStats.resumes > resumesBefore, 30_000, 'a resume');
    const done = await finishedOriginal(handle);
    expect(Object.fromEntries(done.message.embeds[0]!.fields!.map((f) => [f.name, f.value])).Seed).toBe('5');
    const after = emulator.sendCommand({ name: 'help' });
    const response = await after.waitForResponse();
    expect(response.body.data.content).toMatch(/imagine/);
  });

  it('GIVEN an interaction whose upload limit is below the PNG THEN a smaller encoding is sent that fits', async () => {
    const { emulator } = h;
    const limit = 4000;
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'big file', steps: 2, aspect: 'landscape' }, attachmentSizeLimit: limit });
    const done = await finishedOriginal(handle);
    const attachment = done.message.attachments.find((a) => a.filename.startsWith('imagine-'))!;
    const bytes = emulator.attachmentBytes(done.message.id)!;
    expect(bytes.length).toBeLessThanOrEqual(limit);
    const meta = await sharp(bytes).metadata();
    expect([meta.width, meta.height]).toEqual([80, 56]);
    expect(done.message.embeds[0]!.image?.url).toBe(`attachment://${attachment.filename}`);
    // The same picture as the engine made it is over the limit: what arrived is the smaller encoding.
    const seed = Number(done.message.embeds[0]!.fields!.find((f) => f.name === 'Seed')!.value);
    const full = await new StandInEngine({ msPerStep: 0 }).generate({ prompt: 'big file', steps: 1, seed, guidanceScale: 7.5, width: 80, height: 56 });
    expect(full.images[0]!.byteLength).toBeGreaterThan(limit);
    expect(Buffer.compare(bytes, Buffer.from(full.images[0]!))).not.toBe(0);
  });
});

describe('a job that fails in the engine', () => {
  it('GIVEN the engine throws THEN the member reads that it failed, and the next job works', async () => {
    const engine = new StandInEngine({ msPerStep: 20, failWith: (params) => (params.prompt === 'boom' ? new Error('tensor on fire') : undefined) });
    const h = await startHarness({ engine, env: { EDIT_INTERVAL_MS: '300' } });
    try {
      const handle = h.emulator.sendCommand({ name: 'imagine', options: { prompt: 'boom', steps: 3 } });
      const failed = await eventually(() => (String(handle.original()?.message.content).includes('could not be made') ? handle.original() : undefined), 30_000, 'the failure message');
      expect(failed.message.attachments).toEqual([]);
      const next = h.emulator.sendCommand({ name: 'imagine', options: { prompt: 'fine', steps: 3 } });
      await finishedOriginal(next);
    } finally {
      await h.close();
      await engine.close();
    }
  });
});

describe('a defer that comes too late', () => {
  it('GIVEN Discord refuses the defer (past 3 s) THEN the job still runs and the picture is posted in the channel', async () => {
    // A deadline of 0 ms makes every first response late, as if the bot had been stuck for 3 s.
    const h = await startHarness({ emulator: { interactionDeadlineMs: 0 }, env: { STAND_IN_STEP_MS: '20', EDIT_INTERVAL_MS: '300' } });
    try {
      const { emulator } = h;
      const { alice } = emulator.defaults.users;
      const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'too late', steps: 3 }, userId: alice.id });
      await handle.waitForCall((call) => call.route.endsWith('/callback'), 10_000);
      const posted = await eventually(
        () => emulator.messages(emulator.defaults.channelId).find((m) => m.message.embeds[0]?.description === 'too late'),
        30_000,
        'the picture in the channel',
      );
      expect(posted.message.content).toContain(`<@${alice.id}>`);
      expect(posted.allowedMentions).toMatchObject({ parse: [], users: [alice.id] });
      // Posted as a new message (an edit would ping nobody); the progress message it replaces is gone.
      expect(posted.history).toEqual([]);
      await eventually(() => emulator.messages(emulator.defaults.channelId).filter((m) => !m.deleted && /Step|Waiting/.test(String(m.message.content))).length === 0, 10_000, 'the progress message removed');
      expect(handle.original()).toBeUndefined();
    } finally {
      await h.close();
    }
  });
});

describe('the per-channel edit budget', () => {
  it('GIVEN 5 progress edits per channel per minute THEN two busy jobs share them, and both pictures still arrive at once', async () => {
    const h = await startHarness({ env: { STAND_IN_STEP_MS: '100', EDIT_INTERVAL_MS: '100', EDITS_PER_CHANNEL_PER_MINUTE: '5' } });
    try {
      const { emulator } = h;
      const handles = ['budget one', 'budget two'].map((prompt) => emulator.sendCommand({ name: 'imagine', options: { prompt, steps: 20 } }));
      for (const handle of handles) {
        await eventually(() => {
          const original = handle.original();
          return original && original.message.embeds.length > 0 ? original : undefined;
        }, 60_000, 'a picture');
      }
      const live = handles
        .flatMap((handle) => originalEdits(emulator, handle.token))
        .filter((call) => /^(⏳|🎨)/.test(String(call.body?.content ?? '')));
      expect(live.length).toBeGreaterThanOrEqual(2);
      expect(live.length).toBeLessThanOrEqual(5);
    } finally {
      await h.close();
    }
  });
});
