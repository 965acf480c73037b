/**
 * The pictures the bot posts, end to end (stand-in engine, real delivery): their `parameters` PNG text chunk, and
 * several pictures per request (`count`): one message with their grid and each picture, the server's count
 * maximum, the caps counting pictures, and 🔁 of the whole request.
 */
import { ApplicationCommandOptionType as T } from 'discord-api-types/v10';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPngText } from '../../src/image/png-text.js';
import type { StoredMessage } from '../../src/playground/emulator/index.js';
import { eventually, startHarness, type Harness } from '../../tools/discord-emulator/harness.js';

/** Raw RGB of a PNG, or of the width × height region of it at (left, top). */
async function rgbOf(png: Uint8Array, region?: { left: number; top: number; width: number; height: number }): Promise<Buffer> {
  const image = sharp(png).removeAlpha();
  return (region ? image.extract(region) : image).raw().toBuffer();
}

describe('posted pictures (stand-in engine)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { STAND_IN_STEP_MS: '40' } });
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

  /** The job's message once it carries the picture(s) and the embed. */
  function finished(handle: { original(): StoredMessage | undefined }): Promise<StoredMessage> {
    return eventually(() => {
      const original = handle.original();
      return original && original.message.embeds.length > 0 && original.message.attachments.length > 0 ? original : undefined;
    }, 30_000, 'the final message');
  }

  /** Checks a finished message of four pictures made from `seed`: the grid first, then each picture. */
  async function expectFour(done: StoredMessage, seed: number, prompt: string): Promise<void> {
    const { emulator } = h;
    const seeds = [0, 1, 2, 3].map((i) => seed + i);
    expect(done.message.attachments.map((a) => a.filename)).toEqual([`imagine-${seed}-grid.png`, ...seeds.map((s) => `imagine-${s}.png`)]);
    const embed = done.message.embeds[0]!;
    expect(embed.image?.url).toMatch(new RegExp(`imagine-${seed}-grid\\.png`));
    expect(embed.fields!.find((f) => f.name === 'Seeds')?.value).toBe(seeds.join(', '));
    expect(embed.footer?.text).toMatch(/React 🔁 to roll all 4 again with new seeds/);
    const grid = emulator.attachmentBytes(done.message.id, 0)!;
    const pictures = [1, 2, 3, 4].map((i) => emulator.attachmentBytes(done.message.id, i)!);
    const { width, height } = await sharp(pictures[0]).metadata();
    expect([width, height]).toEqual([64, 64]);
    expect(await sharp(grid).metadata()).toMatchObject({ format: 'png', width: 2 * width, height: 2 * height });
    for (const [i, png] of pictures.entries()) {
      expect((await sharp(png).metadata()).format).toBe('png');
      // Cell i of the 2×2 grid is picture i, pixel for pixel; each picture carries its own seed.
      const cell = { left: (i % 2) * width, top: Math.floor(i / 2) * height, width, height };
      expect((await rgbOf(grid, cell)).equals(await rgbOf(png))).toBe(true);
      expect(readPngText(png).get('parameters')).toMatch(new RegExp(`^${prompt}\\nSteps: 3, .*, Seed: ${seeds[i]}, Size: 64x64, Model: stand-in$`));
    }
    // The pictures differ (four seeds, four pictures).
    expect(new Set(await Promise.all(pictures.map(async (png) => (await rgbOf(png)).toString('base64')))).size).toBe(4);
  }

  it('GIVEN /imagine count:4 THEN one message: the 2×2 grid in the embed and the four pictures as files, each with its seed', async () => {
    const handle = h.emulator.sendCommand({ name: 'imagine', options: { prompt: 'four squares', count: 4, seed: 100, steps: 3 } });
    const done = await finished(handle);
    await expectFour(done, 100, 'four squares');
    const job = h.app.queue.findByMessageId(done.message.id)!;
    expect(job.params.count).toBe(4);
  });

  it('GIVEN 🔁 on a message of four pictures THEN the whole request is made again: four new pictures in one reply', async () => {
    const { emulator } = h;
    const { alice } = emulator.defaults.users;
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'reroll me', count: 4, seed: 500, steps: 3 }, userId: alice.id });
    const done = await finished(handle);
    await eventually(() => done.reactions.get('🔁')?.has(emulator.defaults.botUserId), 10_000, 'the bot’s 🔁');
    emulator.addReaction({ userId: alice.id, messageId: done.message.id, emoji: '🔁' });
    const reroll = await eventually(
      () => emulator.messages(emulator.defaults.channelId).find((m) => m.message.message_reference?.message_id === done.message.id && m.message.embeds.length > 0),
      30_000,
      'the reroll',
    );
    const seed = Number(reroll.message.embeds[0]!.fields!.find((f) => f.name === 'Seeds')!.value.split(', ')[0]);
    expect(seed).not.toBe(500);
    await expectFour(reroll, seed, 'reroll me');
    expect(h.app.queue.findByMessageId(reroll.message.id)).toMatchObject({ kind: 'reroll', params: { count: 4 } });
  });

  async function run(userId: string, name: string, options: Record<string, unknown>[]) {
    const response = await h.emulator.sendCommand({ name, options: options as never, userId }).waitForResponse();
    return { type: response.body.type as number, flags: Number(response.body.data?.flags ?? 0), content: String(response.body.data?.content ?? '') };
  }
  const jobCount = () => (h.app.db.prepare('SELECT count(*) AS n FROM jobs').get() as { n: number }).n;

  it('GIVEN a count-4 job waiting THEN it counts 4 against the member cap: the next request is refused, naming the pictures', async () => {
    const { emulator } = h;
    const member = emulator.createUser({ username: 'four' });
    emulator.addMember({ userId: member.id });
    // Keep the engine busy so the member's job waits.
    emulator.sendCommand({ name: 'imagine', options: { prompt: 'blocker', steps: 50 } });
    await eventually(() => h.app.queue.snapshot().running.some((v) => v.job.params.prompt === 'blocker'), 10_000, 'the blocker to run');
    const prompt = (value: string) => ({ name: 'prompt', type: T.String, value });
    const queued = await run(member.id, 'imagine', [prompt('four at once'), { name: 'count', type: T.Integer, value: 4 }]);
    expect(queued.type).toBe(5);
    expect((await run(member.id, 'queue', [])).content).toMatch(/⏳ place 1 \(4 pictures\), starts in about \d+ s: four at once/);
    const before = jobCount();
    const refused = await run(member.id, 'imagine', [prompt('one more')]);
    expect(refused.type).toBe(4);
    expect(refused.flags & 64).toBe(64);
    expect(refused.content).toMatch(/You already have 4 images waiting, more than this server allows \(2\)/);
    expect(jobCount()).toBe(before);
    for (const view of [...h.app.queue.snapshot().waiting, ...h.app.queue.snapshot().running]) h.app.queue.cancel(view.job.id);
  });

  it('GIVEN /settings count max:2 THEN it is audited, count:3 is refused ephemerally with the max, and nothing is queued', async () => {
    const { owner, alice } = h.emulator.defaults.users;
    const sub = (name: string, options: Record<string, unknown>[]) => [{ name, type: T.Subcommand, options }];
    const changed = await run(owner.id, 'settings', sub('count', [{ name: 'default', type: T.Integer, value: 2 }, { name: 'max', type: T.Integer, value: 2 }]));
    expect(changed.flags & 64).toBe(64);
    expect(changed.content).toMatch(/countDefault: 1 → 2/);
    expect(changed.content).toMatch(/countMax: 4 → 2/);
    expect(changed.content).toMatch(/Pictures per \/imagine:\*\* 2 by default, at most 2/);
    expect(changed.content.length).toBeLessThan(2000);
    const audit = await run(owner.id, 'settings', sub('audit', []));
    expect(audit.content).toMatch(new RegExp(`<@${owner.id}> countMax: 4 → 2`));
    expect(audit.content).toMatch(new RegExp(`<@${owner.id}> countDefault: 1 → 2`));
    const refusedByMember = await run(alice.id, 'settings', sub('count', [{ name: 'max', type: T.Integer, value: 4 }]));
    expect(refusedByMember.content).toMatch(/Only members with Manage Server/);

    const before = jobCount();
    const refused = await run(alice.id, 'imagine', [{ name: 'prompt', type: T.String, value: 'three' }, { name: 'count', type: T.Integer, value: 3 }]);
    expect(refused.type).toBe(4);
    expect(refused.flags & 64).toBe(64);
    expect(refused.content).toBe('This server allows at most 2 pictures per request; you asked for 3. Try `count: 2` or fewer.');
    expect(jobCount()).toBe(before);
    // No count: the server's default of 2.
    const accepted = await run(alice.id, 'imagine', [{ name: 'prompt', type: T.String, value: 'default count' }]);
    expect(accepted.type).toBe(5);
    const params = (h.app.db.prepare('SELECT params FROM jobs ORDER BY seq DESC LIMIT 1').get() as { params: string }).params;
    expect(JSON.parse(params)).toMatchObject({ prompt: 'default count', count: 2 });
  });
});
