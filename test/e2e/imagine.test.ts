import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, originalEdits, startHarness, type Harness } from '../../tools/discord-emulator/harness.js';

describe('/imagine end to end (stand-in engine)', () => {
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
    // Progress is smoothed: never two progress edits of one message within 1.5 s (small slack for clock reads).
    // The picture does not wait out that interval, but the message never passes Discord's 5 edits per 5 s.
    const beforeFinal = edits.slice(0, -1);
    for (let i = 1; i < beforeFinal.length; i++) expect(beforeFinal[i]!.at - beforeFinal[i - 1]!.at).toBeGreaterThanOrEqual(1400);
    for (let i = 5; i < edits.length; i++) expect(edits[i]!.at - edits[i - 5]!.at).toBeGreaterThanOrEqual(4900);
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

  const jobCount = () => (h.app.db.prepare('SELECT count(*) AS n FROM jobs').get() as { n: number }).n;

  it.each<[string, Record<string, string | number>, RegExp]>([
    ['an empty prompt', { prompt: '' }, /prompt is empty/],
    ['a whitespace prompt', { prompt: '   ' }, /prompt is empty/],
    ['a 1001-character prompt', { prompt: 'a'.repeat(1001) }, /at most 1000 characters, got 1001/],
    ['a control character', { prompt: 'red\u0000circle' }, /control character \(U\+0000\)/],
    ['steps 0', { prompt: 'ok', steps: 0 }, /`steps` to be an integer from 1 to 50, got `0`/],
    ['steps 10^9', { prompt: 'ok', steps: 1e9 }, /at most 50 steps; you asked for 1000000000/],
    ['steps above the guild max', { prompt: 'ok', steps: 51 }, /This server allows at most 50 steps/],
    ['a seed of 2^32', { prompt: 'ok', seed: 2 ** 32 }, /`seed` to be an integer from 0 to 4294967295/],
    ['a negative seed', { prompt: 'ok', seed: -5 }, /`seed` to be an integer from 0 to 4294967295, got `-5`/],
    ['guidance 99', { prompt: 'ok', guidance: 99 }, /`guidance` to be a number from 0 to 30, got `99`/],
  ])('GIVEN %s THEN one ephemeral line and nothing queued', async (_label, options, message) => {
    const before = jobCount();
    const handle = h.emulator.sendCommand({ name: 'imagine', options, userId: h.emulator.defaults.users.bob.id });
    const response = await handle.waitForResponse();
    expect(response.body.type).toBe(4); // an immediate reply, not a defer
    expect(response.body.data.flags & 64).toBe(64); // ephemeral
    expect(response.body.data.content).toMatch(message);
    expect(response.body.data.content).not.toContain('\n');
    expect(jobCount()).toBe(before);
  });

  it('GIVEN a prompt with @everyone and a role mention THEN the picture comes and nobody is pinged', async () => {
    const { emulator } = h;
    const roleId = emulator.defaults.roles.moderator.id;
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: `@everyone <@&${roleId}> look`, steps: 2 } });
    const done = await eventually(() => {
      const original = handle.original();
      return original && original.message.attachments.length > 0 && original.message.embeds.length > 0 ? original : undefined;
    }, 60_000, 'the final image');
    for (const call of originalEdits(emulator, handle.token)) {
      expect(call.body.allowed_mentions).toMatchObject({ parse: [] });
    }
    expect(done.message.mention_everyone).toBe(false);
    expect(done.message.mention_roles).toEqual([]);
    expect(done.message.embeds[0]!.description).toBe(`@everyone <@&${roleId}> look`);
  });

  it('GIVEN a member at the per-member cap THEN the next /imagine is refused ephemerally, nothing queued', async () => {
    const { emulator } = h;
    const user = emulator.createUser({ username: 'flooder' });
    emulator.addMember({ userId: user.id });
    // Keep the engine busy so the flooder's jobs wait.
    emulator.sendCommand({ name: 'imagine', options: { prompt: 'blocker', steps: 50 } });
    await eventually(() => h.app.queue.snapshot().running.length === 1, 10_000, 'the blocker to run');
    for (const prompt of ['one', 'two']) {
      const handle = emulator.sendCommand({ name: 'imagine', options: { prompt }, userId: user.id });
      expect((await handle.waitForResponse()).body.type).toBe(5);
    }
    const before = jobCount();
    const refused = await emulator.sendCommand({ name: 'imagine', options: { prompt: 'three' }, userId: user.id }).waitForResponse();
    expect(refused.body.type).toBe(4);
    expect(refused.body.data.flags & 64).toBe(64);
    expect(refused.body.data.content).toMatch(/\b2\b/);
    expect(jobCount()).toBe(before);
    const snapshot = h.app.queue.snapshot();
    for (const view of [...snapshot.waiting, ...snapshot.running]) h.app.queue.cancel(view.job.id);
  });

  it('GIVEN jobs waiting behind others THEN each message shows its place and ETA, updated as the queue moves', async () => {
    const { emulator } = h;
    const { alice, bob, owner } = emulator.defaults.users;
    // Different step counts, so that batching cannot run them together and they really wait in line.
    const handles = [
      emulator.sendCommand({ name: 'imagine', options: { prompt: 'first in line', steps: 8 }, userId: alice.id }),
      emulator.sendCommand({ name: 'imagine', options: { prompt: 'second in line', steps: 9 }, userId: bob.id }),
      emulator.sendCommand({ name: 'imagine', options: { prompt: 'third in line', steps: 10 }, userId: owner.id }),
    ];
    const finished = [];
    for (const handle of handles) {
      finished.push(
        await eventually(() => {
          const original = handle.original();
          return original && original.message.embeds.length > 0 ? original : undefined;
        }, 60_000, 'the pictures'),
      );
    }
    // Which member the fair scheduler serves first depends on who was served last; look at all three.
    const waitingTexts = finished.map((m) => [...m.history, m.message].map((v) => String(v.content)).filter((c) => c.startsWith('⏳')));
    const all = waitingTexts.flat();
    expect(all.some((content) => /place 2 in the queue, starts in about \d+ s/.test(content)), JSON.stringify(waitingTexts)).toBe(true);
    expect(all.some((content) => /next in the queue/.test(content)), JSON.stringify(waitingTexts)).toBe(true);
    // On each message the place only ever goes down.
    for (const texts of waitingTexts) {
      const places = texts.map((content) => Number(/place (\d+)/.exec(content)?.[1] ?? 1));
      expect([...places].sort((a, b) => b - a)).toEqual(places);
    }
  });
});
