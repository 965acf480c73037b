/**
 * A scaled image worker that serves two models with room for one prefers a ticket for the model it holds
 * (queue/model-affinity.ts through scale/run-gate.ts): a real redis-server, a bot's RedisJobQueue, and an
 * ImageWorker on the worker pool with the tiny ONNX fixtures sd-tiny and pixel-tiny and a budget for one of them.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Queue, type Worker } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { createWorkerPool, type WorkerPool } from '../../src/diffusion/engine/worker-pool.js';
import type { GenerateParams, ImageEngine } from '../../src/diffusion/types.js';
import type { JobRecord } from '../../src/jobs/types.js';
import { engineModels } from '../../src/models/library.js';
import { MAX_PASSES } from '../../src/queue/model-affinity.js';
import { openDatabase } from '../../src/store/database.js';
import type { TakenRecord } from '../../src/scale/fair-state.js';
import { ImageWorker } from '../../src/scale/image-worker.js';
import { bullConnection, Keys } from '../../src/scale/redis.js';
import { RedisJobQueue } from '../../src/scale/redis-queue.js';
import { HAVE_REDIS } from '../../tools/redis-server.js';
import { redisSuite, until } from './redis-suite.js';

const MODELS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'models');
const logger = createLogger({ level: 'silent' });
const A = 'sd-tiny';
const B = 'pixel-tiny';


describe.skipIf(!HAVE_REDIS)('scaled worker with two models and room for one', () => {
  const suite = redisSuite('imagine-affinity-');

  /** The bot's side on `prefix`: a journal and a RedisJobQueue whose deliveries `onDeliver` sees. */
  function botQueue(prefix: string, onDeliver: (job: JobRecord) => void) {
    const db = openDatabase({ dataDir: path.join(suite.dir, prefix) });
    const queue = new RedisJobQueue({
      redis: { url: suite.url, prefix },
      db,
      instance: 'bot-1',
      resultsDir: path.join(suite.dir, prefix, 'results'),
      memberCap: 20,
      reconcileMs: 200,
      refreshMs: 200,
      deliver: async (job) => {
        onDeliver(job);
        return { messageId: `m-${job.id}` };
      },
      logger,
    });
    return { db, queue };
  }

  /**
   * One bot, one worker, and the jobs: a blocker on A held in the engine until B's ticket waits at the worker's
   * gate, then B and A alternating. Returns the prompts in the order the engine ran them. `preferring: false`
   * leaves the engine's `modelLoaded` out (tickets run in the order BullMQ hands them, as before the preference).
   */
  async function scenario(preferring: boolean): Promise<{ ran: string[]; models: string[]; submitted: string[] }> {
    const prefix = suite.nextPrefix();
    const pool: WorkerPool = await createWorkerPool({ modelDir: path.join(MODELS, A), models: engineModels(MODELS), memoryMb: 0.01, log: () => undefined });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const ran: string[] = [];
    const models: string[] = [];
    const engine: ImageEngine = {
      generate: async (params: GenerateParams, options) => {
        if (params.prompt === 'blocker') await held;
        ran.push(params.prompt);
        models.push(params.model ?? A);
        return pool.generate(params, options);
      },
      info: () => pool.info(),
      models: () => pool.models(),
      close: () => pool.close(),
      ...(preferring ? { modelLoaded: (model: string | undefined) => pool.modelLoaded(model) } : {}),
    };
    const worker = await ImageWorker.start({ redis: { url: suite.url, prefix }, engine, models: [A, B], logger });
    const delivered = new Set<string>();
    const { db, queue } = botQueue(prefix, (job) => delivered.add(job.id));
    const keys = new Keys(prefix);
    const tickets = new Queue(keys.ticketQueue(B), { connection: bullConnection({ url: suite.url, prefix }, 'test-tickets'), prefix: keys.prefix });
    suite.cleanups.push(async () => {
      release();
      await tickets.close();
      await queue.shutdown({ deliveryGraceMs: 1000 });
      db.close();
      await worker.close();
      await pool.close();
    });
    await queue.resume();
    const submit = async (prompt: string, model: string) =>
      (await queue.submit({ guildId: 'g', channelId: 'c', userId: prompt, params: { prompt, model, steps: 2, seed: 1, guidanceScale: 7.5 } })).job;
    const blocker = await submit('blocker', A);
    await until(() => queue.get(blocker.id)?.state === 'running', 'the blocker to start');
    const submitted = ['blocker', 'b1', 'a1', 'b2', 'a2', 'b3', 'a3'];
    for (const prompt of submitted.slice(1)) await submit(prompt, prompt.startsWith('a') ? A : B);
    // B's ticket is taken by the worker and waits at its gate behind the blocker's run.
    await until(async () => (await tickets.getActiveCount()) === 1, "B's ticket to wait at the gate");
    release();
    await until(() => delivered.size === submitted.length, 'every picture');
    return { ran, models, submitted };
  }

  /** Model changes between consecutive runs: with room for one model, each is a load. */
  const switches = (models: string[]) => models.filter((model, i) => i > 0 && model !== models[i - 1]).length;

  it('GIVEN tickets alternating two models THEN the worker goes on with its loaded model: fewer loads, and no job starts more than MAX_PASSES runs late', async () => {
    const blind = await scenario(false);
    // Without the preference: the order the tickets came in, a load on every run.
    expect(blind.ran).toEqual(blind.submitted);
    expect(switches(blind.models)).toBe(6);

    const preferring = await scenario(true);
    expect([...preferring.ran].sort()).toEqual([...preferring.submitted].sort());
    expect(switches(preferring.models)).toBeLessThan(switches(blind.models));
    expect(switches(preferring.models)).toBe(3);
    // Each job starts at most MAX_PASSES runs later than the order the tickets came in.
    for (const prompt of preferring.submitted) {
      expect(preferring.ran.indexOf(prompt) - preferring.submitted.indexOf(prompt)).toBeLessThanOrEqual(MAX_PASSES);
    }
    expect(preferring.ran).toEqual(['blocker', 'a1', 'b1', 'b2', 'a2', 'a3', 'b3']);
  });

  it('GIVEN a worker that stops in a run it went on to under the same ticket THEN another worker takes that run over and each picture is delivered once', async () => {
    const prefix = suite.nextPrefix();
    const keys = new Keys(prefix);
    const pool = async () => {
      const p = await createWorkerPool({ modelDir: path.join(MODELS, A), models: engineModels(MODELS), memoryMb: 0.01, log: () => undefined });
      suite.cleanups.push(() => p.close());
      return p;
    };
    const first = await pool();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const firstRan: string[] = [];
    const engine: ImageEngine = {
      generate: async (params: GenerateParams, options) => {
        firstRan.push(params.prompt);
        if (params.prompt === 'blocker') await held;
        // The run it goes on to never ends: this worker stops in it.
        if (params.prompt === 'a1') return new Promise(() => undefined);
        return first.generate(params, options);
      },
      info: () => first.info(),
      models: () => first.models(),
      modelLoaded: (model) => first.modelLoaded(model),
      close: async () => undefined,
    };
    const lock = { lockDurationMs: 1000, stalledIntervalMs: 300 };
    const stopping = await ImageWorker.start({ redis: { url: suite.url, prefix }, engine, models: [A, B], logger, ...lock });
    suite.cleanups.push(() => stopping.close());
    const delivered = new Map<string, number>();
    const { db, queue } = botQueue(prefix, (job) => delivered.set(job.params.prompt, (delivered.get(job.params.prompt) ?? 0) + 1));
    const tickets = new Queue(keys.ticketQueue(B), { connection: bullConnection({ url: suite.url, prefix }, 'test-tickets'), prefix: keys.prefix });
    const redis = bullConnection({ url: suite.url, prefix }, 'test-reader');
    suite.cleanups.push(async () => {
      redis.disconnect();
      await tickets.close();
      await queue.shutdown({ deliveryGraceMs: 1000 });
      db.close();
    });
    await queue.resume();
    const submit = async (prompt: string, model: string) =>
      (await queue.submit({ guildId: 'g', channelId: 'c', userId: prompt, params: { prompt, model, steps: 2, seed: 1, guidanceScale: 7.5 } })).job;
    const blocker = await submit('blocker', A);
    await until(() => queue.get(blocker.id)?.state === 'running', 'the blocker to start');
    await submit('b1', B);
    const a1 = await submit('a1', A);
    await until(async () => (await tickets.getActiveCount()) === 1, "B's ticket to wait at the gate");
    release();
    await until(() => firstRan.includes('a1'), 'the worker to go on with a1');
    // a1 runs under the blocker's ticket, recorded as any run is.
    const taken = Object.values(await redis.hgetall(keys.taken)).map((raw) => JSON.parse(raw) as TakenRecord);
    expect(taken.map((record) => record.jobs.map((job) => job.id))).toEqual([[a1.id]]);
    // The worker stops: its tickets' locks are no longer renewed (as after a SIGKILL).
    for (const bullWorker of (stopping as unknown as { workers: Worker[] }).workers) await bullWorker.close(true);
    const second = await pool();
    const secondRan: string[] = [];
    const taker = await ImageWorker.start({
      redis: { url: suite.url, prefix },
      engine: { generate: (params: GenerateParams, options) => (secondRan.push(params.prompt), second.generate(params, options)), info: () => second.info(), models: () => second.models(), modelLoaded: (model) => second.modelLoaded(model), close: async () => undefined },
      models: [A, B],
      logger,
      ...lock,
    });
    suite.cleanups.push(() => taker.close());
    await until(() => delivered.size === 3, 'every picture');
    await sleep(500);
    expect(Object.fromEntries(delivered)).toEqual({ blocker: 1, b1: 1, a1: 1 });
    expect(secondRan.sort()).toEqual(['a1', 'b1']);
  });
});
