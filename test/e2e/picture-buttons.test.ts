/**
 * U1–U4 and V1–V4 under a job's pictures, end to end: real discord.js over the emulator's sockets, the stand-in
 * engine (its img2img mixes the start picture into its output, so a test can tell which picture a job started
 * from), a real SQLite journal. Presses come as button interactions; every answer to the presser is ephemeral.
 */
import fs from 'node:fs';
import { ComponentType, type APIActionRowComponent, type APIButtonComponent } from 'discord-api-types/v10';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPngText } from '../../src/image/png-text.js';
import type { DiscordEmulator, StoredMessage } from '../../src/playground/emulator/index.js';
import { eventually, startHarness, type Harness } from '../../tools/discord-emulator/harness.js';
import { answerTo, customIdOf, finished } from './picture-messages.js';

/** A finished message that replies to `messageId` (a U's or V's picture). */
function replyWithPictures(emulator: DiscordEmulator, messageId: string, what: string): Promise<StoredMessage> {
  return eventually(
    () =>
      emulator
        .messages(emulator.defaults.channelId)
        .find((m) => m.message.message_reference?.message_id === messageId && m.message.embeds.length > 0 && m.message.attachments.length > 0),
    30_000,
    what,
  );
}

function buttonsOf(message: StoredMessage): APIButtonComponent[][] {
  return ((message.message.components ?? []) as APIActionRowComponent<APIButtonComponent>[]).map((row) => {
    expect(row.type).toBe(ComponentType.ActionRow);
    return row.components;
  });
}

async function rgb(png: Uint8Array, side?: number): Promise<Buffer> {
  const image = sharp(png).removeAlpha();
  return (side === undefined ? image : image.resize(side, side, { kernel: 'nearest' })).raw().toBuffer();
}

/** Mean absolute difference per channel value of two equal-size RGB buffers. */
function distance(a: Buffer, b: Buffer): number {
  expect(a.length).toBe(b.length);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / a.length;
}

/** Index of the original picture the made one is nearest to. */
async function nearest(made: Uint8Array, originals: Uint8Array[]): Promise<number> {
  const { width } = await sharp(originals[0]).metadata();
  const target = await rgb(made, width);
  const distances = await Promise.all(originals.map(async (png) => distance(target, await rgb(png))));
  return distances.indexOf(Math.min(...distances));
}

