/**
 * V presses while others wait, end to end: real discord.js over the emulator with Discord's own buckets (five new
 * messages per channel in five seconds among them), the stand-in engine, a real SQLite journal. Under a burst a V's
 * reply waits for the queue and for the channel's message limit (tools/discord-emulator/v-burst.ts measures both),
 * so the presser's private answer says where the job stands.
 */
import type { ImageEngine } from '../../src/diffusion/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { StandInEngine } from '../../src/diffusion/engine/stand-in.js';
import { eventually, startHarness, type Harness } from '../../tools/discord-emulator/harness.js';
import { answerTo, customIdOf, finished } from './picture-messages.js';

/** The stand-in, except that a job whose prompt is `held` does not start until `release()`. */
function heldEngine(): { engine: ImageEngine; release: () => void; holding: () => boolean } {
  const inner = new StandInEngine({ msPerStep: 10 });
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let holding = false;
  const engine: ImageEngine = {
    async generate(params, options) {
      if (params.prompt === 'held') {
        holding = true;
        await gate;
      }
      return inner.generate(params, options);
    },
    info: () => inner.info(),
    close: () => inner.close(),
  };
  return { engine, release, holding: () => holding };
}

describe('V presses while the queue is busy', () => {
  let h: Harness | undefined;
  let releaseHeld: (() => void) | undefined;
  afterEach(async () => {
    releaseHeld?.();
    await h?.close();
    h = undefined;
  });

  /**
   * The bot on a held engine (`env` on top of no edit pacing): Alice's `/imagine count:4` finished, then Bob's job
   * started and held, so whatever Alice queues next waits behind it until `held.release()`.
   */
  async function aliceGridBehindBob(env: Record<string, string>) {
    const held = heldEngine();
    releaseHeld = held.release;
    h = await startHarness({ engine: held.engine, env: { EDIT_INTERVAL_MS: '0', ...env } });
    const { emulator } = h;
    const { alice, bob } = emulator.defaults.users;
    const grid = await finished(emulator.sendCommand({ name: 'imagine', options: { prompt: 'four tiles', count: 4, seed: 9, steps: 4 }, userId: alice.id }));
    await h.app.queue.onIdle();
    emulator.sendCommand({ name: 'imagine', options: { prompt: 'held', steps: 4 }, userId: bob.id });
    await eventually(() => held.holding(), 30_000, 'the held job to start');
    return { app: h.app, emulator, alice, grid, held };
  }

  it('GIVEN a job running and a V waiting WHEN V is pressed again THEN the private answer says place 2 in the queue', async () => {
    // Bob's job holds the engine; each of Alice's V presses then waits behind it.
    const { app, emulator, alice, grid, held } = await aliceGridBehindBob({ QUEUE_MAX_PER_MEMBER: '20' });
    const first = await answerTo(emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, 'V1'), userId: alice.id }));
    const second = await answerTo(emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, 'V2'), userId: alice.id }));
    expect(first.ephemeral && second.ephemeral).toBe(true);
    expect(first.content).toMatch(/^🎲 V1: making 4 variations of picture 1 \(next in the queue(, starts in about \d+ s)?\)\. They will appear as a reply/);
    expect(second.content).toMatch(/^🎲 V2: making 4 variations of picture 2 \(place 2 in the queue(, starts in about \d+ s)?\)\. They will appear as a reply/);
    // The places said are the queue's own.
    const waiting = app.queue.snapshot().waiting.map((view) => view.job.sourcePicture);
    expect(waiting).toEqual([0, 1]);

    held.release();
    await app.queue.onIdle();
  });

  it('GIVEN a V of four waiting and the default member cap (2) WHEN V is pressed again THEN refused privately, without “ask for fewer” (a V keeps the count), nothing queued', async () => {
    const { app, emulator, alice, grid, held } = await aliceGridBehindBob({});
    expect((await answerTo(emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, 'V1'), userId: alice.id }))).content).toMatch(/^🎲 V1: making 4/);
    const jobs = () => (app.db.prepare('SELECT count(*) AS n FROM jobs').get() as { n: number }).n;
    const before = jobs();
    const refused = await answerTo(emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, 'V2'), userId: alice.id }));
    expect(refused.ephemeral).toBe(true);
    expect(refused.content).toBe('You already have 4 images waiting; 4 more would make 8, over the 2 this server allows. Wait for one to start, or cancel one with ❌.');
    expect(jobs()).toBe(before);
    held.release();
    await app.queue.onIdle();
  });

  it('GIVEN an idle queue WHEN V is pressed THEN the answer names no place', async () => {
    h = await startHarness({ env: { STAND_IN_STEP_MS: '10', EDIT_INTERVAL_MS: '0' } });
    const { emulator } = h;
    const { alice } = emulator.defaults.users;
    const grid = await finished(emulator.sendCommand({ name: 'imagine', options: { prompt: 'two tiles', count: 2, seed: 3, steps: 4 }, userId: alice.id }));
    await h.app.queue.onIdle();
    const answer = await answerTo(emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, 'V2'), userId: alice.id }));
    expect(answer.content).toBe('🎲 V2: making 2 variations of picture 2. They will appear as a reply to the pictures.');
    await h.app.queue.onIdle();
  });

  it('GIVEN six V presses in a row under Discord’s buckets THEN six replies of four pictures each, none lost, no 429', async () => {
    // The production pacing: a channel budget of 30 edits a minute, 1.5 s between a message's edits.
    h = await startHarness({ env: { STAND_IN_STEP_MS: '10', EDIT_INTERVAL_MS: '1500', EDITS_PER_CHANNEL_PER_MINUTE: '30', QUEUE_MAX_PER_MEMBER: '40' } });
    const { emulator } = h;
    const { alice } = emulator.defaults.users;
    const grid = await finished(emulator.sendCommand({ name: 'imagine', options: { prompt: 'six presses', count: 4, seed: 21, steps: 4 }, userId: alice.id }));
    await h.app.queue.onIdle();
    const limitedBefore = emulator.stats.rateLimited;
    const presses = [];
    for (let i = 0; i < 6; i++) {
      const press = emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, `V${(i % 4) + 1}`), userId: alice.id });
      await press.waitForResponse();
      presses.push(press);
    }
    for (const press of presses) expect((await answerTo(press)).content).toMatch(/^🎲 V\d: making 4 variations/);
    // Six new messages in one channel: the sixth waits for Discord's five-in-five-seconds window.
    const replies = await eventually(() => {
      const done = emulator
        .messages(emulator.defaults.channelId)
        .filter((m) => m.message.message_reference?.message_id === grid.message.id && m.message.attachments.length > 0);
      return done.length === 6 ? done : undefined;
    }, 60_000, 'six replies with pictures');
    for (const reply of replies) expect(reply.message.attachments.map((a) => a.filename)).toHaveLength(5);
    expect(emulator.stats.rateLimited - limitedBefore).toBe(0);
  });

  it('GIVEN V jobs editing their progress under Discord’s buckets THEN no progress edit takes the channel’s last edit of a window: that one is kept for pictures', async () => {
    // Progress as fast as one edit in flight allows, the production channel budget; Discord's buckets (five channel
    // message edits per five seconds among them). Before the fix a progress bar emptied the bucket, and the next
    // job's pictures waited out the window behind it.
    h = await startHarness({ env: { STAND_IN_STEP_MS: '20', EDIT_INTERVAL_MS: '0', EDITS_PER_CHANNEL_PER_MINUTE: '30', QUEUE_MAX_PER_MEMBER: '40' } });
    const { emulator } = h;
    const { alice } = emulator.defaults.users;
    const grid = await finished(emulator.sendCommand({ name: 'imagine', options: { prompt: 'progress bars', count: 4, seed: 31, steps: 40 }, userId: alice.id }));
    await h.app.queue.onIdle();
    // The grid's own progress edits counted against the channel: let them leave its five-second window.
    await new Promise((resolve) => setTimeout(resolve, 6000));
    const firstCall = emulator.calls.length;
    for (const label of ['V1', 'V2', 'V3']) {
      await emulator.sendButton({ messageId: grid.message.id, customId: customIdOf(grid, label), userId: alice.id }).waitForResponse();
    }
    await eventually(() => {
      const done = emulator
        .messages(emulator.defaults.channelId)
        .filter((m) => m.message.message_reference?.message_id === grid.message.id && m.message.attachments.length > 0);
      return done.length === 3 ? done : undefined;
    }, 60_000, 'three replies with pictures');
    await h.app.queue.onIdle();
    const edits = emulator.calls.slice(firstCall).filter((c) => c.method === 'PATCH' && c.route === '/channels/:channelId/messages/:messageId');
    const isPictures = (c: (typeof edits)[number]) => (c.body?.embeds?.length ?? 0) > 0;
    const progress = edits.filter((c) => !isPictures(c));
    expect(edits.filter(isPictures)).toHaveLength(3);
    expect(progress.length).toBeGreaterThan(0);
    const emptied = edits.filter((c) => c.responseHeaders['x-ratelimit-remaining'] === '0');
    expect(emptied.filter((c) => !isPictures(c)).map((c) => String(c.body?.content).split('\n')[0])).toEqual([]);
  });
});
