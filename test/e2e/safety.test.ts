/**
 * Safety end to end: the real worker pool running the embedded model with the test safety checker (it flags red
 * pictures; the prompt picks the colour), the whole bot against the emulator, a normal channel, an age-restricted
 * one and a thread of it. Then the same rules for a model without a checker (the stand-in), and ❌ by a moderator.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ApplicationCommandOptionType as T } from 'discord-api-types/v10';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/store/database.js';
import { JobStore } from '../../src/store/jobs.js';
import { ResultFiles } from '../../src/store/results.js';
import { DiscordEmulator, type InteractionHandle, type StoredMessage } from '../../src/playground/emulator/index.js';
import { deployCommands, eventually, startHarness, type Harness } from '../../tools/discord-emulator/harness.js';
import { checkedModelDir, GREEN_PROMPT, RED_PROMPT } from '../fixtures/checked-model.js';

type RawOption = { name: string; type: number; value?: string | number; options?: RawOption[] };
const sub = (name: string, options: RawOption[] = []): RawOption[] => [{ name, type: T.Subcommand, options }];

/** A bot against an emulator whose server has an age-restricted channel and a thread of it (in GUILD_CREATE). */
async function startWithChannels(env: Record<string, string>): Promise<{ h: Harness; adult: string; thread: string; close: () => Promise<void> }> {
  const emulator = await DiscordEmulator.start({ rateLimits: [] });
  const adult = emulator.createTextChannel({ name: 'adult', nsfw: true }).id;
  const thread = emulator.createThread({ parentId: adult, name: 'adult thread' }).id;
  await deployCommands(emulator);
  const h = await startHarness({ existingEmulator: emulator, env: { EDIT_INTERVAL_MS: '0', ...env } });
  return {
    h,
    adult,
    thread,
    close: async () => {
      await h.close();
      await emulator.close();
    },
  };
}

/** The final state of a job's reply: a picture, or the held-back notice. */
function finalReply(h: Harness, handle: InteractionHandle): Promise<StoredMessage> {
  return eventually(
    () => {
      const original = handle.original();
      const content = String(original?.message.content ?? '');
      return original && (original.message.attachments.some((a) => /imagine-/.test(a.filename)) || content.startsWith('🛡️')) ? original : undefined;
    },
    90_000,
    () => `the job's end; bot log:\n${h.logs.join('\n')}`,
  );
}

async function settings(h: Harness, userId: string, options: RawOption[]): Promise<string> {
  const response = await h.emulator.sendCommand({ name: 'settings', options: options as never, userId }).waitForResponse();
  return String(response.body.data?.content ?? '');
}

