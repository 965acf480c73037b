/**
 * The scaled mode (issue 11) on a real redis-server started here: bot queue (RedisJobQueue) and image workers
 * (ImageWorker) in this one process, on the sleep-based stand-in engine at a fixed ms per step, so a 2-core
 * machine can show what more workers give. Measures images per minute with 1, 2 and 4 workers, the submit → worker
 * start overhead with idle workers, and the longest wait of a single-job member beside a flood, against the
 * embedded FairQueue with as many lanes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StandInEngine } from '../../src/diffusion/engine/stand-in.js';
import type { GenerateParams } from '../../src/diffusion/types.js';
import { createLogger } from '../../src/log.js';
import { FairQueue } from '../../src/queue/fair-queue.js';
import { ImageWorker } from '../../src/scale/image-worker.js';
import { RedisJobQueue } from '../../src/scale/redis-queue.js';
import { openDatabase } from '../../src/store/database.js';
import { RedisServer } from '../redis-server.js';
import { summarize, type Summary } from './stats.js';

export interface ScaleInput {
  /** Stand-in wall time per step. Default 25. */
  msPerStep?: number;
  /** Steps per job. Default 20. */
  steps?: number;
  /** Worker counts for images per minute. Default [1, 2, 4]. */
  workerCounts?: number[];
  /** Jobs per worker in each throughput run. Default 8. */
  jobsPerWorker?: number;
  /** Jobs timed one by one for the submit → start overhead. Default 200. */
  overheadJobs?: number;
  /** Jobs of the flooding member. Default 12. */
  floodJobs?: number;
  /** Members with one job each, submitted right after the flood. Default 3. */
  singles?: number;
  /** Workers (scaled) and lanes (embedded) in the flood. Default 3. */
  floodLanes?: number;
}

export interface ScaleThroughput {
  workers: number;
  jobs: number;
  seconds: number;
  imagesPerMinute: number;
}

export interface ScaleResult {
  redisVersion: string;
  msPerStep: number;
  steps: number;
  /** steps × msPerStep: the engine time of one job. */
  jobMs: number;
  throughput: ScaleThroughput[];
  /** images/min at the most workers ÷ (that many × images/min with one). */
  linearRatio: number;
  linearAt: number;
  overhead: {
    /** From `submit()` called to the engine's generate starting, idle workers. */
    fromCall: Summary;
    /** From `submit()` resolved (the member's answer) to the engine's generate starting; negative: it started first. */
    fromResolved: Summary;
    /** The submit call itself (journal, fair-state transaction, ticket, places). */
    submit: Summary;
    workers: number;
    /**
     * The control on the same machine: the embedded FairQueue's submit() called → generate starts, as many jobs,
     * one by one. What is left of the scaled figure above it is Redis and BullMQ; a p99 that both share is the machine.
     */
    embeddedFromCall: Summary;
  };
  /**
   * A step's progress, from the worker's engine reporting it to the bot's queue emitting it (what its message edit
   * waits on): target within one edit interval (EDIT_INTERVAL_MS, 1500 ms by default).
   */
  progress: { latency: Summary; events: number; editIntervalMs: number };
  fairness: {
    floodJobs: number;
    singles: number;
    lanes: number;
    /** Longest submit → start wait of a single-job member, scaled (that many workers, one lane each). */
    scaledLongestMs: number;
    /** The same with the embedded FairQueue at that concurrency. */
    embeddedLongestMs: number;
    scaledWaitsMs: number[];
    embeddedWaitsMs: number[];
  };
}

const logger = createLogger({ level: 'silent' });

function params(prompt: string, steps: number): GenerateParams {
  return { prompt, steps, seed: 1, guidanceScale: 7.5, width: 64, height: 64 };
}

