import fs from 'node:fs';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { StandInEngine } from '../../src/diffusion/engine/stand-in.js';
import { openDatabase, readMeta, writeMeta } from '../../src/store/database.js';
import type { GenerateParams } from '../../src/diffusion/types.js';
import { makeQueue, nextEvent, params, record, tempDataDir, type Harness, type HarnessOptions } from './helpers.js';

const harnesses: Harness[] = [];
async function harness(options: HarnessOptions = {}): Promise<Harness> {
  const h = await makeQueue({ maxBatchImages: 4, memberCap: 5, ...options });
  harnesses.push(h);
  await h.queue.resume();
  return h;
}
afterEach(async () => {
  for (const h of harnesses.splice(0)) {
    if (h.db.open) await h.queue.shutdown({ deliveryGraceMs: 100 });
    await h.close();
    fs.rmSync(h.dataDir, { recursive: true, force: true });
  }
});

function submit(h: Harness, userId: string, prompt: string, overrides: Partial<GenerateParams> = {}, guildId = 'g1') {
  return h.queue.submit({ guildId, channelId: 'c1', userId, params: params(prompt, overrides) });
}

/** A data dir whose journal already holds measured run costs: ms per step of a run of k reference images. */
function measuredDataDir(msPerStepByImages: Record<number, number>): string {
  const dataDir = tempDataDir();
  const db = openDatabase({ dataDir });
  writeMeta(db, 'queue.runMsPerStepByImages', msPerStepByImages);
  db.close();
  return dataDir;
}

/** Prompts of each job, grouped by the engine run they shared, in the order runs started. */
function runsByPrompt(h: Harness): string[][] {
  const runs: string[][] = [];
  let at = 0;
  for (const size of h.engine.runs) {
    runs.push(h.ran.slice(at, at + size));
    at += size;
  }
  return runs;
}