describe('U and V buttons (stand-in engine)', () => {
  let h: Harness;
  let grid: StoredMessage;
  let originals: Uint8Array[];
  const jobCount = () => (h.app.db.prepare('SELECT count(*) AS n FROM jobs').get() as { n: number }).n;

  beforeAll(async () => {
    h = await startHarness({ env: { STAND_IN_STEP_MS: '20', EDIT_INTERVAL_MS: '0' } });
    const { alice } = h.emulator.defaults.users;
    grid = await finished(h.emulator.sendCommand({ name: 'imagine', options: { prompt: 'four tiles', count: 4, seed: 700, steps: 5 }, userId: alice.id }));
    originals = [1, 2, 3, 4].map((i) => h.emulator.attachmentBytes(grid.message.id, i)!);
  });
  afterAll(async () => {
    await h?.close();
  });

  it('GIVEN /imagine count:4 THEN the grid message has two rows: U1–U4 and V1–V4, custom ids naming the job and the picture', () => {
    const rows = buttonsOf(grid);
    expect(rows.map((row) => row.map((b) => ('label' in b ? b.label : '')))).toEqual([
      ['U1', 'U2', 'U3', 'U4'],
      ['V1', 'V2', 'V3', 'V4'],
    ]);
    const job = h.app.queue.findByMessageId(grid.message.id)!;
    expect(customIdOf(grid, 'U2')).toBe(`imagine:u:${job.id}:1`);
    expect(customIdOf(grid, 'V3')).toBe(`imagine:v:${job.id}:2`);
    for (const button of rows.flat()) expect('custom_id' in button && button.custom_id.length).toBeLessThanOrEqual(100);
  });

  it('GIVEN V3 pressed by the requester THEN an ephemeral line, and a reply of four variations made from picture 3 at strength 0.6, with their own buttons', async () => {
    const { emulator } = h;
    const press = emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, 'V3'), userId: emulator.defaults.users.alice.id });
    const answer = await answerTo(press);
    expect(answer.ephemeral).toBe(true);
    expect(answer.content).toMatch(/^🎲 V3: making 4 variations of picture 3/);
    const reply = await replyWithPictures(emulator, grid.message.id, 'the variations');
    expect(reply.message.content).toMatch(/^🎲 Variations of picture 3 for <@/);
    // Its progress counts the steps img2img runs: floor(5 × 0.6) = 3, not the 5 of the original.
    const progress = reply.history.map((version) => version.content).filter((content) => content.includes('Step '));
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.every((content) => /Step \d\/3 /.test(content))).toBe(true);
    const parent = h.app.queue.findByMessageId(grid.message.id)!;
    const job = h.app.queue.findByMessageId(reply.message.id)!;
    expect(job).toMatchObject({ kind: 'variation', parentJobId: parent.id, sourcePicture: 2, params: { count: 4, strength: 0.6, prompt: 'four tiles' } });
    // The start picture is beside the job, not in its journaled params.
    expect(h.app.queue.initImage(job.id)?.length).toBeGreaterThan(0);
    expect(JSON.parse((h.app.db.prepare('SELECT params FROM jobs WHERE id = ?').get(job.id) as { params: string }).params)).not.toHaveProperty('initImage');
    // It started from picture 3 as posted: the very bytes of that attachment.
    expect(Buffer.from(h.app.queue.initImage(job.id)!).equals(Buffer.from(originals[2]))).toBe(true);
    for (let i = 1; i <= 4; i++) {
      const made = emulator.attachmentBytes(reply.message.id, i)!;
      expect(readPngText(made).get('parameters')).toMatch(/Denoising strength: 0\.6/);
    }
    expect(buttonsOf(reply).flat().map((b) => ('label' in b ? b.label : ''))).toEqual(['U1', 'U2', 'U3', 'U4', 'V1', 'V2', 'V3', 'V4']);
  });

  it('GIVEN U2 pressed by the requester THEN a reply with picture 2 at twice its size, its own seed, no buttons', async () => {
    const { emulator } = h;
    const press = emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, 'U2'), userId: emulator.defaults.users.alice.id });
    expect((await answerTo(press)).content).toMatch(/^🔍 U2: upscaling picture 2 to 128×128/);
    const reply = await eventually(
      () =>
        emulator
          .messages(emulator.defaults.channelId)
          .find((m) => m.message.message_reference?.message_id === grid.message.id && m.message.content.startsWith('🔍 Upscaled') && m.message.attachments.length > 0),
      30_000,
      'the upscale',
    );
    expect(reply.message.content).toMatch(/^🔍 Upscaled picture 2 2× for <@/);
    const png = emulator.attachmentBytes(reply.message.id, 0)!;
    expect(await sharp(png).metadata()).toMatchObject({ width: 128, height: 128 });
    expect(Buffer.from(h.app.queue.initImage(h.app.queue.findByMessageId(reply.message.id)!.id)!).equals(Buffer.from(originals[1]))).toBe(true);
    // The stand-in keeps 65 % of the start picture at strength 0.35: the made picture is nearest to picture 2.
    expect(await nearest(png, originals)).toBe(1);
    expect(readPngText(png).get('parameters')).toMatch(/Seed: 701, Size: 128x128, .*Denoising strength: 0\.35/);
    expect(reply.message.components ?? []).toEqual([]);
    expect(h.app.queue.findByMessageId(reply.message.id)).toMatchObject({ kind: 'upscale', sourcePicture: 1, params: { seed: 701, width: 128, height: 128 } });
  });

  it('GIVEN V1 pressed by another member THEN an ephemeral refusal and nothing queued', async () => {
    const { emulator } = h;
    await h.app.queue.onIdle();
    const before = jobCount();
    const publicMessages = () => emulator.messages(emulator.defaults.channelId).filter((m) => ((m.message.flags ?? 0) & 64) === 0).length;
    const messages = publicMessages();
    const press = emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, 'V1'), userId: emulator.defaults.users.bob.id });
    const answer = await answerTo(press);
    expect(answer.ephemeral).toBe(true);
    expect(answer.content).toMatch(/^Only <@\d+>, who asked for these pictures, and the server's moderators can use V1 here\.$/);
    expect(jobCount()).toBe(before);
    expect(publicMessages()).toBe(messages);
  });

  it('GIVEN /settings reroll who:anyone THEN another member may press V1: the variations are that member’s job, with a new seed', async () => {
    const { emulator } = h;
    const { bob, owner } = emulator.defaults.users;
    await h.app.queue.onIdle();
    h.app.settings.update(emulator.defaults.guildId, owner.id, (s) => ({ ...s, rerollWho: 'anyone' }));
    try {
      const press = emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, 'V1'), userId: bob.id });
      const answer = await answerTo(press);
      expect(answer.ephemeral).toBe(true);
      expect(answer.content).toMatch(/^🎲 V1: making 4 variations of picture 1/);
      const reply = await eventually(
        () =>
          emulator
            .messages(emulator.defaults.channelId)
            .find((m) => m.message.message_reference?.message_id === grid.message.id && m.message.content.includes(`for <@${bob.id}>`) && m.message.attachments.length > 0),
        30_000,
        'Bob’s variations',
      );
      const parent = h.app.queue.findByMessageId(grid.message.id)!;
      const job = h.app.queue.findByMessageId(reply.message.id)!;
      expect(job).toMatchObject({ kind: 'variation', userId: bob.id, parentJobId: parent.id, sourcePicture: 0 });
      // A new seed: not the grid's, nor any of its pictures'.
      expect([0, 1, 2, 3].map((i) => parent.params.seed + i)).not.toContain(job.params.seed);
    } finally {
      h.app.settings.update(emulator.defaults.guildId, owner.id, (s) => ({ ...s, rerollWho: 'requester' }));
      await h.app.queue.onIdle();
    }
  });

  it('GIVEN a member with Manage Server presses V1 THEN it is allowed', async () => {
    const { emulator } = h;
    const press = emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, 'V1'), userId: emulator.defaults.users.owner.id });
    expect((await answerTo(press)).content).toMatch(/^🎲 V1: making 4 variations/);
    await h.app.queue.onIdle();
  });

  it('GIVEN a banned word added since THEN V is refused ephemerally with the same words as 🔁, nothing queued', async () => {
    const { emulator } = h;
    h.app.settings.update(emulator.defaults.guildId, 'test', (s) => ({ ...s, bannedWords: ['tiles'] }));
    try {
      const before = jobCount();
      const press = emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, 'V2'), userId: emulator.defaults.users.alice.id });
      const answer = await answerTo(press);
      expect(answer.ephemeral).toBe(true);
      expect(answer.content).toMatch(/contains a word this server does not allow \(“tiles”\)/);
      expect(jobCount()).toBe(before);
    } finally {
      h.app.settings.update(emulator.defaults.guildId, 'test', (s) => ({ ...s, bannedWords: [] }));
    }
  });
});

