/**
 * "Nothing lost, nothing twice" in the scaled mode, with real processes and a real redis-server: the compiled
 * worker (`npm run worker` = dist/src/cli/worker.js) SIGKILLed or SIGTERMed mid-job, a bot process SIGKILLed,
 * Redis restarted (AOF on) or gone.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { isUserError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { openDatabase } from '../../src/store/database.js';
import { RedisJobQueue } from '../../src/scale/redis-queue.js';
import { Registry } from '../../src/scale/registry.js';
import { Keys } from '../../src/scale/redis.js';
import { Redis } from 'ioredis';
import { HAVE_REDIS, RedisServer } from '../../tools/redis-server.js';
import { until } from './redis-suite.js';
import { processes, type Proc } from './processes.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WORKER = path.join(ROOT, 'dist', 'src', 'cli', 'worker.js');
const BOT = path.join(ROOT, 'test', 'scale', 'fixtures', 'bot-process.ts');
const logger = createLogger({ level: 'silent' });

const { run: spawnNode, tempDir, cleanups } = processes('imagine-crash-');

function run(args: string[], env: Record<string, string>, cwd?: string): Proc {
  return spawnNode(args, { LOG_LEVEL: 'info', ...env }, cwd);
}

function startWorker(redisUrl: string, stepMs: number, env: Record<string, string> = {}): Proc {
  return run([WORKER], { REDIS_URL: redisUrl, SAMPLER: 'stand-in', STAND_IN_STEP_MS: String(stepMs), WORKER_LOCK_SECONDS: '2', ...env });
}

function startBot(env: Record<string, string>): Proc {
  // From the repository, where tsx resolves (the fixture reads no .env).
  return run(['--import', 'tsx', BOT], env, ROOT);
}


function lines(file: string): string[] {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter((line) => line.length > 0) : [];
}

async function workersUp(url: string, count: number): Promise<void> {
  const redis = new Redis(url);
  try {
    await until(async () => (await new Registry(redis, new Keys()).alive(Date.now())).length >= count, () => `${count} workers`);
  } finally {
    redis.disconnect();
  }
}

async function flush(url: string): Promise<void> {
  const redis = new Redis(url);
  try {
    await redis.flushall();
  } finally {
    redis.disconnect();
  }
}

beforeAll(() => {
  execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'build.mjs'), '--if-stale'], { cwd: ROOT, stdio: 'inherit' });
}, 180_000);

describe.skipIf(!HAVE_REDIS)('scaled mode crash safety (real processes, real redis-server)', () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await RedisServer.start({ appendOnly: true });
    cleanups.push(() => undefined);
    return () => server.close();
  });

  it('GIVEN a worker SIGKILLed mid-job THEN another worker makes it and it is delivered once', async () => {
    await flush(server.url);
    const workers = [startWorker(server.url, 40), startWorker(server.url, 40)];
    await workersUp(server.url, 2);
    const dir = tempDir();
    const delivered = path.join(dir, 'delivered.txt');
    const bot = startBot({ REDIS_URL: server.url, DATA_DIR: dir, DELIVERED_FILE: delivered, SUBMIT: '1', STEPS: '100' });
    await until(() => /progress /.test(bot.output()), () => `progress; bot said:\n${bot.output()}\nworkers said:\n${workers.map((w) => w.output().slice(-1500)).join('\n---\n')}`);
    // Kill the worker that holds the job (its heartbeat names it).
    const redis = new Redis(server.url);
    cleanups.push(() => redis.disconnect());
    let busy: number | undefined;
    await until(async () => {
      busy = (await new Registry(redis, new Keys()).workers()).find((worker) => worker.current.length > 0)?.pid;
      return busy !== undefined;
    }, () => 'a busy worker');
    const victim = workers.find((worker) => worker.child.pid === busy)!;
    victim.child.kill('SIGKILL');
    expect((await victim.exited).signal).toBe('SIGKILL');
    await until(() => lines(delivered).length >= 1, () => `the delivery; bot said:\n${bot.output()}`, 90_000);
    await sleep(1500); // a second delivery would show up here
    expect(lines(delivered)).toHaveLength(1);
    const survivor = workers.find((worker) => worker !== victim)!;
    expect(survivor.output()).toContain('taking over a run from a worker that stopped');
  });

  it('GIVEN a bot process SIGKILLed with jobs in flight THEN on restart it delivers every picture exactly once', async () => {
    await flush(server.url);
    startWorker(server.url, 20);
    await workersUp(server.url, 1);
    const dir = tempDir();
    const delivered = path.join(dir, 'delivered.txt');
    const env = { REDIS_URL: server.url, DATA_DIR: dir, DELIVERED_FILE: delivered, STEPS: '10', INSTANCE: 'bot-a' };
    const first = startBot({ ...env, SUBMIT: '6' });
    await until(() => lines(delivered).length >= 1, () => `a first delivery; bot said:\n${first.output()}`);
    first.child.kill('SIGKILL');
    await first.exited;
    const before = lines(delivered).length;
    expect(before).toBeLessThan(6);
    const submitted = [...first.output().matchAll(/^submitted (\S+)$/gm)].map((match) => match[1]);
    expect(submitted).toHaveLength(6);
    const second = startBot({ ...env, SUBMIT: '0' });
    await until(() => lines(delivered).length >= 6, () => `all six delivered; second life said:\n${second.output()}`, 90_000);
    await sleep(1000);
    expect(lines(delivered).sort()).toEqual([...submitted].sort());
  });

  it('GIVEN Redis restarted (AOF) mid-run THEN no job is lost and none is delivered twice', async () => {
    await flush(server.url);
    startWorker(server.url, 20);
    await workersUp(server.url, 1);
    const dir = tempDir();
    const delivered = path.join(dir, 'delivered.txt');
    const bot = startBot({ REDIS_URL: server.url, DATA_DIR: dir, DELIVERED_FILE: delivered, STEPS: '15', SUBMIT: '8' });
    await until(() => lines(delivered).length >= 2, () => `two deliveries; bot said:\n${bot.output()}`);
    await server.stop();
    await sleep(1000);
    await server.run();
    await until(() => lines(delivered).length >= 8, () => `all eight delivered; bot said:\n${bot.output().slice(-3000)}`, 120_000);
    await sleep(1000);
    const submitted = [...bot.output().matchAll(/^submitted (\S+)$/gm)].map((match) => match[1]);
    expect(lines(delivered).sort()).toEqual([...submitted].sort());
  });

  it('GIVEN Redis unreachable THEN /imagine gets one clear line, nothing is journaled, and it works again once Redis is back', async () => {
    await flush(server.url);
    const worker = startWorker(server.url, 5);
    await workersUp(server.url, 1);
    const dir = tempDir();
    const db = openDatabase({ dataDir: dir });
    const queue = new RedisJobQueue({ redis: { url: server.url }, db, instance: 'bot-1', resultsDir: path.join(dir, 'results'), deliver: async (job) => ({ messageId: job.id }), logger, reconcileMs: 200 });
    cleanups.push(async () => {
      await queue.shutdown({ deliveryGraceMs: 100 });
      db.close();
    });
    await queue.resume();
    const input = { guildId: 'g', channelId: 'c', userId: 'u', params: { prompt: 'x', steps: 2, seed: 1, guidanceScale: 7.5 } };
    await server.stop();
    const refusal = await Promise.resolve(queue.submit(input)).catch((error: unknown) => error);
    expect(isUserError(refusal) && refusal.identifier).toBe('serviceUnavailable');
    expect((refusal as Error).message).toBe('The image service is unavailable, try again in a minute.');
    expect(db.prepare('SELECT COUNT(*) AS n FROM jobs').get()).toEqual({ n: 0 });
    await server.run();
    let accepted: string | undefined;
    await until(async () => {
      accepted = await Promise.resolve(queue.submit(input)).then((submitted) => submitted.job.id, () => undefined);
      return accepted !== undefined;
    }, () => 'a submit to be accepted again');
    await until(() => queue.get(accepted!)?.state === 'done', () => `the job to be delivered (${queue.get(accepted!)?.state}); worker said:\n${worker.output().slice(-3000)}`);
  });

  it('GIVEN SIGTERM to a busy worker THEN it finishes the picture, takes no new one, and exits 0', async () => {
    await flush(server.url);
    // One job a run, so the second job is not in the run SIGTERM lets finish.
    const worker = startWorker(server.url, 30, { BATCH_IMAGES: '1' });
    await workersUp(server.url, 1);
    const dir = tempDir();
    const delivered = path.join(dir, 'delivered.txt');
    const bot = startBot({ REDIS_URL: server.url, DATA_DIR: dir, DELIVERED_FILE: delivered, STEPS: '40', SUBMIT: '2' });
    await until(() => /progress /.test(bot.output()), () => `progress; bot said:\n${bot.output()}`);
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toEqual({ code: 0, signal: null });
    await until(() => lines(delivered).length >= 1, () => 'the first picture');
    await sleep(1000);
    // The second job waits for the next worker, in its place.
    expect(lines(delivered)).toHaveLength(1);
    startWorker(server.url, 5);
    await until(() => lines(delivered).length >= 2, () => 'the second picture, from a new worker');
  });
});
