import { describe, expect, it } from 'vitest';
import { FairScheduler } from '../../src/queue/fair-scheduler.js';

interface Job {
  id: string;
  guildId: string;
  userId: string;
}

function job(guildId: string, userId: string, n: number): Job {
  return { id: `${guildId}/${userId}#${n}`, guildId, userId };
}

function drain(scheduler: FairScheduler<Job>): string[] {
  const ids: string[] = [];
  for (let next = scheduler.take(); next !== undefined; next = scheduler.take()) ids.push(next.id);
  return ids;
}

describe('FairScheduler', () => {
  it('GIVEN one member flooding and two others THEN the others are interleaved, not stuck behind the flood', () => {
    const scheduler = new FairScheduler<Job>();
    for (let n = 1; n <= 10; n++) scheduler.add(job('g', 'a', n));
    scheduler.add(job('g', 'b', 1));
    scheduler.add(job('g', 'c', 1));
    scheduler.add(job('g', 'b', 2));
    scheduler.add(job('g', 'c', 2));
    const predicted = scheduler.order().map((j) => j.id);
    const taken = drain(scheduler);
    expect(taken).toEqual([
      'g/a#1', 'g/b#1', 'g/c#1',
      'g/a#2', 'g/b#2', 'g/c#2',
      'g/a#3', 'g/a#4', 'g/a#5', 'g/a#6', 'g/a#7', 'g/a#8', 'g/a#9', 'g/a#10',
    ]);
    expect(predicted).toEqual(taken);
  });

  it('GIVEN two guilds THEN turns alternate between guilds, then between members inside a guild', () => {
    const scheduler = new FairScheduler<Job>();
    for (let n = 1; n <= 3; n++) scheduler.add(job('g1', 'a', n));
    for (let n = 1; n <= 3; n++) scheduler.add(job('g1', 'b', n));
    for (let n = 1; n <= 2; n++) scheduler.add(job('g2', 'c', n));
    expect(drain(scheduler)).toEqual(['g1/a#1', 'g2/c#1', 'g1/b#1', 'g2/c#2', 'g1/a#2', 'g1/b#2', 'g1/a#3', 'g1/b#3']);
  });

  it('GIVEN a newcomer while a flooder is being served THEN the newcomer goes within the current round', () => {
    const scheduler = new FairScheduler<Job>();
    for (let n = 1; n <= 5; n++) scheduler.add(job('g', 'a', n));
    expect(scheduler.take()?.id).toBe('g/a#1');
    expect(scheduler.take()?.id).toBe('g/a#2');
    scheduler.add(job('g', 'c', 1));
    expect(scheduler.order().map((j) => j.id)).toEqual(['g/c#1', 'g/a#3', 'g/a#4', 'g/a#5']);
    expect(drain(scheduler)).toEqual(['g/c#1', 'g/a#3', 'g/a#4', 'g/a#5']);
  });

  it('GIVEN a member just served who submits again THEN they wait for the others this round', () => {
    const scheduler = new FairScheduler<Job>();
    scheduler.add(job('g', 'a', 1));
    scheduler.add(job('g', 'b', 1));
    scheduler.add(job('g', 'b', 2));
    expect(scheduler.take()?.id).toBe('g/a#1');
    scheduler.add(job('g', 'a', 2)); // a emptied their list and came back: no jumping the line
    expect(drain(scheduler)).toEqual(['g/b#1', 'g/a#2', 'g/b#2']);
  });

  it('GIVEN the guild ran empty and the member just served submits again THEN a newcomer still goes first', () => {
    const scheduler = new FairScheduler<Job>();
    scheduler.add(job('g', 'a', 1));
    expect(scheduler.take()?.id).toBe('g/a#1');
    scheduler.add(job('g', 'a', 2));
    scheduler.add(job('g', 'd', 1));
    expect(drain(scheduler)).toEqual(['g/d#1', 'g/a#2']);
  });

  it('GIVEN more idle guilds than it keeps THEN the oldest idle guild state is forgotten (memory stays bounded)', () => {
    const scheduler = new FairScheduler<Job>(2);
    for (const guild of ['g1', 'g2', 'g3']) {
      scheduler.add(job(guild, 'a', 1));
      scheduler.take();
    }
    // g1's round state is gone, so its member counts as new; g3 still remembers a was served.
    scheduler.add(job('g1', 'a', 2));
    scheduler.add(job('g1', 'b', 1));
    scheduler.add(job('g3', 'a', 2));
    scheduler.add(job('g3', 'b', 1));
    expect(scheduler.order().map((j) => j.id)).toEqual(['g1/a#2', 'g3/b#1', 'g1/b#1', 'g3/a#2']);
  });

  it('GIVEN cancelled jobs THEN they leave the order and empty members and guilds are dropped', () => {
    const scheduler = new FairScheduler<Job>();
    scheduler.add(job('g1', 'a', 1));
    scheduler.add(job('g1', 'a', 2));
    scheduler.add(job('g2', 'b', 1));
    expect(scheduler.remove('g2/b#1')?.id).toBe('g2/b#1');
    expect(scheduler.remove('g2/b#1')).toBeUndefined();
    expect(scheduler.remove('g1/a#1')?.id).toBe('g1/a#1');
    expect(scheduler.size).toBe(1);
    expect(scheduler.countFor('g1', 'a')).toBe(1);
    expect(scheduler.countFor('g2', 'b')).toBe(0);
    expect(scheduler.memberKeys()).toEqual(['g1:a']);
    expect(drain(scheduler)).toEqual(['g1/a#2']);
    expect(scheduler.take()).toBeUndefined();
  });

  it('GIVEN 100 members with 10 jobs each THEN every member has a job in the first 100 and order() matches take()', () => {
    const scheduler = new FairScheduler<Job>();
    for (let n = 1; n <= 10; n++) for (let m = 0; m < 100; m++) scheduler.add(job(`g${m % 7}`, `u${m}`, n));
    const predicted = scheduler.order().map((j) => j.id);
    const taken = drain(scheduler);
    expect(taken).toEqual(predicted);
    expect(taken).toHaveLength(1000);
    expect(new Set(taken.slice(0, 100).map((id) => id.split('#')[0])).size).toBe(100);
  });

  it('GIVEN rounds, riders, cancels and newcomers THEN peek() is always the job take() returns next, and takes nothing', () => {
    const scheduler = new FairScheduler<Job>();
    expect(scheduler.peek()).toBeUndefined();
    for (let n = 1; n <= 3; n++) for (const user of ['a', 'b', 'c']) scheduler.add(job(`g${n % 2}`, user, n));
    const changes = [
      () => scheduler.add(job('g9', 'newcomer', 1)),
      () => scheduler.remove(scheduler.order()[1].id),
      () => scheduler.takeBatch(() => [0, 2]),
    ];
    for (let turn = 0; scheduler.size > 0; turn++) {
      changes[turn]?.();
      const size = scheduler.size;
      const peeked = scheduler.peek();
      expect(scheduler.size).toBe(size);
      expect(scheduler.take()).toBe(peeked);
    }
    expect(scheduler.peek()).toBeUndefined();
  });

  describe('takeBatch', () => {
    it('GIVEN companions chosen from the fair order THEN they leave the queue and the order after them stays fair', () => {
      const scheduler = new FairScheduler<Job>();
      for (const user of ['a', 'b', 'c']) for (let n = 1; n <= 2; n++) scheduler.add(job('g', user, n));
      const seen: string[][] = [];
      const batch = scheduler.takeBatch((order) => {
        seen.push(order.map((j) => j.id));
        return [0, 1];
      });
      expect(seen).toEqual([['g/a#1', 'g/b#1', 'g/c#1', 'g/a#2', 'g/b#2', 'g/c#2']]);
      expect(batch.map((j) => j.id)).toEqual(['g/a#1', 'g/b#1']);
      // b rode along on a's turn, so both were served this round: c goes next, then the second round.
      const predicted = scheduler.order().map((j) => j.id);
      expect(predicted).toEqual(['g/c#1', 'g/a#2', 'g/b#2', 'g/c#2']);
      expect(drain(scheduler)).toEqual(predicted);
    });

    it('GIVEN a member whose only job rode along and who submits again THEN they wait for the others this round', () => {
      const scheduler = new FairScheduler<Job>();
      scheduler.add(job('g', 'a', 1));
      scheduler.add(job('g', 'a', 2));
      scheduler.add(job('g', 'b', 1));
      expect(scheduler.takeBatch(() => [0, 1]).map((j) => j.id)).toEqual(['g/a#1', 'g/b#1']);
      scheduler.add(job('g', 'b', 2));
      expect(drain(scheduler)).toEqual(['g/a#2', 'g/b#2']);
    });

    it('GIVEN a rider from another guild THEN that guild is served this round too', () => {
      const scheduler = new FairScheduler<Job>();
      scheduler.add(job('g1', 'a', 1));
      scheduler.add(job('g2', 'b', 1));
      scheduler.add(job('g3', 'c', 1));
      scheduler.add(job('g2', 'b', 2));
      scheduler.add(job('g1', 'a', 2));
      expect(scheduler.order().map((j) => j.id)).toEqual(['g1/a#1', 'g2/b#1', 'g3/c#1', 'g1/a#2', 'g2/b#2']);
      expect(scheduler.takeBatch(() => [0, 1]).map((j) => j.id)).toEqual(['g1/a#1', 'g2/b#1']);
      expect(drain(scheduler)).toEqual(['g3/c#1', 'g1/a#2', 'g2/b#2']);
    });

    it('GIVEN nothing waiting or a choice without the head THEN nothing, or a clear error and nothing taken', () => {
      const scheduler = new FairScheduler<Job>();
      expect(scheduler.takeBatch(() => [0])).toEqual([]);
      scheduler.add(job('g', 'a', 1));
      scheduler.add(job('g', 'b', 1));
      expect(() => scheduler.takeBatch(() => [1])).toThrow('Expected the batch to start with the head of the fair order (0), got `1`');
      expect(scheduler.size).toBe(2);
    });
  });
});