describe('/settings variation strength', () => {
  it('GIVEN a moderator sets strength 0.3 THEN it is audited and the next V runs at 0.3; a member may not set it; 0.01 is refused', async () => {
    const h = await startHarness({ env: { STAND_IN_STEP_MS: '20', EDIT_INTERVAL_MS: '0' } });
    try {
      const { emulator } = h;
      const { owner, alice } = emulator.defaults.users;
      const set = async (userId: string, strength: number) =>
        String((await emulator.sendCommand({ name: 'settings', options: [{ name: 'variation', type: 1, options: [{ name: 'strength', type: 10, value: strength }] }], userId }).waitForResponse()).body.data.content);
      expect(await set(alice.id, 0.3)).toMatch(/^Only members with Manage Server/);
      expect(await set(owner.id, 0.01)).toMatch(/^Expected `strength` to be a number from 0.05 to 1, got `0.01`\. Nothing was changed\./);
      const changed = await set(owner.id, 0.3);
      expect(changed).toMatch(/^variationStrength: 0.6 → 0.3\n/);
      expect(changed).toMatch(/\*\*V \(variations\) strength:\*\* 0.3/);
      expect(h.app.settings.audit(emulator.defaults.guildId)[0]).toMatchObject({ key: 'variationStrength', oldValue: 0.6, newValue: 0.3, actorId: owner.id });

      const grid = await finished(emulator.sendCommand({ name: 'imagine', options: { prompt: 'two', count: 2, seed: 1, steps: 10 }, userId: alice.id }));
      emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, 'V1'), userId: alice.id });
      const reply = await replyWithPictures(emulator, grid.message.id, 'the variations');
      expect(h.app.queue.findByMessageId(reply.message.id)!.params.strength).toBe(0.3);
    } finally {
      await h.close();
    }
  });
});

describe('U and V after a restart', () => {
  it('GIVEN a grid made before the bot restarted THEN V2 on it still makes variations of picture 2', async () => {
    const env = { STAND_IN_STEP_MS: '20', EDIT_INTERVAL_MS: '0' };
    const first = await startHarness({ env });
    const { emulator, dataDir } = first;
    const { alice } = emulator.defaults.users;
    const grid = await finished(emulator.sendCommand({ name: 'imagine', options: { prompt: 'remember us', count: 2, seed: 40, steps: 4 }, userId: alice.id }));
    const originals = [1, 2].map((i) => emulator.attachmentBytes(grid.message.id, i)!);
    await first.close({ keepEmulator: true, keepData: true });

    const second = await startHarness({ existingEmulator: emulator, dataDir, env });
    try {
      const press = emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, 'V2'), userId: alice.id });
      expect((await answerTo(press)).content).toMatch(/^🎲 V2: making 2 variations of picture 2/);
      const reply = await replyWithPictures(emulator, grid.message.id, 'the variations after restart');
      const job = second.app.queue.findByMessageId(reply.message.id)!;
      expect(job).toMatchObject({ kind: 'variation', sourcePicture: 1 });
      expect(Buffer.from(second.app.queue.initImage(job.id)!).equals(Buffer.from(originals[1]))).toBe(true);
    } finally {
      await second.close();
      await emulator.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