describe('the model’s safety checker through the real pipeline', () => {
  let env: Awaited<ReturnType<typeof startWithChannels>>;
  let model: ReturnType<typeof checkedModelDir>;
  beforeAll(async () => {
    model = checkedModelDir();
    env = await startWithChannels({ SAMPLER: 'workers', MODEL_DIR: model.dir, GUIDANCE_DEFAULT: '7.5' });
  });
  afterAll(async () => {
    await env?.close();
    model?.remove();
  });

  it('GIVEN strict (the default) in a normal channel THEN a flagged picture is not posted, the member is told why privately, moderators see it in the audit', async () => {
    const { h } = env;
    const { alice, owner } = h.emulator.defaults.users;
    const handle = h.emulator.sendCommand({ name: 'imagine', options: { prompt: RED_PROMPT, seed: 1 }, userId: alice.id });
    const reply = await finalReply(h, handle);
    expect(reply.message.content).toMatch(/^🛡️ This picture was not posted: the model’s safety checker flagged this picture, and this server posts flagged pictures only in age-restricted channels\./);
    expect(reply.message.attachments).toEqual([]);
    expect(reply.message.embeds).toEqual([]);
    // No preview of it either, at any step: a preview is the picture before the checker has seen it.
    const uploads = handle.calls().flatMap((call) => call.files.map((file) => file.name));
    expect(uploads).toEqual([]);
    const notice = await eventually(() => handle.followUps()[0], 10_000, 'the private notice');
    expect(notice.message.flags! & 64).toBe(64);
    expect(notice.message.content).toMatch(/^Your picture was not posted: .*Try another prompt, or ask in an age-restricted channel\.$/);
    const job = h.app.queue.findByMessageId(reply.message.id)!;
    expect(job).toMatchObject({ state: 'failed', errorCode: 'safetyBlocked', channelNsfw: false });
    // Nothing anywhere in the channel carries the picture.
    expect(h.emulator.messages(h.emulator.defaults.channelId).flatMap((m) => m.message.attachments)).toEqual([]);

    const audit = await settings(h, owner.id, sub('audit'));
    expect(audit).toMatch(new RegExp(`🛡️ held back <@${alice.id}>’s picture in <#${h.emulator.defaults.channelId}> \\(rule: flagged\\): “${RED_PROMPT}”`));
    expect(audit.length).toBeLessThanOrEqual(2000);
  });

  it('GIVEN strict in a normal channel and a picture that is not flagged THEN it is posted as usual', async () => {
    const { h } = env;
    const reply = await finalReply(h, h.emulator.sendCommand({ name: 'imagine', options: { prompt: GREEN_PROMPT, seed: 1 } }));
    expect(reply.message.attachments.map((a) => a.filename)).toEqual(['imagine-1.png']);
    expect(reply.message.embeds[0]!.image?.url).toBe('attachment://imagine-1.png');
  });

  it('GIVEN an age-restricted channel, and a thread of one THEN the flagged picture is posted, with live previews', async () => {
    const { h, adult, thread } = env;
    for (const channelId of [adult, thread]) {
      const handle = h.emulator.sendCommand({ name: 'imagine', options: { prompt: RED_PROMPT, seed: 2 }, channelId });
      const reply = await finalReply(h, handle);
      expect(reply.message.channel_id).toBe(channelId);
      expect(reply.message.attachments.map((a) => a.filename)).toEqual(['imagine-2.png']);
      expect(reply.message.content).toBe('');
      expect(handle.calls().some((call) => call.files.some((file) => file.name === 'preview.png'))).toBe(true);
      // The journal says done once Discord has answered the post: a moment after the message exists.
      const job = await eventually(() => {
        const found = h.app.queue.findByMessageId(reply.message.id);
        return found?.state === 'done' ? found : undefined;
      }, 10_000, 'the job done');
      expect(job).toMatchObject({ state: 'done', channelNsfw: true });
    }
  });

  it('GIVEN spoiler mode set by the owner THEN a flagged picture is posted as SPOILER_ with a warning and kept out of the embed', async () => {
    const { h } = env;
    const { owner, alice } = h.emulator.defaults.users;
    const changed = await settings(h, owner.id, sub('safety', [{ name: 'mode', type: T.String, value: 'spoiler' }]));
    expect(changed).toMatch(/safetyMode: strict → spoiler/);
    try {
      const reply = await finalReply(h, h.emulator.sendCommand({ name: 'imagine', options: { prompt: RED_PROMPT, seed: 3 }, userId: alice.id }));
      expect(reply.message.attachments.map((a) => a.filename)).toEqual(['SPOILER_imagine-3.png']);
      expect(reply.message.content).toMatch(/^⚠️ The model’s safety checker flagged this picture; it is hidden behind a spoiler/);
      expect(reply.message.embeds[0]!.image).toBeUndefined();
      expect(reply.message.embeds[0]!.description).toBe(RED_PROMPT);
    } finally {
      await settings(h, owner.id, sub('safety', [{ name: 'mode', type: T.String, value: 'strict' }]));
    }
    const audit = await settings(h, owner.id, sub('audit'));
    expect(audit).toMatch(new RegExp(`<@${owner.id}> safetyMode: strict → spoiler`));
  });

  it('GIVEN /settings show THEN it says the model has a safety checker and which mode applies', async () => {
    const shown = await settings(env.h, env.h.emulator.defaults.users.alice.id, sub('show'));
    expect(shown).toMatch(/\*\*Safety:\*\* strict: flagged pictures are held back outside age-restricted channels/);
    expect(shown).toMatch(/\*\*Model’s safety checker:\*\* yes \(shapes-checked\): every picture is checked/);
  });
});

