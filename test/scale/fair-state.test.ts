import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isUserError } from '../../src/errors.js';
import { FairScheduler } from '../../src/queue/fair-scheduler.js';
import { RedisFairState, type RemoteJob } from '../../src/scale/fair-state.js';
import { Keys } from '../../src/scale/redis.js';
import { HAVE_REDIS, RedisServer } from '../../tools/redis-server.js';

function job(id: string, guildId: string, userId: string, count = 1, model = 'm'): RemoteJob {
  return {
    id,
    guildId,
    channelId: 'c',
    userId,
    kind: 'imagine',
    owner: 'bot',
    model,
    params: { prompt: id, steps: 4, seed: 1, guidanceScale: 7.5, count },
    createdAt: 0,
    attempts: 0,
  };
}

describe.skipIf(!HAVE_REDIS)('the fair order in Redis (two bot processes, one redis-server)', () => {
  let server: RedisServer;
  const connections: Redis[] = [];
  let n = 0;

  beforeAll(async () => {
    server = await RedisServer.start();
  });
  afterAll(async () => {
    for (const connection of connections) connection.disconnect();
    await server.close();
  });

  /** Two processes' views of one fresh state (a new prefix per test). */
  function twoBots(): [RedisFairState, RedisFairState] {
    const keys = new Keys(`t${++n}`);
    const a = new Redis(server.url);
    const b = new Redis(server.url);
    connections.push(a, b);
    return [new RedisFairState(a, keys), new RedisFairState(b, keys)];
  }

  it('GIVEN submits and takes spread over two processes THEN jobs start in exactly the embedded FairScheduler order', async () => {
    const [one, two] = twoBots();
    const local = new FairScheduler<RemoteJob>();
    const started: string[] = [];
    const expected: string[] = [];
    // A flood from alice beside single jobs from others, in three servers; takes interleaved with submits so the
    // round state (who was served this round) must survive the trip through Redis.
    const script: (['submit', RemoteJob] | ['take'])[] = [
      ...['a1', 'a2', 'a3', 'a4', 'a5', 'a6'].map((id) => ['submit', job(id, 'g1', 'alice')] as ['submit', RemoteJob]),
      ['submit', job('b1', 'g1', 'bob')],
      ['take'],
      ['submit', job('c1', 'g2', 'carol')],
      ['take'],
      ['submit', job('d1', 'g3', 'dave')],
      ['submit', job('a7', 'g1', 'alice')],
      ['take'],
      ['submit', job('b2', 'g1', 'bob')],
      ['submit', job('c2', 'g2', 'carol')],
      ['take'],
      ['take'],
      ['submit', job('e1', 'g2', 'erin')],
      ...Array.from({ length: 10 }, () => ['take'] as ['take']),
    ];
    let turn = 0;
    for (const step of script) {
      const state = turn++ % 2 === 0 ? one : two;
      if (step[0] === 'submit') {
        await state.submit(step[1], undefined);
        local.add(step[1]);
      } else {
        const taken = await state.take('m', `ticket-${turn}`, 'w', () => [0], 0);
        started.push(...taken.map((j) => j.id));
        const head = local.take();
        if (head !== undefined) expected.push(head.id);
      }
    }
    expect(started).toHaveLength(13);
    expect(started).toEqual(expected);
    // Not FIFO: bob, carol and dave do not wait behind alice's flood.
    expect(started.indexOf('b1')).toBeLessThan(started.indexOf('a3'));
    expect(started.indexOf('d1')).toBeLessThan(started.indexOf('a4'));
  });

  it('GIVEN one member flooding two processes at once THEN the member cap holds across both', async () => {
    const [one, two] = twoBots();
    const caps = { memberCap: 3, globalCap: 100 };
    const attempts = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? one : two).submit(job(`x${i}`, 'g1', 'mallory'), caps));
    const outcomes = await Promise.allSettled(attempts);
    const accepted = outcomes.filter((outcome) => outcome.status === 'fulfilled').length;
    const refusals = outcomes.filter((outcome) => outcome.status === 'rejected').map((outcome) => (outcome as PromiseRejectedResult).reason);
    expect(accepted).toBe(3);
    expect(refusals).toHaveLength(17);
    expect(refusals.every((error) => isUserError(error) && error.identifier === 'memberQueueFull')).toBe(true);
    expect((await one.read()).all()).toHaveLength(3);
  });

  it('GIVEN many members racing for the last places THEN the global cap holds, counting pictures', async () => {
    const [one, two] = twoBots();
    const caps = { memberCap: 10, globalCap: 7 };
    const attempts = Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? one : two).submit(job(`y${i}`, 'g1', `member-${i}`, 2), caps));
    await Promise.allSettled(attempts);
    const waiting = (await two.read()).all();
    // Seven places, two pictures a job: three jobs fit, a fourth would make eight.
    expect(waiting.reduce((sum, j) => sum + (j.params.count ?? 1), 0)).toBe(6);
  });

  it('GIVEN a cancelled waiting job THEN it leaves the order and a second cancel finds nothing', async () => {
    const [one, two] = twoBots();
    for (const id of ['p1', 'p2', 'p3']) await one.submit(job(id, 'g1', id), undefined);
    expect((await two.remove('p2'))?.id).toBe('p2');
    expect(await one.remove('p2')).toBeUndefined();
    expect((await one.read()).order('m').map((j) => j.id)).toEqual(['p1', 'p3']);
  });

  it('GIVEN a take THEN the run is recorded under its ticket in the same transaction', async () => {
    const keys = new Keys(`t${++n}`);
    const connection = new Redis(server.url);
    connections.push(connection);
    const state = new RedisFairState(connection, keys);
    for (const id of ['q1', 'q2', 'q3']) await state.submit(job(id, 'g1', id), undefined);
    const taken = await state.take('m', 'ticket-9', 'worker-1', (order) => order.map((_, i) => i).slice(0, 2), 5);
    expect(taken.map((j) => j.id)).toEqual(['q1', 'q2']);
    const record = JSON.parse((await connection.hget(keys.taken, 'ticket-9'))!);
    expect(record).toMatchObject({ worker: 'worker-1', startedAt: 5, runs: 1 });
    expect(record.jobs.map((j: RemoteJob) => [j.id, j.attempts])).toEqual([
      ['q1', 1],
      ['q2', 1],
    ]);
    // Another model's order is its own.
    expect(await state.take('other', 'ticket-10', 'worker-1', () => [0], 5)).toEqual([]);
  });
});
