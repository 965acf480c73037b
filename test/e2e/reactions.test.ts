import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoredMessage } from '../../src/playground/emulator/index.js';
import { eventually, startHarness, type Harness } from '../../tools/discord-emulator/harness.js';

/** Waits for the interaction's reply to carry the final picture. */
async function finished(h: Harness, handle: { original(): StoredMessage | undefined }): Promise<StoredMessage> {
  return eventually(() => {
    const original = handle.original();
    return original && original.message.embeds.length > 0 && original.message.attachments.length > 0 ? original : undefined;
  }, 60_000, 'the final image');
}

function repliesTo(h: Harness, messageId: string): StoredMessage[] {
  return h.emulator.messages(h.emulator.defaults.channelId).filter((m) => m.message.message_reference?.message_id === messageId);
}

const jobCount = (h: Harness) => (h.app.db.prepare('SELECT count(*) AS n FROM jobs').get() as { n: number }).n;

describe('reactions end to end', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { STAND_IN_STEP_MS: '100', EDIT_INTERVAL_MS: '500' } });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('GIVEN 🔁 by the requester THEN a new picture with the same parameters and a new seed replies to the image', async () => {
    const { emulator } = h;
    const { alice } = emulator.defaults.users;
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'a blue square', steps: 3, seed: 7, guidance: 0, negative: 'red' }, userId: alice.id });
    const image = await finished(h, handle);
    await eventually(() => image.reactions.get('🔁')?.has(emulator.defaults.botUserId), 10_000, 'the bot’s 🔁');
    const before = jobCount(h);

    emulator.addReaction({ userId: alice.id, messageId: image.message.id, emoji: '🔁' });
    const reroll = await eventually(() => repliesTo(h, image.message.id).find((m) => m.message.embeds.length > 0), 60_000, 'the reroll');
    expect(jobCount(h)).toBe(before + 1);
    const fields = Object.fromEntries(reroll.message.embeds[0]!.fields!.map((f) => [f.name, f.value]));
    expect(fields).toMatchObject({ Steps: '3', Guidance: '0', Negative: 'red' });
    expect(fields.Seed).not.toBe('7');
    expect(reroll.message.embeds[0]!.description).toBe('a blue square');
    const png = emulator.attachmentBytes(reroll.message.id)!;
    expect((await sharp(png).metadata()).width).toBe(64);
    const job = await eventually(() => {
      const found = h.app.queue.findByMessageId(reroll.message.id);
      return found?.state === 'done' ? found : undefined;
    }, 10_000, 'the reroll job done');
    expect(job).toMatchObject({ kind: 'reroll', userId: alice.id });
    expect(reroll.allowedMentions?.parse).toEqual([]);
  });

  it('GIVEN 🔁 from another member, a bot, or on a message that is not a finished picture THEN nothing is queued', async () => {
    const { emulator } = h;
    const { alice, bob, otherBot } = emulator.defaults.users;
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'green', steps: 2 }, userId: alice.id });
    const image = await finished(h, handle);
    await eventually(() => image.reactions.get('🔁')?.has(emulator.defaults.botUserId), 10_000, 'the bot’s 🔁');
    const before = jobCount(h);
    emulator.addReaction({ userId: bob.id, messageId: image.message.id, emoji: '🔁' });
    emulator.addReaction({ userId: otherBot.id, messageId: image.message.id, emoji: '🔁' });
    const other = emulator.seedMessage({ content: 'not ours' });
    emulator.addReaction({ userId: alice.id, messageId: other.message.id, emoji: '🔁' });
    // A marker reaction handled after the others proves they were processed (events arrive in order).
    emulator.addReaction({ userId: alice.id, messageId: image.message.id, emoji: '🔁' });
    await eventually(() => jobCount(h) === before + 1, 10_000, 'the requester’s reroll');
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(jobCount(h)).toBe(before + 1);
    await eventually(() => h.app.queue.snapshot().totals.waiting + h.app.queue.snapshot().totals.running === 0, 30_000, 'idle');
  });

  it('GIVEN ❌ from the requester on a running job THEN it stops and the message says cancelled; ❌ from another member does nothing', async () => {
    const { emulator } = h;
    const { alice, bob } = emulator.defaults.users;
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'slow', steps: 50 }, userId: alice.id });
    const shown = await eventually(() => {
      const original = handle.original();
      return original?.reactions.get('❌')?.has(emulator.defaults.botUserId) && String(original.message.content).includes('Step') ? original : undefined;
    }, 30_000, 'a running job with ❌');
    const job = h.app.queue.findByMessageId(shown.message.id)!;
    emulator.addReaction({ userId: bob.id, messageId: shown.message.id, emoji: '❌' });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(h.app.queue.get(job.id)!.state).toBe('running');
    emulator.addReaction({ userId: alice.id, messageId: shown.message.id, emoji: '❌' });
    await eventually(() => h.app.queue.get(job.id)!.state === 'cancelled', 30_000, 'the job cancelled');
    const final = await eventually(() => (String(handle.original()?.message.content).includes('Cancelled') ? handle.original() : undefined), 10_000, 'the cancelled message');
    expect(final!.message.attachments.filter((a) => a.filename.startsWith('imagine-'))).toEqual([]);
    await eventually(() => !final!.reactions.get('❌')?.has(emulator.defaults.botUserId), 10_000, '❌ taken back');
  });

  it('GIVEN ❌ from a moderator on a waiting job THEN it is removed from the queue', async () => {
    const { emulator } = h;
    const { alice, bob, owner } = emulator.defaults.users;
    emulator.sendCommand({ name: 'imagine', options: { prompt: 'blocker', steps: 30 }, userId: bob.id });
    await eventually(() => h.app.queue.snapshot().running.length === 1, 10_000, 'the blocker to run');
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'waiting', steps: 2 }, userId: alice.id });
    const shown = await eventually(() => {
      const original = handle.original();
      return original?.reactions.get('❌')?.has(emulator.defaults.botUserId) && String(original.message.content).includes('Waiting') ? original : undefined;
    }, 30_000, 'a waiting job with ❌');
    emulator.addReaction({ userId: owner.id, messageId: shown.message.id, emoji: '❌' });
    const job = h.app.queue.findByMessageId(shown.message.id)!;
    await eventually(() => h.app.queue.get(job.id)!.state === 'cancelled', 10_000, 'the waiting job cancelled');
    await eventually(() => String(handle.original()?.message.content).includes('Cancelled'), 10_000, 'the cancelled message');
    for (const view of h.app.queue.snapshot().running) h.app.queue.cancel(view.job.id);
    await eventually(() => h.app.queue.snapshot().running.length === 0, 30_000, 'idle');
  });
});