describe('a model without a safety checker, the default negative prompt, and ❌ on finished pictures (stand-in engine)', () => {
  let env: Awaited<ReturnType<typeof startWithChannels>>;
  beforeAll(async () => {
    env = await startWithChannels({ STAND_IN_STEP_MS: '20' });
  });
  afterAll(async () => {
    await env?.close();
  });

  it('GIVEN strict with unchecked:refuse THEN /imagine is refused at once outside age-restricted channels and accepted in them', async () => {
    const { h, adult, thread } = env;
    const { owner, alice } = h.emulator.defaults.users;
    const shown = await settings(h, alice.id, sub('show'));
    expect(shown).toMatch(/\*\*Model’s safety checker:\*\* none \(stand-in has no safety_checker\/\): pictures are not checked, and are allowed outside age-restricted channels/);
    expect(await settings(h, owner.id, sub('safety', [{ name: 'unchecked', type: T.String, value: 'refuse' }]))).toMatch(/refuseUnchecked: false → true/);
    try {
      const jobs = () => (h.app.db.prepare('SELECT count(*) AS n FROM jobs').get() as { n: number }).n;
      const before = jobs();
      const refused = await h.emulator.sendCommand({ name: 'imagine', options: { prompt: 'a cat' }, userId: alice.id }).waitForResponse();
      expect(refused.body.type).toBe(4);
      expect(refused.body.data.flags & 64).toBe(64);
      expect(refused.body.data.content).toMatch(/^This server allows only pictures checked by a safety checker outside age-restricted channels.*Ask in an age-restricted channel\.$/);
      expect(jobs()).toBe(before);
      for (const channelId of [adult, thread]) {
        const reply = await finalReply(h, h.emulator.sendCommand({ name: 'imagine', options: { prompt: 'a cat', steps: 2, seed: 4 }, userId: alice.id, channelId }));
        expect(reply.message.attachments.map((a) => a.filename)).toEqual(['imagine-4.png']);
      }
    } finally {
      await settings(h, owner.id, sub('safety', [{ name: 'unchecked', type: T.String, value: 'allow' }]));
    }
  });

  it('GIVEN /settings negative default THEN every request gets it before the member’s own, and it shows in the picture’s embed', async () => {
    const { h } = env;
    const { owner, alice } = h.emulator.defaults.users;
    expect(await settings(h, owner.id, sub('negative', [{ name: 'default', type: T.String, value: 'nsfw, *gore*' }]))).toMatch(/negativeDefault: \(none\) → nsfw, \\\*gore\\\*/);
    try {
      const reply = await finalReply(h, h.emulator.sendCommand({ name: 'imagine', options: { prompt: 'a cat', negative: 'blurry', steps: 2 }, userId: alice.id }));
      const job = h.app.queue.findByMessageId(reply.message.id)!;
      expect(job.params.negativePrompt).toBe('nsfw, *gore*, blurry');
      expect(job.guildNegative).toBe('nsfw, *gore*');
      const fields = Object.fromEntries(reply.message.embeds[0]!.fields!.map((f) => [f.name, f.value]));
      expect(fields.Negative).toBe('nsfw, \\*gore\\*, blurry');
      expect(await settings(h, alice.id, sub('show'))).toMatch(/\*\*Default negative prompt:\*\* “nsfw, \\\*gore\\\*”/);
    } finally {
      await settings(h, owner.id, sub('negative'));
    }
  });

  it('GIVEN a posted picture THEN a member’s ❌ on someone else’s does nothing, a moderator’s ❌ deletes it and is audited', async () => {
    const { h } = env;
    const { owner, alice, bob } = h.emulator.defaults.users;
    const reply = await finalReply(h, h.emulator.sendCommand({ name: 'imagine', options: { prompt: 'take me down', steps: 2 }, userId: alice.id }));
    const messageId = reply.message.id;
    await eventually(() => h.app.queue.findByMessageId(messageId)?.state === 'done', 10_000, 'the job done');

    h.emulator.addReaction({ userId: bob.id, messageId, emoji: '❌' });
    h.emulator.addReaction({ userId: alice.id, messageId, emoji: '❌' });
    // A later reaction handled after those (events arrive in order) marks that they were seen.
    const marker = h.emulator.seedMessage({ content: 'marker' });
    h.emulator.addReaction({ userId: bob.id, messageId: marker.message.id, emoji: '❌' });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(h.emulator.message(messageId)).toBeDefined();
    expect(h.emulator.calls.filter((call) => call.method === 'DELETE' && call.path === `/channels/${reply.message.channel_id}/messages/${messageId}`)).toEqual([]);

    h.emulator.addReaction({ userId: owner.id, messageId, emoji: '❌' });
    await eventually(() => h.emulator.message(messageId) === undefined, 10_000, 'the picture deleted');
    const audit = await settings(h, owner.id, sub('audit'));
    expect(audit).toMatch(new RegExp(`<@${owner.id}> ❌ deleted <@${alice.id}>’s picture in <#${h.emulator.defaults.channelId}>: “take me down”`));
    expect(h.app.queue.findByMessageId(messageId)).toMatchObject({ state: 'done' });
  });
});

