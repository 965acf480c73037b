/**
 * `npm run status`: the fleet as read from a real redis-server (src/scale/status.ts) with a bot queue and two
 * in-process image workers on the stand-in engine, and the compiled CLI (`node dist/src/cli/status.js`, as the npm
 * script runs it) as a process, in text and in JSON.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { StandInEngine } from '../../src/diffusion/engine/stand-in.js';
import type { GenerateParams } from '../../src/diffusion/types.js';
import type { JobRecord } from '../../src/queue/types.js';
import { openDatabase } from '../../src/store/database.js';
import { ImageWorker } from '../../src/scale/image-worker.js';
import { Keys } from '../../src/scale/redis.js';
import { RedisJobQueue } from '../../src/scale/redis-queue.js';
import { Registry, STALE_MS } from '../../src/scale/registry.js';
import { readFleetStatus, type FleetStatus } from '../../src/scale/status.js';
import { HAVE_REDIS, RedisServer } from '../../tools/redis-server.js';
import { until } from './redis-suite.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const STATUS = path.join(ROOT, 'dist', 'src', 'cli', 'status.js');
const logger = createLogger({ level: 'silent' });

function params(prompt: string, overrides: Partial<GenerateParams> = {}): GenerateParams {
  return { prompt, steps: 400, seed: 1, guidanceScale: 7.5, ...overrides };
}


/** Runs the compiled status CLI from a temp directory (no developer .env), as `npm run status` does after its build. */
function runStatus(env: Record<string, string>, args: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  const cwd = mkdtempSync(path.join(tmpdir(), 'imagine-status-cli-'));
  return new Promise((resolve) => {
    execFile(process.execPath, [STATUS, ...args], { cwd, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env }, timeout: 30_000 }, (error, stdout, stderr) => {
      rmSync(cwd, { recursive: true, force: true });
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

describe.skipIf(!HAVE_REDIS)('npm run status on a real redis-server', () => {
  let server: RedisServer;
  let dir: string;
  const cleanups: (() => Promise<unknown> | unknown)[] = [];

  beforeAll(async () => {
    // `npm run status`'s build step: compiles when dist/ is missing or older than the sources.
    execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'build.mjs'), '--if-stale'], { cwd: ROOT, stdio: 'inherit' });
    server = await RedisServer.start();
    dir = mkdtempSync(path.join(tmpdir(), 'imagine-status-'));
  }, 180_000);
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(async () => {
    await server?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('GIVEN 2 busy workers, a stale one and 4 waiting jobs in 3 servers THEN the status counts them per server and per model, names the oldest, and shows the runs', async () => {
    const prefix = 'busy';
    const keys = new Keys(prefix);
    const started: string[] = [];
    const workers: ImageWorker[] = [];
    for (const id of ['worker-a', 'worker-b']) {
      // 400 steps × 50 ms: the two first jobs run for 20 s, so the others wait while the status is read.
      const engine = new StandInEngine({ msPerStep: 50, onGenerate: (p) => started.push(p.prompt) });
      const worker = await ImageWorker.start({ redis: { url: server.url, prefix }, engine, logger, id });
      workers.push(worker);
      cleanups.push(async () => {
        await worker.close();
        await engine.close();
      });
    }
    const db = openDatabase({ dataDir: path.join(dir, prefix) });
    const queue = new RedisJobQueue({
      redis: { url: server.url, prefix },
      db,
      instance: 'bot-1',
      resultsDir: path.join(dir, prefix, 'results'),
      memberCap: 20,
      reconcileMs: 200,
      refreshMs: 200,
      deliver: async (job) => ({ messageId: `m-${job.id}` }),
      logger,
    });
    cleanups.push(async () => {
      await queue.shutdown({ deliveryGraceMs: 1000 });
      db.close();
    });
    await queue.resume();
    // Whatever happens below, let the long jobs go (waiting ones first, then the running ones stop at their next
    // step), so the workers close at once, and leave the default prefix empty for the next test.
    const submitted: JobRecord[] = [];
    const redis = new Redis(server.url);
    cleanups.push(async () => {
      for (const job of [...submitted].reverse()) await queue.cancel(job.id, 'test').catch(() => undefined);
      await redis.del(...[keys.fair, keys.taken, keys.workers].map((key) => key.replace(`${prefix}:`, 'imagine:')));
      redis.disconnect();
    });
    await until(() => queue.workers().length === 2, 'the bot to see both workers');

    const submit = async (guildId: string, userId: string, prompt: string, overrides: Partial<GenerateParams> = {}) => {
      const { job } = await queue.submit({ guildId, channelId: 'c', userId, params: params(prompt, overrides) });
      submitted.push(job);
      return job;
    };
    const first = await submit('g1', 'alice', 'running-1');
    const second = await submit('g1', 'bob', 'running-2');
    await until(() => started.length === 2, 'both workers to start a job');
    const oldest = await submit('g1', 'alice', 'waiting-1');
    const waiting = [oldest, await submit('g2', 'carol', 'waiting-2', { count: 2 }), await submit('g2', 'carol', 'waiting-3'), await submit('g3', 'dave', 'waiting-4')];
    // A worker that stopped beating long ago (its machine lost Redis): shown, and marked.
    const now = Date.now();
    await new Registry(redis, keys).beat({ id: 'worker-gone', host: 'far-away', pid: 1, models: ['stand-in'], msPerStep: 31, current: [], startedAt: now - 120_000, beatAt: now - STALE_MS - 5000 });
    // The heartbeat names the current job every 2 s: wait for both workers' beats to show theirs.
    let status: FleetStatus = await readFleetStatus(redis, keys, Date.now());
    await until(async () => {
      status = await readFleetStatus(redis, keys, Date.now());
      return status.workers.filter((worker) => worker.current.length > 0).length === 2;
    }, 'heartbeats naming the current jobs', 10_000);

    expect(status.workers.map((worker) => [worker.id, worker.stale])).toEqual([['worker-a', false], ['worker-b', false], ['worker-gone', true]]);
    expect(status.workers.flatMap((worker) => worker.current).sort()).toEqual([first.id, second.id].sort());
    expect(status.workers.find((worker) => worker.id === 'worker-gone')!.beatAgeMs).toBeGreaterThan(STALE_MS);
    for (const worker of status.workers) expect(worker.models).toEqual(['stand-in']);
    expect(status.waiting.jobs).toBe(4);
    expect(status.waiting.images).toBe(5);
    expect(status.waiting.byServer).toEqual([{ guildId: 'g2', jobs: 2 }, { guildId: 'g1', jobs: 1 }, { guildId: 'g3', jobs: 1 }]);
    expect(status.waiting.byModel).toEqual([{ model: 'stand-in', jobs: 4 }]);
    expect(status.waiting.oldest).toMatchObject({ jobId: oldest.id, guildId: 'g1', userId: 'alice', model: 'stand-in', createdAt: oldest.createdAt });
    expect(status.running.map((run) => run.jobs.map((job) => job.id)).flat().sort()).toEqual([first.id, second.id].sort());
    expect(status.running.map((run) => run.worker).sort()).toEqual(['worker-a', 'worker-b']);
    for (const run of status.running) expect(run).toMatchObject({ model: 'stand-in', runs: 1 });

    // The compiled CLI shows the same fleet: JSON for machines, aligned text for people. It reads the default
    // prefix, so copy this test's keys there.
    for (const key of [keys.fair, keys.taken, keys.workers]) {
      const dump = await redis.dumpBuffer(key);
      await redis.restore(key.replace(`${prefix}:`, 'imagine:'), 0, dump!, 'REPLACE');
    }
    const json = await runStatus({ REDIS_URL: server.url }, ['--json']);
    expect(json.stderr).toBe('');
    expect(json.code).toBe(0);
    const fromCli = JSON.parse(json.stdout) as FleetStatus;
    expect(fromCli.workers.map((worker) => [worker.id, worker.stale])).toEqual([['worker-a', false], ['worker-b', false], ['worker-gone', true]]);
    expect(fromCli.waiting).toMatchObject({ jobs: 4, images: 5, byServer: status.waiting.byServer, byModel: status.waiting.byModel, oldest: { jobId: oldest.id } });
    expect(fromCli.running).toHaveLength(2);

    const text = await runStatus({ REDIS_URL: server.url });
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/Workers: 2 alive, 1 stale/);
    expect(text.stdout).toMatch(/worker-gone +far-away +stand-in +31 +idle +\d+(\.\d)? s ago STALE/);
    for (const worker of workers) expect(text.stdout).toContain(worker.id);
    expect(text.stdout).toContain(first.id);
    expect(text.stdout).toMatch(/Waiting: 4 jobs \(5 images\)/);
    expect(text.stdout).toMatch(/per server +g2: 2 +g1: 1 +g3: 1/);
    expect(text.stdout).toMatch(/per model +stand-in: 4/);
    expect(text.stdout).toContain(`oldest      ${oldest.id}`);
    expect(text.stdout).toMatch(/Running: 2 runs/);

    // Let the long jobs go: the waiting ones are taken out, the running ones stop at their next step.
    for (const job of [...waiting, first, second]) await queue.cancel(job.id, 'test');
    await until(() => [first, second].every((job) => queue.get(job.id)!.state === 'cancelled'), 'the running jobs to stop');
  }, 90_000);

  it('GIVEN nothing in Redis THEN the CLI says so and exits 0', async () => {
    const text = await runStatus({ REDIS_URL: server.url });
    expect(text.stderr).toBe('');
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/Workers: 0 alive/);
    expect(text.stdout).toContain('none (start one with `npm run worker`)');
    expect(text.stdout).toMatch(/Waiting: 0 jobs/);
    expect(text.stdout).toMatch(/Running: 0 runs/);
  }, 60_000);

  it('GIVEN no REDIS_URL, or a Redis nobody answers on THEN one clear line and exit 1; an unknown flag exits 2', async () => {
    const unset = await runStatus({});
    expect(unset.code).toBe(1);
    expect(unset.stdout).toBe('');
    expect(unset.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^imagine status: `REDIS_URL` is not set/)]);

    const gone = await runStatus({ REDIS_URL: 'redis://127.0.0.1:1' });
    expect(gone.code).toBe(1);
    expect(gone.stderr.trim().split('\n')).toEqual(['imagine status: cannot reach Redis at redis://127.0.0.1:1 within 5 s']);

    const bad = await runStatus({ REDIS_URL: server.url }, ['--yaml']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('usage: npm run status');
  }, 60_000);
});
