import fs from 'node:fs';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Identifiers, UserError, isUserError } from '../../src/errors.js';
import { JobStore } from '../../src/store/jobs.js';
import { makeQueue, nextEvent, params, record, type Harness, type HarnessOptions } from './helpers.js';

const UNWRITABLE = "The bot can't save new jobs right now (its disk is full or read-only); try again later.";

const harnesses: Harness[] = [];
async function harness(options: HarnessOptions = {}): Promise<Harness> {
  const h = await makeQueue({ memberCap: 5, ...options });
  harnesses.push(h);
  await h.queue.resume();
  return h;
}
afterEach(async () => {
  vi.restoreAllMocks();
  for (const h of harnesses.splice(0)) {
    if (h.db.open) {
      h.db.pragma('query_only = OFF');
      await h.queue.shutdown({ deliveryGraceMs: 100 });
    }
    await h.close();
    fs.rmSync(h.dataDir, { recursive: true, force: true });
  }
});

function submit(h: Harness, userId: string, prompt: string, steps = 4) {
  return h.queue.submit({ guildId: 'g1', channelId: 'c1', userId, params: params(prompt, { steps }) });
}

function refusal(fn: () => unknown): UserError {
  try {
    fn();
  } catch (error) {
    if (isUserError(error)) return error;
    throw error;
  }
  throw new Error('expected a UserError');
}

function jobCount(h: Harness): number {
  return (h.db.prepare('SELECT COUNT(*) AS n FROM jobs').get() as { n: number }).n;
}

function waitingPlaces(h: Harness): [string, number][] {
  return h.queue.snapshot().waiting.map((view) => [view.job.params.prompt, view.position.place]);
}

