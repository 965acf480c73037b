import fs from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Logger } from '../../src/log.js';
import { StandInEngine } from '../../src/diffusion/engine/stand-in.js';
import type { GenerateResult } from '../../src/diffusion/types.js';
import { JobRunner } from '../../src/queue/job-runner.js';
import { JournalOutage } from '../../src/queue/journal-outage.js';
import { TypedEmitter } from '../../src/queue/typed-emitter.js';
import type { JobRecord, QueueEventMap } from '../../src/queue/types.js';
import { openDatabase, type Db } from '../../src/store/database.js';
import { JobStore } from '../../src/store/jobs.js';
import { params, tempDataDir } from './helpers.js';

const quiet: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

interface Fixture {
  db: Db;
  jobs: JobStore;
  runner: JobRunner;
  outage: JournalOutage;
  /** The waiting jobs, in fair order (the runner's view of the queue). */
  waiting: JobRecord[];
  /** Each `take`, with the journal's state of its jobs at that moment. */
  taken: { ids: string[]; journaled: (string | undefined)[] }[];
  handedOff: { job: JobRecord; result: GenerateResult }[];
  events: { name: keyof QueueEventMap; jobId: string }[];
  /** Resolves when `handedOff` or a `failed`/`requeued` event reaches `count`. */
  until(count: number): Promise<void>;
  wait(prompt: string, steps?: number): JobRecord;
}

const dirs: string[] = [];
const dbs: Db[] = [];
afterEach(() => {
  for (const db of dbs.splice(0)) db.close();
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function fixture(options: { msPerStep?: number; jobTimeoutMs?: number } = {}): Fixture {
  const dataDir = tempDataDir();
  dirs.push(dataDir);
  const db = openDatabase({ dataDir });
  dbs.push(db);
  const jobs = new JobStore(db);
  const events = new TypedEmitter<QueueEventMap>(() => {});
  let ends = 0;
  let waiter: { count: number; resolve: () => void } | undefined;
  const ended = () => {
    ends++;
    if (waiter !== undefined && ends >= waiter.count) waiter.resolve();
  };
  const f: Fixture = {
    db,
    jobs,
    waiting: [],
    taken: [],
    handedOff: [],
    events: [],
    runner: undefined as unknown as JobRunner,
    outage: new JournalOutage({ retryDelayMs: 60_000, retry: () => f.runner.addSlot(), logger: quiet }),
    until: (count) => new Promise((resolve) => (ends >= count ? resolve() : (waiter = { count, resolve }))),
    wait(prompt, steps = 4) {
      const job = jobs.insert({
        id: prompt,
        guildId: 'g',
        channelId: 'c',
        userId: 'u',
        kind: 'imagine',
        params: params(prompt, { steps }),
        state: 'queued',
        attempts: 0,
        deliveryAttempts: 0,
        deliveryKey: prompt,
        createdAt: Date.now(),
      });
      f.waiting.push(job);
      return job;
    },
  };
  for (const name of ['started', 'failed', 'requeued'] as const) {
    events.on(name, ({ job }) => {
      f.events.push({ name, jobId: job.id });
      if (name !== 'started') ended();
    });
  }
  f.runner = new JobRunner({
    db,
    jobs,
    engine: new StandInEngine({ msPerStep: options.msPerStep ?? 2 }),
    settings: {
      concurrency: 1,
      maxBatchImages: 1,
      jobTimeoutMs: options.jobTimeoutMs ?? 60_000,
      abortGraceMs: 1000,
      referencePixels: 512 * 512,
      initialMsPerStep: 1000,
    },
    waiting: {
      peek: () => f.waiting[0],
      order: () => [...f.waiting],
      take: (taken) => {
        f.taken.push({ ids: taken.map((job) => job.id), journaled: taken.map((job) => jobs.get(job.id)?.state) });
        f.waiting = f.waiting.filter((job) => !taken.includes(job));
      },
    },
    delivery: {
      handOff: async (job, result) => {
        f.handedOff.push({ job, result });
        ended();
        return true;
      },
    },
    outage: f.outage,
    events,
    onRunsChanged: () => {},
    logger: quiet,
    now: Date.now,
  });
  return f;
}

describe('JobRunner', () => {
  it('GIVEN two waiting jobs THEN each is journaled running before it stops waiting, and is handed to delivery in order', async () => {
    const f = fixture();
    f.wait('a');
    f.wait('b');
    f.runner.addSlot();
    f.runner.addSlot();
    await f.until(2);
    expect(f.taken).toEqual([
      { ids: ['a'], journaled: ['running'] },
      { ids: ['b'], journaled: ['running'] },
    ]);
    expect(f.handedOff.map(({ job }) => [job.id, job.state, job.attempts])).toEqual([
      ['a', 'running', 1],
      ['b', 'running', 1],
    ]);
    // The lane is released just after the hand-off.
    await vi.waitFor(() => expect(f.runner.idle).toBe(true));
  });

  it('GIVEN a start the journal cannot write THEN the job does not stop waiting and no run starts', async () => {
    const f = fixture();
    f.wait('a');
    f.db.pragma('query_only = ON');
    f.runner.addSlot();
    await new Promise((resolve) => setTimeout(resolve, 20));
    f.db.pragma('query_only = OFF');
    expect(f.taken).toEqual([]);
    expect(f.waiting.map((job) => job.id)).toEqual(['a']);
    expect(f.jobs.get('a')?.state).toBe('queued');
    expect(f.events).toEqual([]);
    f.outage.stop();
    await f.runner.stop();
  });

  it('GIVEN a job past the timeout THEN it fails once, with the message naming the limit', async () => {
    const f = fixture({ msPerStep: 50, jobTimeoutMs: 30 });
    f.wait('slow', 20);
    f.runner.addSlot();
    await f.until(1);
    expect(f.events).toEqual([
      { name: 'started', jobId: 'slow' },
      { name: 'failed', jobId: 'slow' },
    ]);
    expect(f.jobs.get('slow')).toMatchObject({
      state: 'failed',
      errorCode: 'timeout',
      error: 'This image took longer than the 30 ms limit and was stopped.',
    });
  });

  it('GIVEN stop() while a job runs THEN it goes back to waiting in the journal, its attempt not counted', async () => {
    const f = fixture({ msPerStep: 50 });
    f.wait('a', 20);
    f.runner.addSlot();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(f.runner.get('a')?.state).toBe('running');
    expect(f.runner.cancel('missing')).toBe(false);
    await expect(f.runner.stop()).resolves.toBe(1);
    expect(f.events.map((event) => event.name)).toEqual(['started', 'requeued']);
    expect(f.jobs.get('a')).toMatchObject({ state: 'queued', attempts: 0 });
    expect(f.runner.idle).toBe(true);
  });
});