describe('reroll rules from the guild settings', () => {
  it('GIVEN reroll who:anyone THEN another member may 🔁, and it counts against their own queue cap', async () => {
    const h = await startHarness({ env: { STAND_IN_STEP_MS: '100', EDIT_INTERVAL_MS: '300', QUEUE_MAX_PER_MEMBER: '1' } });
    try {
      const { emulator } = h;
      const { alice, bob, owner } = emulator.defaults.users;
      h.app.settings.update(emulator.defaults.guildId, owner.id, (s) => ({ ...s, rerollWho: 'anyone' }));
      const image = await finished(h, emulator.sendCommand({ name: 'imagine', options: { prompt: 'shared', steps: 2 }, userId: alice.id }));
      await eventually(() => image.reactions.get('🔁')?.has(emulator.defaults.botUserId), 10_000, 'the bot’s 🔁');
      // Keep the engine busy, and give bob one waiting job: his cap of 1 is full.
      emulator.sendCommand({ name: 'imagine', options: { prompt: 'blocker', steps: 40 }, userId: alice.id });
      await eventually(() => h.app.queue.snapshot().running.length === 1, 10_000, 'the blocker running');
      await emulator.sendCommand({ name: 'imagine', options: { prompt: 'bob waits', steps: 2 }, userId: bob.id }).waitForResponse();
      const before = jobCount(h);
      emulator.addReaction({ userId: bob.id, messageId: image.message.id, emoji: '🔁' });
      const notice = await eventually(
        () => repliesTo(h, image.message.id).find((m) => String(m.message.content).startsWith(`<@${bob.id}>`)),
        10_000,
        'the cap notice',
      );
      expect(notice.allowedMentions).toMatchObject({ parse: [], users: [bob.id] });
      expect(jobCount(h)).toBe(before);
      // Once bob's job is gone, his 🔁 is accepted.
      for (const view of h.app.queue.snapshot().waiting) h.app.queue.cancel(view.job.id);
      emulator.removeReaction({ userId: bob.id, messageId: image.message.id, emoji: '🔁' });
      emulator.addReaction({ userId: bob.id, messageId: image.message.id, emoji: '🔁' });
      await eventually(() => jobCount(h) === before + 1, 10_000, 'bob’s reroll queued');
      const reroll = h.app.db.prepare('SELECT user_id, kind FROM jobs ORDER BY seq DESC LIMIT 1').get();
      expect(reroll).toEqual({ user_id: bob.id, kind: 'reroll' });
      for (const view of [...h.app.queue.snapshot().waiting, ...h.app.queue.snapshot().running]) h.app.queue.cancel(view.job.id);
    } finally {
      await h.close();
    }
  });
});

