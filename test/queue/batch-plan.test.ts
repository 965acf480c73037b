import { describe, expect, it } from 'vitest';
import { planBatch, runCost, type CostModel, type PlanJob } from '../../src/queue/batch-plan.js';

/** A run of k images costs (1 + (k − 1) × c) × ms per step, as the stand-in engine models it. */
function costOf(c: number, ms = 10): CostModel {
  return { msPerStep: (images) => (1 + (images - 1) * c) * ms };
}

function job(key: string | undefined, overrides: Partial<PlanJob> = {}): PlanJob {
  return { key, images: 1, steps: 20, area: 1, ...overrides };
}

/** Start times of each job (by index) when the runs go one after another on one lane. */
function starts(order: PlanJob[], runs: number[][], cost: CostModel): number[] {
  const at = new Array<number>(order.length);
  let clock = 0;
  for (const run of runs) {
    for (const index of run) at[index] = clock;
    clock += runCost(run.map((i) => order[i]), cost);
  }
  return at;
}

/** Runs as the planner would start them, until nothing waits (indices into `order`). */
function plan(order: PlanJob[], maxImages: number, cost: CostModel): number[][] {
  let rest = order.map((j, index) => ({ j, index }));
  const runs: number[][] = [];
  while (rest.length > 0) {
    const picked = planBatch(rest.map((r) => r.j), maxImages, cost);
    runs.push(picked.map((i) => rest[i].index));
    rest = rest.filter((_, i) => !picked.includes(i));
  }
  return runs;
}

describe('planBatch', () => {
  it('GIVEN 4 compatible jobs and room for 4 images THEN one run of all four, head first', () => {
    expect(planBatch([job('k'), job('k'), job('k'), job('k')], 4, costOf(0.5))).toEqual([0, 1, 2, 3]);
  });

  it('GIVEN the image cap THEN companions fill it in fair order, skipping jobs with too many images', () => {
    expect(planBatch([job('k'), job('k', { images: 3 }), job('k')], 4, costOf(0.5))).toEqual([0, 1]);
    const order = [job('k'), job('k', { images: 4 }), job('k'), job('k', { images: 2 })];
    expect(planBatch(order, 4, costOf(0))).toEqual([0, 2, 3]);
    // Jumping the 4-image job would make it start more than a step late unless batching is nearly free.
    expect(planBatch(order, 4, costOf(0.5))).toEqual([0]);
    expect(planBatch(order, 1, costOf(0.5))).toEqual([0]);
    expect(planBatch([job('k', { images: 4 }), job('k')], 4, costOf(0.5))).toEqual([0]);
  });

  it('GIVEN an incompatible or invalid head THEN the head still runs first (no starvation), alone', () => {
    expect(planBatch([job('other'), job('k'), job('k')], 4, costOf(0.5))).toEqual([0]);
    expect(planBatch([job(undefined), job(undefined)], 4, costOf(0.5))).toEqual([0]);
    expect(planBatch([], 4, costOf(0.5))).toEqual([]);
  });

  it('GIVEN a run that would be slower than its jobs one after another THEN no batching', () => {
    expect(planBatch([job('k'), job('k')], 4, costOf(1.5))).toEqual([0]);
    // No gain but no loss (the queue's prior before anything is measured): it batches, so the gain gets measured.
    expect(planBatch([job('k'), job('k')], 4, costOf(1))).toEqual([0, 1]);
  });

  it('GIVEN an incompatible job between THEN a companion jumps it only if it still starts within one of its steps of its solo start', () => {
    // A, X, B: B jumping X makes X wait for A+B together (1.25 runs) instead of A alone (1 run): 5 steps late.
    expect(planBatch([job('k'), job('x'), job('k')], 4, costOf(0.25))).toEqual([0]);
    // A, B, X, C: X would have waited for A then B (2 runs); A+B+C together take 1.5 runs. C may jump.
    expect(planBatch([job('k'), job('k'), job('x'), job('k')], 4, costOf(0.25))).toEqual([0, 1, 3]);
    // Nearly free batching (an idle accelerator): within one step, so B may jump X.
    expect(planBatch([job('k'), job('x'), job('k')], 4, costOf(0.04))).toEqual([0, 2]);
  });

  it.each([0, 0.04, 0.25, 0.5, 1])(
    'GIVEN mixed waiting jobs and batch cost %s THEN no job starts later than with no batching plus one of its steps',
    (c) => {
      const cost = costOf(c);
      const keys = ['a', 'a', 'b', 'a', 'b', 'a', 'c', 'a', 'a', 'b', 'a', 'c', 'a'];
      const order = keys.map((key, i) => job(key, { steps: key === 'c' ? 10 : 20, images: i % 5 === 4 ? 2 : 1 }));
      const batched = starts(order, plan(order, 4, cost), cost);
      const solo = starts(order, order.map((_, i) => [i]), cost);
      for (let i = 0; i < order.length; i++) {
        const oneStep = runCost([order[i]], cost) / order[i].steps;
        expect(batched[i]).toBeLessThanOrEqual(solo[i] + oneStep + 1e-6);
      }
      // And batching pays: with any gain per image, the whole queue is done sooner.
      const end = (runs: number[][]) => runs.reduce((sum, run) => sum + runCost(run.map((i) => order[i]), cost), 0);
      if (c < 1) expect(end(plan(order, 4, cost))).toBeLessThan(end(order.map((_, i) => [i])));
    },
  );
});
