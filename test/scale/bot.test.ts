/**
 * The scaled mode through Discord: the real bot (startApp with REDIS_URL, discord.js against the emulator) loads
 * no model; an image worker makes the pictures through a real redis-server.
 */
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { StandInEngine } from '../../src/diffusion/engine/stand-in.js';
import { ImageWorker } from '../../src/scale/image-worker.js';
import { eventually, originalEdits, startHarness, type Harness } from '../../tools/discord-emulator/harness.js';
import { HAVE_REDIS, RedisServer } from '../../tools/redis-server.js';

describe.skipIf(!HAVE_REDIS)('/imagine in the scaled mode (bot + image worker over a real redis-server)', () => {
  let server: RedisServer;
  let worker: ImageWorker;
  let engine: StandInEngine;
  let h: Harness;
  const made: string[] = [];

  beforeAll(async () => {
    server = await RedisServer.start();
    engine = new StandInEngine({ msPerStep: 150, onGenerate: (params) => made.push(params.prompt) });
    worker = await ImageWorker.start({ redis: { url: server.url }, engine, logger: createLogger({ level: 'silent' }) });
    h = await startHarness({ env: { REDIS_URL: server.url, STEPS_DEFAULT: '12' } });
  });
  afterAll(async () => {
    await h?.close();
    await worker?.close();
    await engine?.close();
    await server?.close();
  });

  it('GIVEN /imagine THEN the worker makes it, progress edits reach the reply, and the PNG is posted', async () => {
    const { emulator } = h;
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'a lighthouse at dusk', seed: 7 } });
    expect((await handle.waitForResponse()).body.type).toBe(5);
    const done = await eventually(() => {
      const original = handle.original();
      return original && original.message.attachments.some((a) => a.filename.startsWith('imagine-')) ? original : undefined;
    }, 60_000, 'the final image');
    expect(made).toEqual(['a lighthouse at dusk']);
    const progress = originalEdits(emulator, handle.token).filter((call) => String(call.body?.content ?? '').includes('Step '));
    expect(progress.length).toBeGreaterThanOrEqual(1);
    const meta = await sharp(emulator.attachmentBytes(done.message.id)!).metadata();
    expect(meta.format).toBe('png');
    // The bot's journal holds the job; the worker's pictures left Redis once posted.
    const job = h.app.queue.findByMessageId(done.message.id)!;
    expect(job).toMatchObject({ state: 'done', owner: 'bot' });
  });

  it('GIVEN Redis down THEN /imagine answers one clear line, privately, and queues nothing', async () => {
    const { emulator } = h;
    const before = (h.app.db.prepare('SELECT count(*) AS n FROM jobs').get() as { n: number }).n;
    await server.stop();
    try {
      const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'a red circle' } });
      const response = await handle.waitForResponse();
      expect(response.body.data?.content).toBe('The image service is unavailable, try again in a minute.');
      expect(response.body.data?.flags).toBe(64); // ephemeral
      expect((h.app.db.prepare('SELECT count(*) AS n FROM jobs').get() as { n: number }).n).toBe(before);
    } finally {
      await server.run();
    }
    // Back by itself (this Redis keeps no data: the worker publishes its models again with its next heartbeat).
    // A member who tries again a little later gets a picture.
    let accepted: ReturnType<typeof emulator.sendCommand> | undefined;
    for (let attempt = 0; attempt < 30 && accepted === undefined; attempt++) {
      const again = emulator.sendCommand({ name: 'imagine', options: { prompt: 'a blue square' } });
      const response = await again.waitForResponse();
      if (response.body.type === 5) accepted = again;
      else await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    expect(accepted).toBeDefined();
    await eventually(() => accepted!.original()?.message.attachments.some((a) => a.filename.startsWith('imagine-')), 60_000, 'a picture once Redis is back');
  });
});