describe('refusals to reactions', () => {
  it('GIVEN a member over their cap toggles 🔁 eight times THEN the bot posts at most one notice, and nothing is queued', async () => {
    const h = await startHarness({ env: { STAND_IN_STEP_MS: '100', EDIT_INTERVAL_MS: '300', QUEUE_MAX_PER_MEMBER: '1' } });
    try {
      const { emulator } = h;
      const { alice } = emulator.defaults.users;
      const image = await finished(h, emulator.sendCommand({ name: 'imagine', options: { prompt: 'spam me', steps: 2 }, userId: alice.id }));
      await eventually(() => image.reactions.get('🔁')?.has(emulator.defaults.botUserId), 10_000, 'the bot’s 🔁');
      emulator.sendCommand({ name: 'imagine', options: { prompt: 'blocker', steps: 40 }, userId: alice.id });
      await eventually(() => h.app.queue.snapshot().running.length === 1, 10_000, 'the blocker running');
      await emulator.sendCommand({ name: 'imagine', options: { prompt: 'alice waits', steps: 2 }, userId: alice.id }).waitForResponse();
      const before = jobCount(h);
      for (let i = 0; i < 8; i++) {
        emulator.addReaction({ userId: alice.id, messageId: image.message.id, emoji: '🔁' });
        emulator.removeReaction({ userId: alice.id, messageId: image.message.id, emoji: '🔁' });
      }
      // A ❌ from alice on a message that is not a job, handled after the eight, marks that they were all seen.
      const marker = emulator.seedMessage({ content: 'marker' });
      emulator.addReaction({ userId: alice.id, messageId: marker.message.id, emoji: '🔁' });
      await eventually(() => repliesTo(h, image.message.id).some((m) => String(m.message.content).startsWith(`<@${alice.id}>`)), 10_000, 'a notice');
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const notices = repliesTo(h, image.message.id).filter((m) => String(m.message.content).startsWith(`<@${alice.id}>`));
      expect(notices).toHaveLength(1);
      expect(jobCount(h)).toBe(before);
      for (const view of [...h.app.queue.snapshot().waiting, ...h.app.queue.snapshot().running]) h.app.queue.cancel(view.job.id);
    } finally {
      await h.close();
    }
  });
});

describe('reroll after a restart (uncached message, journal only)', () => {
  it('GIVEN a picture made before the bot restarted THEN 🔁 on it still rerolls', async () => {
    const first = await startHarness({ env: { STAND_IN_STEP_MS: '50', EDIT_INTERVAL_MS: '300' } });
    const { emulator, dataDir } = first;
    const { alice } = emulator.defaults.users;
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'remember me', steps: 2, seed: 1 }, userId: alice.id });
    const image = await finished(first, handle);
    await eventually(() => image.reactions.get('🔁')?.has(emulator.defaults.botUserId), 10_000, 'the bot’s 🔁');
    await first.close({ keepEmulator: true, keepData: true });

    const second = await startHarness({ existingEmulator: emulator, dataDir, env: { STAND_IN_STEP_MS: '50', EDIT_INTERVAL_MS: '300' } });
    try {
      // A new process: the picture's message is in no cache, only in the journal.
      const channel = second.app.client.channels.cache.get(emulator.defaults.channelId);
      expect(channel?.isTextBased()).toBe(true);
      expect(channel?.isTextBased() && channel.messages.cache.has(image.message.id)).toBe(false);
      emulator.addReaction({ userId: alice.id, messageId: image.message.id, emoji: '🔁' });
      const reroll = await eventually(
        () => repliesTo(second, image.message.id).find((m) => m.message.embeds.length > 0),
        60_000,
        'the reroll after restart',
      );
      expect(reroll.message.embeds[0]!.description).toBe('remember me');
    } finally {
      await second.close();
      await emulator.close();
      const fs = await import('node:fs');
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
