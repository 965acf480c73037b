import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Identifiers, UserError, type Identifier } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import type { GenerateResult } from '../../src/diffusion/types.js';
import { DeliveryRunner } from '../../src/queue/delivery-runner.js';
import { TypedEmitter } from '../../src/queue/typed-emitter.js';
import type { DeliverFn, JobRecord, QueueEventMap } from '../../src/queue/types.js';
import { openDatabase, type Db } from '../../src/store/database.js';
import { JobStore } from '../../src/store/jobs.js';
import { ResultFiles } from '../../src/store/results.js';
import { params, tempDataDir } from './helpers.js';

const RESULT: GenerateResult = {
  images: [new Uint8Array([137, 80, 78, 71])],
  width: 32,
  height: 32,
  seed: 1,
  steps: 4,
  guidanceScale: 0,
  scheduler: 'euler',
  model: 'tiny',
  truncated: false,
  timings: { totalMs: 10, runtimeMs: 8, unetMs: 5 },
};

interface Fixture {
  db: Db;
  jobs: JobStore;
  results: ResultFiles;
  runner: DeliveryRunner;
  failures: { job: JobRecord; message: string; identifier: Identifier | undefined }[];
  delivered: QueueEventMap['delivered'][];
  settled: number;
  /** A job journaled as running, as the queue leaves it when its image is made. */
  running(id: string): JobRecord;
}

const dirs: string[] = [];
const dbs: Db[] = [];
afterEach(() => {
  for (const db of dbs.splice(0)) db.close();
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

const quiet: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

function fixture(deliver: DeliverFn, tries = 3): Fixture {
  const dataDir = tempDataDir();
  dirs.push(dataDir);
  const db = openDatabase({ dataDir });
  dbs.push(db);
  const jobs = new JobStore(db);
  const results = new ResultFiles(path.join(dataDir, 'results'));
  const events = new TypedEmitter<QueueEventMap>(() => {});
  const f: Fixture = {
    db,
    jobs,
    results,
    failures: [],
    delivered: [],
    settled: 0,
    runner: undefined as unknown as DeliveryRunner,
    running(id) {
      const job = jobs.insert({
        id,
        guildId: 'g',
        channelId: 'c',
        userId: 'u',
        kind: 'imagine',
        params: params(id),
        state: 'running',
        attempts: 1,
        deliveryAttempts: 0,
        deliveryKey: id,
        createdAt: 1,
      });
      return job;
    },
  };
  events.on('delivered', (payload) => f.delivered.push(payload));
  f.runner = new DeliveryRunner({
    jobs,
    results,
    deliver,
    tries,
    retryDelayMs: 5,
    keepResults: false,
    events,
    fail: (job, message, identifier) => {
      jobs.markFailed(job.id, message, identifier, 2);
      f.failures.push({ job, message, identifier });
    },
    onSettled: () => f.settled++,
    logger: quiet,
    now: () => 3,
  });
  return f;
}

async function settled(f: Fixture, count = 1): Promise<void> {
  while (f.settled < count) await new Promise((resolve) => setTimeout(resolve, 2));
}

describe('DeliveryRunner', () => {
  it('GIVEN a made image THEN its PNGs are saved before the journal says delivering; a failed post is retried, then done, PNGs removed', async () => {
    let calls = 0;
    const contexts: unknown[] = [];
    const f = fixture(async (job, _result, context) => {
      contexts.push({ attempt: context.attempt, mayHaveBeenDelivered: context.mayHaveBeenDelivered });
      // The journal says delivering only once the PNGs are on disk.
      expect(await f.results.load(job.id, 1)).toEqual(RESULT.images);
      if (++calls < 3) throw new Error('503 from Discord');
      return { messageId: 'posted' };
    });
    expect(await f.runner.handOff(f.running('j1'), RESULT)).toBe(true);
    expect(f.runner.get('j1')?.state).toBe('delivering');
    await settled(f);
    expect(contexts).toEqual([
      { attempt: 1, mayHaveBeenDelivered: false },
      { attempt: 2, mayHaveBeenDelivered: true },
      { attempt: 3, mayHaveBeenDelivered: true },
    ]);
    expect(f.jobs.get('j1')).toMatchObject({ state: 'done', resultMessageId: 'posted', deliveryAttempts: 3 });
    expect(f.delivered.map((d) => d.messageId)).toEqual(['posted']);
    expect(await f.results.load('j1', 1)).toBeUndefined();
    expect(f.runner.size).toBe(0);
  });

  it('GIVEN the tries run out, or a UserError THEN the job fails once with the apology or that message', async () => {
    const f = fixture(async (job) => {
      if (job.id === 'refused') throw new UserError(Identifiers.NotAllowed, 'I cannot post there.');
      throw new Error('503 from Discord');
    }, 2);
    await f.runner.handOff(f.running('flaky'), RESULT);
    await f.runner.handOff(f.running('refused'), RESULT);
    await settled(f, 2);
    expect(f.failures.map((x) => [x.job.id, x.message, x.identifier]).sort()).toEqual([
      ['flaky', 'Sorry, the image was made but could not be posted.', undefined],
      ['refused', 'I cannot post there.', Identifiers.NotAllowed],
    ]);
    expect(f.jobs.get('flaky')?.deliveryAttempts).toBe(2);
    expect(f.jobs.get('refused')?.deliveryAttempts).toBe(1);
  });

  it('GIVEN a restart THEN saved images are delivered again, lost ones fail, stray PNGs go; drain aborts what outlives its grace', async () => {
    const f = fixture(
      (_job, _result, context) =>
        new Promise((_resolve, reject) => context.signal.addEventListener('abort', () => reject(new Error('aborted')))),
    );
    const { images: _images, ...meta } = RESULT;
    for (const id of ['saved', 'lost']) {
      f.running(id);
      f.jobs.markDelivering(id, { ...meta, imageCount: 1 });
    }
    await f.results.save('saved', RESULT.images);
    await f.results.save('stray', RESULT.images);
    const counts = await f.runner.recover([f.jobs.get('saved')!, f.jobs.get('lost')!]);
    expect(counts).toEqual({ redelivering: 1, failed: 1 });
    expect(f.failures.map((x) => [x.job.id, x.message])).toEqual([['lost', 'The finished image was lost in a restart. Please ask again.']]);
    expect(await f.results.load('stray', 1)).toBeUndefined();

    await f.runner.drain(20);
    expect(f.runner.size).toBe(0);
    // Left for the next start: still delivering, its PNGs kept.
    expect(f.jobs.get('saved')?.state).toBe('delivering');
    expect(await f.results.load('saved', 1)).toEqual(RESULT.images);
  });
});