describe('FairQueue with maxBatchImages', () => {
  it('GIVEN 4 compatible jobs from 4 members THEN one engine run makes all four, each its own seed, delivered to each', async () => {
    const h = await harness({ referencePixels: 32 * 32 });
    const events: string[] = [];
    h.queue.events.on('started', ({ job }) => events.push(`started ${job.params.prompt}`));
    h.queue.events.on('progress', ({ job, progress }) => progress.step === 1 && events.push(`step1 ${job.params.prompt}`));
    const jobs = ['a', 'b', 'c', 'd'].map((user, i) => submit(h, user, `${user}1`, { seed: 100 + i }).job);
    await h.queue.onIdle();

    expect(h.engine.runs).toEqual([4]);
    // All four start together: none waits for another's run (each starts before any step is made).
    expect(events.slice(0, 4).sort()).toEqual(['started a1', 'started b1', 'started c1', 'started d1']);
    expect(h.delivered).toHaveLength(4);
    const alone = new StandInEngine({ msPerStep: 0 });
    for (const [i, job] of jobs.entries()) {
      const delivery = h.delivered.find((d) => d.job.id === job.id)!;
      expect(delivery.result.seed).toBe(100 + i);
      expect(h.queue.get(job.id)).toMatchObject({ state: 'done', attempts: 1 });
      // The picture is the one this job's seed makes alone.
      const solo = await alone.generate(params('solo', { seed: 100 + i }));
      const [got, want] = await Promise.all([
        sharp(Buffer.from(delivery.result.images[0])).raw().toBuffer(),
        sharp(Buffer.from(solo.images[0])).raw().toBuffer(),
      ]);
      expect(got.equals(want)).toBe(true);
    }
    // The run's cost is measured by its size, for the ETAs and the next plans.
    const measured = readMeta<Record<string, number>>(h.db, 'queue.runMsPerStepByImages')!;
    expect(Object.keys(measured)).toEqual(['4']);
    expect(measured['4']).toBeGreaterThan(0);
  });

  it('GIVEN jobs of other sizes, steps or schedulers THEN they are not merged, and each still runs in fair order', async () => {
    const h = await harness();
    submit(h, 'a', 'a1');
    submit(h, 'b', 'b1', { width: 64 });
    submit(h, 'c', 'c1', { steps: 5 });
    submit(h, 'd', 'd1', { scheduler: 'ddim' });
    submit(h, 'e', 'e1', { seed: 0x1_0000_0000 }); // invalid for the model: never batched, the engine answers it
    await h.queue.onIdle();
    expect(runsByPrompt(h)).toEqual([['a1'], ['b1'], ['c1'], ['d1'], ['e1']]);
    expect(h.delivered.map((d) => d.job.params.prompt)).toHaveLength(5);
  });

  it("GIVEN a member's second job THEN it never rides along ahead of other members' compatible first jobs", async () => {
    const h = await harness({ maxBatchImages: 2 });
    submit(h, 'a', 'a1');
    submit(h, 'a', 'a2');
    submit(h, 'a', 'a3');
    submit(h, 'b', 'b1');
    submit(h, 'c', 'c1');
    await h.queue.onIdle();
    expect(runsByPrompt(h)).toEqual([['a1', 'b1'], ['c1', 'a2'], ['a3']]);
  });

  it('GIVEN an incompatible job in between THEN a compatible one jumps it only when that costs it at most one step', async () => {
    // Measured: each further image adds a quarter of a one-image step (what the stand-in is set to do).
    const costs = { 1: 40, 2: 50, 3: 60, 4: 70 };
    const stand = { msPerStep: 2, batchCost: 0.25 };
    const first = await harness({ dataDir: measuredDataDir(costs), referencePixels: 32 * 32, engine: stand });
    // A, X, B (20 steps): B jumping X would start X 5 steps later than alone. Not allowed.
    submit(first, 'a', 'A', { steps: 20 });
    submit(first, 'x', 'X', { steps: 20, width: 64 });
    submit(first, 'b', 'B', { steps: 20 });
    await first.queue.onIdle();
    expect(runsByPrompt(first)).toEqual([['A'], ['X'], ['B']]);

    // A, B, X, C: X would have waited for A then B; A+B+C together end sooner. C may jump.
    const second = await harness({ dataDir: measuredDataDir(costs), referencePixels: 32 * 32, engine: stand });
    submit(second, 'a', 'A', { steps: 20 });
    submit(second, 'b', 'B', { steps: 20 });
    submit(second, 'x', 'X', { steps: 20, width: 64 });
    submit(second, 'c', 'C', { steps: 20 });
    const places = second.queue.snapshot().waiting.map((v) => [v.job.params.prompt, v.position.place]);
    expect(places).toEqual([['A', 1], ['B', 2], ['C', 3], ['X', 4]]);
    await second.queue.onIdle();
    expect(runsByPrompt(second)).toEqual([['A', 'B', 'C'], ['X']]);
  });

  it('GIVEN a batch waiting behind a running job THEN its jobs share one ETA: the run of four as measured', async () => {
    const h = await harness({ dataDir: measuredDataDir({ 1: 40, 2: 50, 3: 60, 4: 70 }), referencePixels: 32 * 32, engine: { msPerStep: 10 } });
    const started = nextEvent(h.queue.events, 'started');
    submit(h, 'z', 'running', { steps: 10_000, width: 64 });
    await started;
    const views = ['a', 'b', 'c', 'd'].map((user) => submit(h, user, `${user}1`, { steps: 10 }).job.id);
    const x = submit(h, 'x', 'x1', { steps: 10, width: 64 }).job.id;
    const positions = views.map((id) => h.queue.position(id)!);
    expect(positions.map((p) => p.place)).toEqual([1, 2, 3, 4]);
    const { startsInMs } = positions[0];
    expect(startsInMs).toBeGreaterThan(0);
    for (const p of positions) expect(p).toMatchObject({ startsInMs, doneInMs: startsInMs + 10 * 70 });
    // The 64×32 job waits for the batch, then takes 10 steps × twice the area × 40 ms.
    expect(h.queue.position(x)).toMatchObject({ place: 5, startsInMs: startsInMs + 700, doneInMs: startsInMs + 700 + 10 * 2 * 40 });
  });

  it('GIVEN a batch running THEN its jobs share one done-ETA and the next job waits for the whole run', async () => {
    const h = await harness({ dataDir: measuredDataDir({ 1: 40, 3: 60 }), referencePixels: 32 * 32, engine: { msPerStep: 10 } });
    const started = record(h.queue.events, 'started');
    for (const user of ['a', 'b', 'c']) submit(h, user, `${user}1`, { steps: 1000 });
    await nextEvent(h.queue.events, 'progress');
    expect(started).toHaveLength(3);
    const next = submit(h, 'd', 'd1', { steps: 10, width: 64 }).job;
    const snapshot = h.queue.snapshot();
    expect(snapshot.running.map((v) => v.position.place)).toEqual([0, 0, 0]);
    const done = snapshot.running.map((v) => v.position.doneInMs);
    expect(new Set(done).size).toBe(1);
    // At most 1000 steps of the run of three (60 ms each), less what is already done.
    expect(done[0]).toBeLessThanOrEqual(60_000);
    expect(done[0]).toBeGreaterThan(50_000);
    expect(h.queue.position(next.id)).toMatchObject({ place: 1, startsInMs: done[0], doneInMs: done[0] + 10 * 2 * 40 });
  });

  it('GIVEN one job of a running batch is cancelled THEN only it stops, at once, and the others are delivered', async () => {
    const h = await harness({ engine: { msPerStep: 10 } });
    const cancelled = record(h.queue.events, 'cancelled');
    const delivered = record(h.queue.events, 'delivered');
    const progressed = nextEvent(h.queue.events, 'progress', ({ job }) => job.params.prompt === 'b1');
    const jobs = ['a', 'b', 'c', 'd'].map((user) => submit(h, user, `${user}1`, { steps: 40 }).job);
    await progressed;
    expect(h.queue.cancel(jobs[1].id, 'b')).toBe('stopping');
    await nextEvent(h.queue.events, 'cancelled');
    expect(delivered).toHaveLength(0); // answered before the others finish
    await h.queue.onIdle();
    expect(h.engine.runs).toEqual([4]);
    expect(cancelled.map((c) => c.job.params.prompt)).toEqual(['b1']);
    expect(h.queue.get(jobs[1].id)).toMatchObject({ state: 'cancelled', cancelledBy: 'b' });
    expect(delivered.map((d) => d.job.params.prompt).sort()).toEqual(['a1', 'c1', 'd1']);
  });

  it('GIVEN the engine run dies mid-batch THEN every job of it fails with the apology, and the queue goes on', async () => {
    const h = await harness({
      engine: { failRun: (all) => (all.length > 1 ? new Error('worker exited with code 70') : undefined) },
    });
    const failed = record(h.queue.events, 'failed');
    for (const user of ['a', 'b', 'c']) submit(h, user, `${user}1`);
    await h.queue.onIdle();
    expect(failed.map((f) => [f.job.params.prompt, f.error]).sort()).toEqual(
      ['a1', 'b1', 'c1'].map((p) => [p, 'Sorry, something went wrong while making this image.']),
    );
    expect(h.logs.filter((l) => l.message === 'Generation failed')).toHaveLength(3);
    submit(h, 'a', 'after');
    await h.queue.onIdle();
    expect(h.delivered.map((d) => d.job.params.prompt)).toEqual(['after']);
  });

  it('GIVEN a batch past the job timeout THEN each job of it fails with the timeout, and the next job runs', async () => {
    const h = await harness({ jobTimeoutMs: 300, engine: { msPerStep: 5 } });
    const failed = record(h.queue.events, 'failed');
    submit(h, 'a', 'a1', { steps: 1000 });
    submit(h, 'b', 'b1', { steps: 1000 });
    submit(h, 'c', 'next', { steps: 2, width: 64 });
    await h.queue.onIdle();
    expect(h.engine.runs).toEqual([2, 1]);
    expect(failed.map((f) => [f.job.params.prompt, f.identifier]).sort()).toEqual([['a1', 'timeout'], ['b1', 'timeout']]);
    expect(h.delivered.map((d) => d.job.params.prompt)).toEqual(['next']);
  });

  it('GIVEN shutdown mid-batch THEN every job of it goes back to waiting, attempts unspent', async () => {
    const h = await harness({ engine: { msPerStep: 10 } });
    const progressed = nextEvent(h.queue.events, 'progress');
    const jobs = ['a', 'b', 'c'].map((user) => submit(h, user, `${user}1`, { steps: 1000 }).job);
    await progressed;
    const report = await h.queue.shutdown({ deliveryGraceMs: 100 });
    expect(report.requeued).toBe(3);
    for (const job of jobs) expect(h.queue.get(job.id)).toMatchObject({ state: 'queued', attempts: 0 });
  });

  it('GIVEN 4 compatible jobs waiting THEN images per minute are at least 1.5× the one-at-a-time rate, and no job starts later', async () => {
    // The stand-in's cost model: a run of 4 takes (1 + 3 × 0.25) = 1.75 one-image steps per step.
    const rate = async (maxBatchImages: number) => {
      const h = await harness({ maxBatchImages, engine: { msPerStep: 25, batchCost: 0.25 } });
      // How many engine runs had begun when each job started: a count, so a busy machine cannot skew it.
      const runsBefore = new Map<string, number>();
      h.queue.events.on('started', ({ job }) => runsBefore.set(job.params.prompt, h.engine.runs.length));
      const t0 = performance.now();
      for (const user of ['a', 'b', 'c', 'd']) submit(h, user, user, { steps: 10 });
      await h.queue.onIdle();
      const seconds = (performance.now() - t0) / 1000;
      return { perMinute: (4 * 60) / seconds, runs: h.engine.runs, runsBefore };
    };
    const one = await rate(1);
    const four = await rate(4);
    expect(one.runs).toEqual([1, 1, 1, 1]);
    expect(four.runs).toEqual([4]);
    // Ideal 4 / 1.75 = 2.3×; the margin absorbs a busy machine.
    expect(four.perMinute / one.perMinute).toBeGreaterThanOrEqual(1.5);
    // No job starts later: batched, all four start with the first run; one at a time, job k waits for k − 1 runs.
    expect(['a', 'b', 'c', 'd'].map((user) => four.runsBefore.get(user))).toEqual([0, 0, 0, 0]);
    expect(['a', 'b', 'c', 'd'].map((user) => one.runsBefore.get(user))).toEqual([0, 1, 2, 3]);
  });
});