async function until(predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('Timed out waiting for a condition');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('FairQueue when its journal cannot be written', () => {
  it('GIVEN the journal cannot record a start (SQLITE_FULL) THEN the job keeps its place and stays cancellable, submit refuses with one message and writes nothing, one warning, and work resumes by itself', async () => {
    const h = await harness({ journalRetryDelayMs: 5 });
    const full = vi.spyOn(JobStore.prototype, 'markRunning').mockImplementation(() => {
      throw new Database.SqliteError('database or disk is full', 'SQLITE_FULL');
    });
    const started = record(h.queue.events, 'started');
    const a1 = submit(h, 'a', 'a1').job;
    const a2 = submit(h, 'a', 'a2').job;
    const b1 = submit(h, 'b', 'b1').job;
    const before = waitingPlaces(h);
    expect(before).toEqual([
      ['a1', 1],
      ['b1', 2],
      ['a2', 3],
    ]);

    // The start fails, and is retried with a backoff.
    await until(() => full.mock.calls.length >= 3);
    expect(started).toEqual([]);
    expect(waitingPlaces(h)).toEqual(before);
    expect(h.queue.get(a1.id)?.state).toBe('queued');

    const rows = jobCount(h);
    const refused = refusal(() => submit(h, 'c', 'c1'));
    expect([refused.identifier, refused.message]).toEqual([Identifiers.JournalUnwritable, UNWRITABLE]);
    expect(jobCount(h)).toBe(rows);

    expect(h.queue.cancel(b1.id, 'b')).toBe('cancelled');
    expect(h.queue.get(b1.id)).toMatchObject({ state: 'cancelled', cancelledBy: 'b' });

    await until(() => full.mock.calls.length >= 5);
    const warnings = h.logs.filter((log) => log.level === 'warn');
    expect(warnings.map((log) => log.message)).toEqual([expect.stringMatching(/journal/i)]);
    expect(String(warnings[0].context?.error)).toMatch(/disk is full/);
    expect(h.logs.filter((log) => log.level === 'error')).toEqual([]);

    full.mockRestore();
    await h.queue.onIdle();
    expect(h.ran).toEqual(['a1', 'a2']);
    expect(h.queue.get(a1.id)).toMatchObject({ state: 'done', attempts: 1 });
    expect(h.queue.get(a2.id)).toMatchObject({ state: 'done', attempts: 1 });
    const c1 = submit(h, 'c', 'c1').job;
    await h.queue.onIdle();
    expect(h.queue.get(c1.id)?.state).toBe('done');
    expect(h.logs.filter((log) => log.level === 'warn')).toHaveLength(1);
  });

  it('GIVEN batching and a run whose start cannot be journaled THEN none of its jobs is taken, and the whole run starts together once it can', async () => {
    const h = await harness({ journalRetryDelayMs: 5, maxBatchImages: 4, referencePixels: 32 * 32 });
    const full = vi.spyOn(JobStore.prototype, 'markRunning').mockImplementation(() => {
      throw new Database.SqliteError('database or disk is full', 'SQLITE_FULL');
    });
    for (const user of ['a', 'b', 'c']) submit(h, user, `${user}1`);
    await until(() => full.mock.calls.length >= 2);
    expect(waitingPlaces(h)).toEqual([
      ['a1', 1],
      ['b1', 2],
      ['c1', 3],
    ]);
    expect(h.queue.snapshot().waiting.map((view) => view.position.startsInMs)).toEqual([0, 0, 0]);
    full.mockRestore();
    await h.queue.onIdle();
    expect(h.engine.runs).toEqual([3]);
    expect(h.delivered).toHaveLength(3);
  });

  it('GIVEN the journal file cannot grow (PRAGMA max_page_count, a real SQLITE_FULL) THEN submit refuses with the same message and writes nothing, and takes jobs again once it can grow', async () => {
    const h = await harness({ memberCap: 1000, globalCap: 1000, engine: { msPerStep: 20 } });
    const started = nextEvent(h.queue.events, 'started');
    const long = submit(h, 'a', 'long', 100_000).job;
    await started;
    const pages = h.db.pragma('page_count', { simple: true }) as number;
    h.db.pragma(`max_page_count = ${pages}`);

    let refused: UserError | undefined;
    for (let n = 0; n < 500 && refused === undefined; n++) {
      const rows = jobCount(h);
      try {
        submit(h, `u${n}`, `p${n}`);
      } catch (error) {
        if (!isUserError(error)) throw error;
        refused = error;
        expect(jobCount(h)).toBe(rows);
      }
    }
    expect([refused?.identifier, refused?.message]).toEqual([Identifiers.JournalUnwritable, UNWRITABLE]);
    expect(h.logs.filter((log) => log.level === 'warn')).toHaveLength(1);

    h.db.pragma(`max_page_count = ${pages * 1000}`);
    await until(() => {
      try {
        submit(h, 'z', 'z1');
        return true;
      } catch (error) {
        if (!isUserError(error) || error.identifier !== Identifiers.JournalUnwritable) throw error;
        return false;
      }
    });
    expect(h.queue.cancel(long.id)).toBe('stopping');
  });

  it('GIVEN a read-only journal (PRAGMA query_only) THEN a cancel that cannot be written fails loudly and the job keeps its place, and it runs once the journal is writable', async () => {
    const h = await harness({ journalRetryDelayMs: 5 });
    const a1 = submit(h, 'a', 'a1').job;
    const b1 = submit(h, 'b', 'b1').job;
    h.db.pragma('query_only = ON');
    await until(() => h.logs.some((log) => log.level === 'warn'));
    expect(() => h.queue.cancel(b1.id, 'b')).toThrow(/readonly/);
    expect(waitingPlaces(h)).toEqual([
      ['a1', 1],
      ['b1', 2],
    ]);

    h.db.pragma('query_only = OFF');
    await h.queue.onIdle();
    expect(h.ran).toEqual(['a1', 'b1']);
    expect([h.queue.get(a1.id)?.state, h.queue.get(b1.id)?.state]).toEqual(['done', 'done']);
  });

  it('GIVEN a shutdown while the journal cannot record starts THEN it stops retrying and the jobs stay queued in the journal', async () => {
    const h = await harness({ journalRetryDelayMs: 5 });
    const full = vi.spyOn(JobStore.prototype, 'markRunning').mockImplementation(() => {
      throw new Database.SqliteError('database or disk is full', 'SQLITE_FULL');
    });
    const a1 = submit(h, 'a', 'a1').job;
    await until(() => full.mock.calls.length >= 2);
    const report = await h.queue.shutdown({ deliveryGraceMs: 100 });
    expect(report.waiting.map((job) => job.id)).toEqual([a1.id]);
    const tries = full.mock.calls.length;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(full.mock.calls.length).toBe(tries);
  });
});