describe('after a restart', () => {
  it('GIVEN flagged pictures saved but not posted when the bot stopped THEN the channel’s age restriction from the journal still decides', async () => {
    const emulator = await DiscordEmulator.start({ rateLimits: [] });
    const adult = emulator.createTextChannel({ name: 'adult', nsfw: true }).id;
    await deployCommands(emulator);
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imagine-e2e-safety-'));
    // The journal as a stopped bot left it: two 🔁 jobs made and saved (flagged by the checker), not yet posted.
    const db = openDatabase({ dataDir });
    const jobs = new JobStore(db);
    const results = new ResultFiles(path.join(dataDir, 'results'));
    const png = new Uint8Array(await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 230, g: 20, b: 20 } } }).png().toBuffer());
    const { alice } = emulator.defaults.users;
    for (const [id, channelId, channelNsfw] of [['JOBADULT000000000001', adult, true], ['JOBGENERAL0000000001', emulator.defaults.channelId, false]] as const) {
      jobs.insert({
        id, deliveryKey: id, guildId: emulator.defaults.guildId, channelId, channelNsfw, userId: alice.id, kind: 'reroll',
        params: { prompt: `saved in ${channelNsfw ? 'adult' : 'general'}`, steps: 2, seed: 9, guidanceScale: 0 },
        state: 'queued', attempts: 0, deliveryAttempts: 0, createdAt: Date.now(),
      });
      jobs.markRunning(id, Date.now());
      await results.save(id, [png]);
      jobs.markDelivering(id, {
        width: 32, height: 32, seed: 9, steps: 2, guidanceScale: 0, scheduler: 'euler', model: 'checked', truncated: false,
        flagged: [true], timings: { totalMs: 1, runtimeMs: 1, unetMs: 1 }, imageCount: 1,
      });
    }
    db.close();

    const h = await startHarness({ existingEmulator: emulator, dataDir, env: { EDIT_INTERVAL_MS: '0' } });
    try {
      expect(h.app.resumed.redelivering).toBe(2);
      const posted = await eventually(() => emulator.messages(adult).find((m) => m.message.attachments.length > 0), 30_000, 'the adult channel’s picture');
      expect(posted.message.attachments.map((a) => a.filename)).toEqual(['imagine-9.png']);
      const held = await eventually(
        () => emulator.messages(emulator.defaults.channelId).find((m) => String(m.message.content).startsWith('🛡️')),
        30_000,
        'the general channel’s notice',
      );
      expect(held.message.attachments).toEqual([]);
      expect(h.app.queue.get('JOBGENERAL0000000001')).toMatchObject({ state: 'failed', errorCode: 'safetyBlocked' });
      expect(h.app.queue.get('JOBADULT000000000001')).toMatchObject({ state: 'done' });
    } finally {
      await h.close({ keepData: true });
      await emulator.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