async function until(check: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

/** A bot queue and `workers` image workers on `prefix`, each worker's stand-in calling `onGenerate`. */
async function fleet(server: RedisServer, dir: string, prefix: string, workers: number, msPerStep: number, onGenerate: (p: GenerateParams) => void) {
  const closers: (() => Promise<unknown>)[] = [];
  const delivered = new Map<string, number>();
  for (let i = 0; i < workers; i++) {
    const engine = new StandInEngine({ msPerStep, onGenerate });
    const worker = await ImageWorker.start({ redis: { url: server.url, prefix }, engine, logger, id: `${prefix}-w${i}`, maxBatchImages: 1 });
    closers.push(async () => {
      await worker.close();
      await engine.close();
    });
  }
  const db = openDatabase({ dataDir: path.join(dir, prefix) });
  const queue = new RedisJobQueue({
    redis: { url: server.url, prefix },
    db,
    instance: 'bench-bot',
    resultsDir: path.join(dir, prefix, 'results'),
    memberCap: 1000,
    globalCap: 10_000,
    deliver: async (job) => {
      delivered.set(job.id, performance.now());
      return { messageId: `m-${job.id}` };
    },
    logger,
  });
  await queue.resume();
  await until(() => queue.workers().length === workers, `${workers} workers to be seen`, 20_000);
  const close = async () => {
    await queue.shutdown({ deliveryGraceMs: 1000 });
    db.close();
    for (const closer of closers.reverse()) await closer();
  };
  return { queue, delivered, close };
}

/** Progress events from the worker's engine to the bot's queue, one worker, jobs one after another. */
async function progressLatency(server: RedisServer, dir: string, input: Required<ScaleInput>): Promise<ScaleResult['progress']> {
  const prefix = 'progress';
  const reported = new Map<string, number>();
  const engine = new StandInEngine({ msPerStep: input.msPerStep });
  const generateBatch = engine.generateBatch.bind(engine);
  engine.generateBatch = (items) =>
    generateBatch(
      items.map((item) => ({
        ...item,
        options: {
          ...item.options,
          onProgress: (progress) => {
            reported.set(`${item.params.prompt}#${progress.step}`, performance.now());
            item.options?.onProgress?.(progress);
          },
        },
      })),
    );
  const worker = await ImageWorker.start({ redis: { url: server.url, prefix }, engine, logger, maxBatchImages: 1 });
  const db = openDatabase({ dataDir: path.join(dir, prefix) });
  const delivered = new Set<string>();
  const queue = new RedisJobQueue({
    redis: { url: server.url, prefix },
    db,
    instance: 'bench-bot',
    resultsDir: path.join(dir, prefix, 'results'),
    memberCap: 1000,
    deliver: async (job) => {
      delivered.add(job.id);
      return { messageId: job.id };
    },
    logger,
  });
  const latencies: number[] = [];
  queue.events.on('progress', ({ job, progress }) => {
    const at = reported.get(`${job.params.prompt}#${progress.step}`);
    if (at !== undefined) latencies.push(performance.now() - at);
  });
  try {
    await queue.resume();
    await until(() => queue.workers().length === 1, 'the worker to be seen', 20_000);
    for (let i = 0; i < 10; i++) {
      const { job } = await queue.submit({ guildId: 'g', channelId: 'c', userId: 'm', params: params(`p-${i}`, input.steps) });
      await until(() => delivered.has(job.id), 'the picture', 60_000);
    }
  } finally {
    await queue.shutdown({ deliveryGraceMs: 1000 });
    db.close();
    await worker.close();
    await engine.close();
  }
  return { latency: summarize(latencies), events: latencies.length, editIntervalMs: 1500 };
}

async function throughput(server: RedisServer, dir: string, workers: number, input: Required<ScaleInput>): Promise<ScaleThroughput> {
  const f = await fleet(server, dir, `tp${workers}`, workers, input.msPerStep, () => undefined);
  try {
    const run = async (jobs: number, tag: string) => {
      const t0 = performance.now();
      const ids = await Promise.all(
        Array.from({ length: jobs }, (_, i) =>
          f.queue.submit({ guildId: `g${i % 3}`, channelId: 'c', userId: `${tag}-${i}`, params: params(`${tag}-${i}`, input.steps) }).then((s) => s.job.id),
        ),
      );
      await until(() => ids.every((id) => f.delivered.has(id)), 'every picture delivered', 120_000);
      return (Math.max(...ids.map((id) => f.delivered.get(id)!)) - t0) / 1000;
    };
    // Warm-up: connections, BullMQ scripts, event listeners.
    await run(workers, 'warm');
    const jobs = workers * input.jobsPerWorker;
    const seconds = await run(jobs, 'timed');
    return { workers, jobs, seconds, imagesPerMinute: (jobs / seconds) * 60 };
  } finally {
    await f.close();
  }
}

async function overhead(server: RedisServer, dir: string, input: Required<ScaleInput>): Promise<ScaleResult['overhead']> {
  const workers = 2;
  const startedAt = new Map<string, number>();
  const f = await fleet(server, dir, 'overhead', workers, input.msPerStep, (p) => startedAt.set(p.prompt, performance.now()));
  try {
    const fromCall: number[] = [];
    const fromResolved: number[] = [];
    const submit: number[] = [];
    const warmup = 5;
    for (let i = 0; i < warmup + input.overheadJobs; i++) {
      const prompt = `o-${i}`;
      const called = performance.now();
      const { job } = await f.queue.submit({ guildId: `g${i % 3}`, channelId: 'c', userId: `m${i % 7}`, params: params(prompt, 1) });
      const resolved = performance.now();
      await until(() => f.delivered.has(job.id), 'the picture', 20_000);
      if (i >= warmup) {
        const started = startedAt.get(prompt)!;
        fromCall.push(started - called);
        fromResolved.push(started - resolved);
        submit.push(resolved - called);
      }
      // Idle workers: let the worker that made it go back to waiting for a ticket.
      await sleep(20);
    }
    return { fromCall: summarize(fromCall), fromResolved: summarize(fromResolved), submit: summarize(submit), workers, embeddedFromCall: await embeddedOverhead(dir, input) };
  } finally {
    await f.close();
  }
}

async function embeddedOverhead(dir: string, input: Required<ScaleInput>): Promise<Summary> {
  const startedAt = new Map<string, number>();
  const engine = new StandInEngine({ msPerStep: input.msPerStep, onGenerate: (p) => startedAt.set(p.prompt, performance.now()) });
  const db = openDatabase({ dataDir: path.join(dir, 'embedded-overhead') });
  const delivered = new Set<string>();
  const queue = new FairQueue({
    db,
    engine,
    concurrency: 2,
    maxBatchImages: 1,
    memberCap: 1000,
    globalCap: 10_000,
    resultsDir: path.join(dir, 'embedded-overhead', 'results'),
    deliver: async (job) => {
      delivered.add(job.id);
      return { messageId: `m-${job.id}` };
    },
    logger,
  });
  try {
    await queue.resume();
    const fromCall: number[] = [];
    const warmup = 5;
    for (let i = 0; i < warmup + input.overheadJobs; i++) {
      const prompt = `e-${i}`;
      const called = performance.now();
      const { job } = queue.submit({ guildId: `g${i % 3}`, channelId: 'c', userId: `m${i % 7}`, params: params(prompt, 1) });
      await until(() => delivered.has(job.id), 'the picture', 20_000);
      if (i >= warmup) fromCall.push(startedAt.get(prompt)! - called);
      await sleep(20);
    }
    return summarize(fromCall);
  } finally {
    await queue.shutdown({ deliveryGraceMs: 1000 });
    await engine.close();
    db.close();
  }
}

/** Submit the flood then the singles; the longest submit → start wait of a single. */
async function floodWaits(
  submit: (userId: string, prompt: string) => Promise<unknown>,
  startedAt: Map<string, number>,
  input: Required<ScaleInput>,
  done: () => boolean,
): Promise<number[]> {
  const submittedAt = new Map<string, number>();
  for (let i = 0; i < input.floodJobs; i++) await submit('flood', `flood-${i}`);
  const singles = Array.from({ length: input.singles }, (_, i) => `single-${i}`);
  for (const prompt of singles) {
    submittedAt.set(prompt, performance.now());
    await submit(prompt, prompt);
  }
  await until(done, 'the flood to finish', 120_000);
  return singles.map((prompt) => startedAt.get(prompt)! - submittedAt.get(prompt)!);
}

async function fairness(server: RedisServer, dir: string, input: Required<ScaleInput>): Promise<ScaleResult['fairness']> {
  const total = input.floodJobs + input.singles;
  // Scaled: `floodLanes` workers of one lane each.
  const scaledStarts = new Map<string, number>();
  const f = await fleet(server, dir, 'flood', input.floodLanes, input.msPerStep, (p) => scaledStarts.set(p.prompt, performance.now()));
  let scaledWaitsMs: number[];
  try {
    scaledWaitsMs = await floodWaits(
      (userId, prompt) => f.queue.submit({ guildId: 'g', channelId: 'c', userId, params: params(prompt, input.steps) }),
      scaledStarts,
      input,
      () => f.delivered.size === total,
    );
  } finally {
    await f.close();
  }
  // Embedded: one FairQueue with `floodLanes` lanes on the same stand-in timing.
  const embeddedStarts = new Map<string, number>();
  const engine = new StandInEngine({ msPerStep: input.msPerStep, onGenerate: (p) => embeddedStarts.set(p.prompt, performance.now()) });
  const db = openDatabase({ dataDir: path.join(dir, 'embedded') });
  let delivered = 0;
  const queue = new FairQueue({
    db,
    engine,
    concurrency: input.floodLanes,
    maxBatchImages: 1,
    memberCap: 1000,
    globalCap: 10_000,
    resultsDir: path.join(dir, 'embedded', 'results'),
    deliver: async (job) => {
      delivered++;
      return { messageId: `m-${job.id}` };
    },
    logger,
  });
  let embeddedWaitsMs: number[];
  try {
    await queue.resume();
    embeddedWaitsMs = await floodWaits(
      async (userId, prompt) => queue.submit({ guildId: 'g', channelId: 'c', userId, params: params(prompt, input.steps) }),
      embeddedStarts,
      input,
      () => delivered === total,
    );
  } finally {
    await queue.shutdown({ deliveryGraceMs: 1000 });
    await engine.close();
    db.close();
  }
  return {
    floodJobs: input.floodJobs,
    singles: input.singles,
    lanes: input.floodLanes,
    scaledLongestMs: Math.max(...scaledWaitsMs),
    embeddedLongestMs: Math.max(...embeddedWaitsMs),
    scaledWaitsMs,
    embeddedWaitsMs,
  };
}

export async function measureScale(raw: ScaleInput, log: (line: string) => void): Promise<ScaleResult> {
  const input: Required<ScaleInput> = {
    msPerStep: raw.msPerStep ?? 25,
    steps: raw.steps ?? 20,
    workerCounts: raw.workerCounts ?? [1, 2, 4],
    jobsPerWorker: raw.jobsPerWorker ?? 8,
    overheadJobs: raw.overheadJobs ?? 200,
    floodJobs: raw.floodJobs ?? 12,
    singles: raw.singles ?? 3,
    floodLanes: raw.floodLanes ?? 3,
  };
  const server = await RedisServer.start();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'imagine-bench-scale-'));
  try {
    const version = await import('node:child_process').then(({ execFileSync }) => execFileSync('redis-server', ['--version'], { encoding: 'utf8' }).trim());
    const runs: ScaleThroughput[] = [];
    for (const workers of input.workerCounts) {
      log(`scale: images per minute with ${workers} worker${workers === 1 ? '' : 's'}`);
      runs.push(await throughput(server, dir, workers, input));
    }
    log(`scale: submit → start overhead, ${input.overheadJobs} jobs, idle workers`);
    const over = await overhead(server, dir, input);
    log('scale: progress from a worker to the bot');
    const progress = await progressLatency(server, dir, input);
    log(`scale: fairness under a flood of ${input.floodJobs}, ${input.singles} single jobs, ${input.floodLanes} lanes`);
    const fair = await fairness(server, dir, input);
    const one = runs.find((run) => run.workers === 1);
    const most = runs.reduce((a, b) => (b.workers > a.workers ? b : a));
    return {
      redisVersion: /v=(\S+)/.exec(version)?.[1] ?? version,
      msPerStep: input.msPerStep,
      steps: input.steps,
      jobMs: input.msPerStep * input.steps,
      throughput: runs,
      linearRatio: one === undefined ? Number.NaN : most.imagesPerMinute / (most.workers * one.imagesPerMinute),
      linearAt: most.workers,
      overhead: over,
      progress,
      fairness: fair,
    };
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
