/**
 * The scaled mode end to end below Discord: two bot processes' queues (RedisJobQueue, each with its own journal)
 * and three image workers (ImageWorker on the stand-in engine), all on one real redis-server.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { isUserError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { StandInEngine } from '../../src/diffusion/engine/stand-in.js';
import { createWorkerPool } from '../../src/diffusion/engine/worker-pool.js';
import type { GenerateParams } from '../../src/diffusion/types.js';
import { FairScheduler } from '../../src/queue/fair-scheduler.js';
import type { JobRecord } from '../../src/queue/types.js';
import { openDatabase, type Db } from '../../src/store/database.js';
import { ImageWorker } from '../../src/scale/image-worker.js';
import { Keys } from '../../src/scale/redis.js';
import { RedisJobQueue } from '../../src/scale/redis-queue.js';
import { RedisFairState } from '../../src/scale/fair-state.js';
import { HAVE_REDIS } from '../../tools/redis-server.js';
import { redisSuite, until } from './redis-suite.js';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const logger = createLogger({ level: 'silent' });

function params(prompt: string, overrides: Partial<GenerateParams> = {}): GenerateParams {
  return { prompt, steps: 4, seed: 1, guidanceScale: 7.5, ...overrides };
}


describe.skipIf(!HAVE_REDIS)('scaled mode: 2 bot processes, 3 workers, one redis-server', () => {
  const suite = redisSuite('imagine-scale-');

  interface Bot {
    queue: RedisJobQueue;
    db: Db;
    delivered: Map<string, number>;
    progress: Map<string, number>;
  }

  async function bot(prefix: string, instance: string, extra: { orphanAfterMs?: number } = {}): Promise<Bot> {
    const db = openDatabase({ dataDir: path.join(suite.dir, `${prefix}-${instance}`) });
    const delivered = new Map<string, number>();
    const progress = new Map<string, number>();
    const queue = new RedisJobQueue({
      redis: { url: suite.url, prefix },
      db,
      instance,
      resultsDir: path.join(suite.dir, `${prefix}-${instance}`, 'results'),
      memberCap: 20,
      reconcileMs: 200,
      refreshMs: 200,
      ...extra,
      deliver: async (job, result) => {
        // Real PNG bytes came through Redis.
        const meta = await sharp(Buffer.from(result.images[0])).metadata();
        expect(meta.format).toBe('png');
        delivered.set(job.id, (delivered.get(job.id) ?? 0) + 1);
        return { messageId: `m-${job.id}` };
      },
      logger,
    });
    queue.events.on('progress', ({ job }) => progress.set(job.id, (progress.get(job.id) ?? 0) + 1));
    suite.cleanups.push(async () => {
      await queue.shutdown({ deliveryGraceMs: 1000 });
      db.close();
    });
    await queue.resume();
    return { queue, db, delivered, progress };
  }

  async function worker(prefix: string, started: string[], msPerStep = 30): Promise<ImageWorker> {
    const engine = new StandInEngine({ msPerStep, onGenerate: (p) => started.push(p.prompt) });
    const imageWorker = await ImageWorker.start({ redis: { url: suite.url, prefix }, engine, logger, progressEveryMs: 0 });
    suite.cleanups.push(async () => {
      await imageWorker.close();
      await engine.close();
    });
    return imageWorker;
  }

  it('GIVEN a flood from one member beside single jobs from others THEN starts follow the fair order across processes, and each picture is delivered once', async () => {
    const prefix = suite.nextPrefix();
    const started: string[] = [];
    // One worker first (it publishes the model), the bots, then the flood; the other two workers join afterwards,
    // so the queue is long when three workers take from it at once.
    await worker(prefix, started, 40);
    const [one, two] = [await bot(prefix, 'bot-1'), await bot(prefix, 'bot-2')];
    const local = new FairScheduler<{ id: string; guildId: string; userId: string }>();
    const submitted: JobRecord[] = [];
    const submit = async (b: Bot, guildId: string, userId: string, prompt: string) => {
      const { job } = await b.queue.submit({ guildId, channelId: 'c', userId, params: params(prompt) });
      submitted.push(job);
      local.add({ id: prompt, guildId, userId });
    };
    for (let i = 1; i <= 8; i++) await submit(i % 2 === 0 ? one : two, 'g1', 'alice', `alice-${i}`);
    await submit(two, 'g1', 'bob', 'bob-1');
    await submit(one, 'g2', 'carol', 'carol-1');
    await submit(two, 'g3', 'dave', 'dave-1');
    await worker(prefix, started, 40);
    await worker(prefix, started, 40);
    await until(() => one.delivered.size + two.delivered.size === submitted.length, 'every picture delivered');

    // The embedded order for the same submits, with the one job already taken by the first worker removed.
    const expected: string[] = [];
    for (let job = local.take(); job !== undefined; job = local.take()) expected.push(job.id);
    expect(started).toHaveLength(expected.length);
    // With three workers taking at once, a job may start up to two places early or late, never more.
    for (const [index, prompt] of started.entries()) {
      expect(Math.abs(index - expected.indexOf(prompt)), `${prompt} started at ${index}, fair place ${expected.indexOf(prompt)}`).toBeLessThan(3 + 1);
    }
    // The members with one job each start before alice's fourth.
    for (const single of ['bob-1', 'carol-1', 'dave-1']) expect(started.indexOf(single)).toBeLessThan(started.indexOf('alice-4'));
    // Exactly once, each by the process that took the command; the pictures left Redis once delivered.
    for (const job of submitted) {
      const owner = job.owner === 'bot-1' ? one : two;
      const other = owner === one ? two : one;
      expect(owner.delivered.get(job.id)).toBe(1);
      expect(other.delivered.has(job.id)).toBe(false);
      expect(owner.progress.get(job.id)).toBeGreaterThan(0);
    }
    const redis = new Redis(suite.url);
    try {
      expect(await redis.keys(`${prefix}:outcome:*`)).toEqual([]);
      expect(await redis.hlen(new Keys(prefix).taken)).toBe(0);
    } finally {
      redis.disconnect();
    }
  });

  it('GIVEN a running job on another machine THEN ❌ stops it at its next step, and a waiting one is cancelled at once', async () => {
    const prefix = suite.nextPrefix();
    const started: string[] = [];
    await worker(prefix, started, 50);
    const b = await bot(prefix, 'bot-1');
    const cancelled: string[] = [];
    b.queue.events.on('cancelled', ({ job }) => cancelled.push(job.id));
    const { job: long } = await b.queue.submit({ guildId: 'g', channelId: 'c', userId: 'u1', params: params('long', { steps: 400 }) });
    const { job: next } = await b.queue.submit({ guildId: 'g', channelId: 'c', userId: 'u2', params: params('next', { steps: 400 }) });
    await until(() => (b.progress.get(long.id) ?? 0) >= 2, 'the long job to make progress');
    expect(await b.queue.cancel(next.id, 'u2')).toBe('cancelled');
    expect(await b.queue.cancel(long.id, 'u1')).toBe('stopping');
    await until(() => cancelled.includes(long.id), 'the running job to stop');
    expect(b.queue.get(long.id)!.state).toBe('cancelled');
    expect(b.queue.get(next.id)!.state).toBe('cancelled');
    // It stopped long before its 400 steps (20 s): within a few steps of the cancel.
    expect(b.progress.get(long.id)!).toBeLessThan(100);
    expect(started).toEqual(['long']);
    expect(b.delivered.size).toBe(0);
  });

  it('GIVEN a model no worker serves THEN /imagine is refused with a clear line and nothing is journaled', async () => {
    const prefix = suite.nextPrefix();
    await worker(prefix, []);
    const b = await bot(prefix, 'bot-1');
    const refusal = await b.queue.submit({ guildId: 'g', channelId: 'c', userId: 'u', params: params('x', { model: 'sdxl-turbo' }) }).catch((error: unknown) => error);
    expect(isUserError(refusal) && refusal.identifier).toBe('modelUnavailable');
    expect((refusal as Error).message).toContain('sdxl-turbo');
    expect(b.db.prepare('SELECT COUNT(*) AS n FROM jobs').get()).toEqual({ n: 0 });
  });

  it('GIVEN the embedded model in a worker (ONNX, worker thread) THEN the scaled queue posts its real 64×64 PNG, the same bytes as one process makes', async () => {
    const prefix = suite.nextPrefix();
    const pool = await createWorkerPool({ modelDir: path.join(ROOT, 'models/imagine-shapes'), workers: 1 });
    const imageWorker = await ImageWorker.start({ redis: { url: suite.url, prefix }, engine: pool, logger });
    suite.cleanups.push(async () => {
      await imageWorker.close();
      await pool.close();
    });
    const b = await bot(prefix, 'bot-1');
    let png: Uint8Array | undefined;
    b.queue.events.on('generated', ({ result }) => (png = result.images[0]));
    const request = params('a red circle on a white background', { steps: 8, seed: 3 });
    const { job } = await b.queue.submit({ guildId: 'g', channelId: 'c', userId: 'u', params: request });
    await until(() => b.delivered.get(job.id) === 1, 'the picture');
    const meta = await sharp(Buffer.from(png!)).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 64]);
    // Through Redis, byte for byte what the engine makes for the same request in one process.
    const direct = await pool.generate({ ...request, model: 'imagine-shapes' });
    expect(Buffer.from(png!).equals(Buffer.from(direct.images[0]))).toBe(true);
  });

  it('GIVEN compatible jobs waiting THEN a worker runs them in one shared run, in fair order', async () => {
    const prefix = suite.nextPrefix();
    const runs: string[][] = [];
    const batching = new StandInEngine({ msPerStep: 20 });
    const generateBatch = batching.generateBatch.bind(batching);
    batching.generateBatch = (items) => {
      runs.push(items.map((item) => item.params.prompt));
      return generateBatch(items);
    };
    // (The stand-in's generate is a run of one through generateBatch: every run is seen here.)
    const worker = await ImageWorker.start({ redis: { url: suite.url, prefix }, engine: batching, logger, maxBatchImages: 4 });
    suite.cleanups.push(async () => {
      await worker.close();
      await batching.close();
    });
    const b = await bot(prefix, 'bot-1');
    // A long job keeps the one worker busy while five more arrive (another size: it cannot share their run).
    const { job: blocker } = await b.queue.submit({ guildId: 'g', channelId: 'c', userId: 'z', params: params('z', { steps: 60, width: 128 }) });
    await until(() => b.queue.get(blocker.id)?.state === 'running', 'the long job to start');
    const jobs = [];
    for (const user of ['a', 'b', 'c', 'd', 'a']) jobs.push((await b.queue.submit({ guildId: 'g', channelId: 'c', userId: user, params: params(user) })).job);
    expect(jobs.map((job) => b.queue.position(job.id)?.place)).toEqual([1, 2, 3, 4, 5]);
    await until(() => b.delivered.size === 6, 'six pictures');
    // The four members' first jobs share one run; alice's second job, next round, runs after it.
    expect(runs).toEqual([['z'], ['a', 'b', 'c', 'd'], ['a']]);
  });

  it('GIVEN four batchable jobs waiting for a worker that batches THEN their ETAs are those of one shared run', async () => {
    const prefix = suite.nextPrefix();
    const worker = await ImageWorker.start({ redis: { url: suite.url, prefix }, engine: new StandInEngine({ msPerStep: 20 }), logger, maxBatchImages: 4 });
    suite.cleanups.push(() => worker.close());
    const b = await bot(prefix, 'bot-1');
    // A long job of another size (it runs alone) keeps the worker busy, and unmeasured: 1000 ms a step, linear.
    const { job: blocker } = await b.queue.submit({ guildId: 'g', channelId: 'c', userId: 'z', params: params('z', { steps: 400, width: 128 }) });
    await until(() => b.queue.get(blocker.id)?.state === 'running', 'the blocker to start');
    const jobs: JobRecord[] = [];
    for (const user of ['a', 'b', 'c', 'd']) jobs.push((await b.queue.submit({ guildId: 'g', channelId: 'c', userId: user, params: params(user) })).job);
    await until(() => jobs.every((job) => (b.queue.position(job.id)?.place ?? 0) > 0), 'the places of the four');
    // One read of the places (they change together at each refresh).
    const places = jobs.map((job) => b.queue.position(job.id)!);
    expect(places.map((place) => place.place)).toEqual([1, 2, 3, 4]);
    // One shared run: the four start together once the blocker is done, and finish together.
    expect(new Set(places.map((place) => place.startsInMs))).toEqual(new Set([b.queue.position(blocker.id)!.doneInMs]));
    expect(new Set(places.map((place) => place.doneInMs)).size).toBe(1);
    // 4 images × 1000 ms a step × 4 steps × 64 × 64 / 512 × 512: the run of four, not four runs one after another.
    expect(places[0].doneInMs - places[0].startsInMs).toBe(250);
    expect(await b.queue.cancel(blocker.id, 'z')).toBe('stopping');
    await until(() => jobs.every((job) => b.delivered.get(job.id) === 1), 'the four pictures');
  });

  it('GIVEN a run taken by a worker that vanished and whose ticket BullMQ gave up on THEN its job is queued again and delivered once', async () => {
    const prefix = suite.nextPrefix();
    const started: string[] = [];
    await worker(prefix, started, 20);
    const b = await bot(prefix, 'bot-1', { orphanAfterMs: 300 });
    const { job: blocker } = await b.queue.submit({ guildId: 'g', channelId: 'c', userId: 'z', params: params('blocker', { steps: 40 }) });
    await until(() => b.queue.get(blocker.id)?.state === 'running', 'the blocker to run');
    const { job } = await b.queue.submit({ guildId: 'g', channelId: 'c', userId: 'u', params: params('orphan') });
    // A worker that no longer exists takes it, under a ticket BullMQ never had.
    const connection = new Redis(suite.url);
    suite.cleanups.push(() => connection.disconnect());
    const ghost = new RedisFairState(connection, new Keys(prefix));
    const taken = await ghost.take('stand-in', 'runs-stand-in:999999', 'ghost-worker', () => [0], Date.now());
    expect(taken.map((j) => j.id)).toEqual([job.id]);
    await until(() => b.delivered.get(job.id) === 1, 'the orphaned job made by the live worker and delivered');
    await sleep(500);
    expect(b.delivered.get(job.id)).toBe(1);
    expect(started.filter((prompt) => prompt === 'orphan')).toHaveLength(1);
    expect(await connection.hexists(new Keys(prefix).taken, 'runs-stand-in:999999')).toBe(0);
  });
});
