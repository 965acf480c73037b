/**
 * Images per minute with jobs waiting, batching on against off, through the real FairQueue (SQLite journal,
 * result files) and an engine (the worker pool). For the bench, and runnable on its own:
 *
 *   npx tsx tools/bench/batch-throughput.ts [--jobs 4] [--steps 20] [--rounds 3] [--guidance 7.5] <modelDir>...
 *
 * Each round submits `jobs` compatible jobs from as many members at once, once with maxBatchImages = 1 and once
 * with maxBatchImages = jobs (order alternating between rounds, one warm pool per model), and times submission to
 * the last image made. Per job it also records when it started and when its image was made, so the "no job waits
 * longer than alone plus one step" rule can be read off: a job's start with batching against its start without.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { GenerateParams, ImageEngine } from '../../src/diffusion/types.js';
import { openDatabase } from '../../src/store/database.js';
import { FairQueue } from '../../src/queue/fair-queue.js';

export interface BatchThroughputInput {
  engine: ImageEngine;
  /** Jobs waiting at once, each from its own member. Default 4. */
  jobs?: number;
  steps?: number;
  /** Rounds of (off, on), alternating which goes first. Default 3. */
  rounds?: number;
  guidanceScale?: number;
}

export interface ModeFigures {
  maxBatchImages: number;
  /** Median over rounds. */
  imagesPerMinute: number;
  /** Seconds from submission to the last image made, per round. */
  seconds: number[];
  /** Per job (in submission order), median over rounds: ms from submission to its start and to its image. */
  startMs: number[];
  doneMs: number[];
}

export interface BatchThroughputResult {
  model: string;
  width: number;
  height: number;
  steps: number;
  jobs: number;
  off: ModeFigures;
  on: ModeFigures;
  /** on.imagesPerMinute / off.imagesPerMinute. */
  speedup: number;
  /** One step of one job alone (ms): off's median time per image / steps. */
  stepMs: number;
  /** Per job: its start with batching minus its start without, in ms (≤ stepMs meets the rule). */
  startDelayMs: number[];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function oneRound(engine: ImageEngine, maxBatchImages: number, params: GenerateParams[]) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imagine-batch-bench-'));
  const db = openDatabase({ dataDir });
  const queue = new FairQueue({
    db,
    engine,
    maxBatchImages,
    resultsDir: path.join(dataDir, 'results'),
    deliver: async (job) => ({ messageId: `m-${job.id}` }),
  });
  try {
    await queue.resume();
    const started = new Map<string, number>();
    const done = new Map<string, number>();
    queue.events.on('started', ({ job }) => started.set(job.id, performance.now()));
    queue.events.on('generated', ({ job }) => done.set(job.id, performance.now()));
    const t0 = performance.now();
    const ids = params.map((p, i) => queue.submit({ guildId: 'bench', channelId: 'c', userId: `member-${i}`, params: p }).job.id);
    await queue.onIdle();
    const last = Math.max(...ids.map((id) => done.get(id) ?? Number.NaN));
    return {
      seconds: (last - t0) / 1000,
      startMs: ids.map((id) => (started.get(id) ?? Number.NaN) - t0),
      doneMs: ids.map((id) => (done.get(id) ?? Number.NaN) - t0),
    };
  } finally {
    await queue.shutdown({ deliveryGraceMs: 100 });
    db.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Measure one engine (already warm or not: one unbatched and one batched warm-up run go first). */
export async function measureBatchThroughput(input: BatchThroughputInput): Promise<BatchThroughputResult> {
  const jobs = input.jobs ?? 4;
  const steps = input.steps ?? 20;
  const rounds = input.rounds ?? 3;
  const info = await input.engine.info();
  const params: GenerateParams[] = Array.from({ length: jobs }, (_, i) => ({
    prompt: ['a red circle', 'a blue square', 'a green triangle', 'a yellow star'][i % 4],
    steps,
    seed: 1000 + i,
    guidanceScale: input.guidanceScale ?? 7.5,
    width: info.width,
    height: info.height,
  }));
  await oneRound(input.engine, 1, params.slice(0, 1));
  await oneRound(input.engine, jobs, params);
  const runs: Record<'off' | 'on', Awaited<ReturnType<typeof oneRound>>[]> = { off: [], on: [] };
  for (let r = 0; r < rounds; r++) {
    for (const mode of r % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const)) {
      runs[mode].push(await oneRound(input.engine, mode === 'on' ? jobs : 1, params));
    }
  }
  const figures = (mode: 'off' | 'on'): ModeFigures => {
    const seconds = runs[mode].map((run) => run.seconds);
    return {
      maxBatchImages: mode === 'on' ? jobs : 1,
      imagesPerMinute: (jobs * 60) / median(seconds),
      seconds,
      startMs: params.map((_, i) => median(runs[mode].map((run) => run.startMs[i]))),
      doneMs: params.map((_, i) => median(runs[mode].map((run) => run.doneMs[i]))),
    };
  };
  const off = figures('off');
  const on = figures('on');
  const stepMs = (median(off.seconds) * 1000) / jobs / steps;
  return {
    model: info.name,
    width: info.width,
    height: info.height,
    steps,
    jobs,
    off,
    on,
    speedup: on.imagesPerMinute / off.imagesPerMinute,
    stepMs,
    startDelayMs: params.map((_, i) => on.startMs[i] - off.startMs[i]),
  };
}

async function main(argv: string[]): Promise<void> {
  const { createWorkerPool } = await import('../../src/diffusion/engine/worker-pool.js');
  const options: Record<string, number> = { jobs: 4, steps: 20, rounds: 3, guidanceScale: 7.5 };
  const dirs: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const flag = /^--(jobs|steps|rounds)$/.exec(argv[i]);
    if (argv[i] === '--guidance') {
      const value = Number(argv[++i]);
      if (!(value >= 0)) throw new RangeError(`Expected \`--guidance\` to be a number of at least 0, got \`${argv[i]}\``);
      options.guidanceScale = value;
    } else if (flag) {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value) || value < 1) throw new RangeError(`Expected \`${argv[i - 1]}\` to be a positive integer, got \`${argv[i]}\``);
      options[flag[1]] = value;
    } else dirs.push(argv[i]);
  }
  if (dirs.length === 0) {
    throw new Error('Usage: npx tsx tools/bench/batch-throughput.ts [--jobs 4] [--steps 20] [--rounds 3] [--guidance 7.5] <modelDir>...');
  }
  const fmt = (values: number[]) => values.map((v) => v.toFixed(0)).join(' / ');
  for (const dir of dirs) {
    const pool = await createWorkerPool({ modelDir: path.resolve(dir), log: () => undefined });
    try {
      const r = await measureBatchThroughput({ engine: pool, ...options });
      console.log(`${r.model} ${r.width}×${r.height}, ${r.steps} steps, guidance ${options.guidanceScale}, ${r.jobs} jobs waiting (${os.cpus().length} cores, ${os.cpus()[0]?.model ?? '?'})`);
      console.log(`  one at a time: ${r.off.imagesPerMinute.toFixed(1)} images/min (rounds ${r.off.seconds.map((s) => s.toFixed(2)).join(', ')} s)`);
      console.log(`  batched:       ${r.on.imagesPerMinute.toFixed(1)} images/min (rounds ${r.on.seconds.map((s) => s.toFixed(2)).join(', ')} s)  → ${r.speedup.toFixed(2)}×`);
      console.log(`  start ms per job, off: ${fmt(r.off.startMs)}; on: ${fmt(r.on.startMs)} (one step alone ≈ ${r.stepMs.toFixed(1)} ms)`);
      console.log(`  image ms per job, off: ${fmt(r.off.doneMs)}; on: ${fmt(r.on.doneMs)}`);
      console.log(`  JSON ${JSON.stringify(r)}`);
    } finally {
      await pool.close();
    }
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
