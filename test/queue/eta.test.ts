import { describe, expect, it } from 'vitest';
import type { GenerateParams, ModelInfo } from '../../src/diffusion/types.js';
import type { CostModel, PlanJob } from '../../src/queue/batch-plan.js';
import {
  EWMA_WEIGHT,
  costModel,
  estimateMsPerStep,
  loadStepCosts,
  measureRun,
  planJob,
  positions,
  saveStepCosts,
  type StepCosts,
} from '../../src/queue/eta.js';

const MODEL: ModelInfo = { name: 'tiny', width: 32, height: 32, latentFactor: 1, defaultScheduler: 'euler', maxTokens: 77 };

function costs(msPerStep: number, runs: Record<number, number> = {}): StepCosts {
  return { msPerStep, runMsPerStep: new Map(Object.entries(runs).map(([k, ms]) => [Number(k), ms])) };
}

function job(overrides: Partial<PlanJob> = {}): PlanJob {
  return { key: undefined, images: 1, steps: 10, area: 1, ...overrides };
}

function params(overrides: Partial<GenerateParams> = {}): GenerateParams {
  return { prompt: 'a cat', steps: 10, seed: 1, guidanceScale: 0, ...overrides };
}

/** Linear: a run of k images costs k times one image's step (no gain from batching). */
const linear: CostModel = { msPerStep: (images) => 100 * images };

describe('step costs', () => {
  it('GIVEN nothing stored THEN the initial guess is used, and stored nonsense is dropped rather than trusted', () => {
    expect(loadStepCosts({}, 1000)).toEqual(costs(1000));
    expect(loadStepCosts({ msPerStep: 0, runMsPerStep: 'x' }, 1000)).toEqual(costs(1000));
    const loaded = loadStepCosts({ msPerStep: 40, runMsPerStep: { 1: 40, 2: 60, '0': 5, '1.5': 9, 3: -1, 4: 'x' } }, 1000);
    expect(loaded).toEqual(costs(40, { 1: 40, 2: 60 }));
    expect(saveStepCosts(loaded)).toEqual({ msPerStep: 40, runMsPerStep: { 1: 40, 2: 60 } });
  });

  it('estimates a run size from its own measurement, else bounds it by the nearest measured sizes, else scales the per-image average', () => {
    const measured = costs(50, { 1: 40, 4: 100 });
    expect(estimateMsPerStep(measured, 4)).toBe(100);
    // 2 images: at most twice a run of 1 (80), at most a run of 4 (100).
    expect(estimateMsPerStep(measured, 2)).toBe(80);
    // 3 images: 3 × 40 = 120 from below, but a run of 4 costs 100: the smaller bound wins.
    expect(estimateMsPerStep(measured, 3)).toBe(100);
    // 8 images: a run twice as big as 4 costs at most twice as much.
    expect(estimateMsPerStep(measured, 8)).toBe(200);
    expect(estimateMsPerStep(costs(50), 3)).toBe(150);
    expect(costModel(() => measured).msPerStep(4)).toBe(100);
  });

  it('GIVEN a finished run THEN its time per step is blended into the moving averages, by run size and per image', () => {
    const first = measureRun(costs(100), [job({ images: 2, steps: 10 })], 1000);
    // 100 ms per step for a run of 2; per image 50, blended with the old 100.
    expect(first.runMsPerStep.get(2)).toBe(100);
    expect(first.msPerStep).toBeCloseTo(EWMA_WEIGHT * 50 + (1 - EWMA_WEIGHT) * 100);
    const second = measureRun(first, [job({ images: 1, steps: 5 }), job({ images: 1, steps: 5 })], 1000);
    expect(second.runMsPerStep.get(2)).toBeCloseTo(EWMA_WEIGHT * 200 + (1 - EWMA_WEIGHT) * 100);
    // Pixels count: a job of twice the reference area makes each step count double.
    expect(measureRun(costs(100), [job({ steps: 10, area: 2 })], 1000).runMsPerStep.get(1)).toBe(50);
  });

  it('GIVEN an unusable measurement THEN the costs are returned unchanged and never mutated', () => {
    const before = costs(100, { 1: 100 });
    expect(measureRun(before, [job()], 0)).toBe(before);
    expect(measureRun(before, [job()], Number.NaN)).toBe(before);
    measureRun(before, [job()], 5000);
    expect(before).toEqual(costs(100, { 1: 100 }));
  });
});

describe('planJob', () => {
  it('GIVEN no model facts (batching off) THEN no batch key, and the area from the size or the reference', () => {
    expect(planJob(params({ width: 64, height: 32, count: 2 }), undefined, 32 * 32)).toEqual({ key: undefined, images: 2, steps: 10, area: 2 });
    expect(planJob(params(), undefined, 32 * 32)).toEqual({ key: undefined, images: 1, steps: 10, area: 1 });
  });

  it('GIVEN model facts THEN the key fills in the model defaults; a job the engine would refuse gets no key', () => {
    expect(planJob(params(), MODEL, 16 * 16)).toEqual({ key: '|10|euler|32x32', images: 1, steps: 10, area: 4 });
    expect(planJob(params({ width: 32, height: 32 }), MODEL, 16 * 16).key).toBe('|10|euler|32x32');
    expect(planJob(params({ prompt: '' }), MODEL, 16 * 16).key).toBeUndefined();
  });
});

describe('positions', () => {
  it('GIVEN a /imagine of count 4 (no run sizes measured yet) THEN it weighs 4 pictures: the job behind it starts 4× later', () => {
    const cost = costModel(() => costs(100));
    const waitingBehind = (count: number) =>
      positions({
        runs: [],
        waiting: [
          { id: 'many', plan: planJob(params({ count }), MODEL, 32 * 32) },
          { id: 'next', plan: planJob(params({ prompt: 'other' }), MODEL, 32 * 32) },
        ],
        lanes: 1,
        maxBatchImages: 1,
        cost,
      });
    expect(waitingBehind(1).get('next')).toMatchObject({ startsInMs: 1000, doneInMs: 2000 });
    expect(waitingBehind(4).get('next')).toMatchObject({ startsInMs: 4000, doneInMs: 5000 });
    expect(waitingBehind(4).get('many')).toMatchObject({ startsInMs: 0, doneInMs: 4000 });
  });

  it('GIVEN one lane busy halfway through a run THEN waiting jobs start after its remaining half, one after another', () => {
    const result = positions({
      runs: [{ plan: [job({ steps: 10 })], progress: [{ step: 5, totalSteps: 10, elapsedMs: 0 }], running: ['r'] }],
      waiting: [
        { id: 'w1', plan: job({ steps: 20 }) },
        { id: 'w2', plan: job({ steps: 10, images: 2 }) },
      ],
      lanes: 1,
      maxBatchImages: 1,
      cost: linear,
    });
    expect(Object.fromEntries(result)).toEqual({
      r: { place: 0, waiting: 2, startsInMs: 0, doneInMs: 500 },
      w1: { place: 1, waiting: 2, startsInMs: 500, doneInMs: 2500 },
      w2: { place: 2, waiting: 2, startsInMs: 2500, doneInMs: 4500 },
    });
  });

  it('GIVEN two lanes THEN a waiting job goes to the lane that frees first', () => {
    const result = positions({
      runs: [
        { plan: [job({ steps: 40 })], progress: [undefined], running: ['long'] },
        { plan: [job({ steps: 10 })], progress: [undefined], running: ['short'] },
      ],
      waiting: [
        { id: 'w1', plan: job({ steps: 5 }) },
        { id: 'w2', plan: job({ steps: 5 }) },
      ],
      lanes: 2,
      maxBatchImages: 1,
      cost: linear,
    });
    expect(result.get('w1')).toMatchObject({ place: 1, startsInMs: 1000, doneInMs: 1500 });
    expect(result.get('w2')).toMatchObject({ place: 2, startsInMs: 1500, doneInMs: 2000 });
  });

  it('GIVEN batching THEN compatible waiting jobs share one run: same start and end, places in starting order', () => {
    const shared: CostModel = { msPerStep: (images) => 100 + 10 * (images - 1) };
    const result = positions({
      runs: [],
      waiting: [
        { id: 'a', plan: job({ key: 'k' }) },
        { id: 'odd', plan: job({ key: 'other' }) },
        { id: 'b', plan: job({ key: 'k' }) },
      ],
      lanes: 1,
      maxBatchImages: 4,
      cost: shared,
    });
    expect(result.get('a')).toEqual({ place: 1, waiting: 3, startsInMs: 0, doneInMs: 1100 });
    expect(result.get('b')).toEqual({ place: 2, waiting: 3, startsInMs: 0, doneInMs: 1100 });
    expect(result.get('odd')).toEqual({ place: 3, waiting: 3, startsInMs: 1100, doneInMs: 2100 });
  });

  it('GIVEN a run whose jobs are all past running THEN it holds no lane and gives no positions; the furthest step of a batch is its', () => {
    const result = positions({
      runs: [
        { plan: [job()], progress: [{ step: 10, totalSteps: 10, elapsedMs: 0 }], running: [] },
        {
          plan: [job(), job()],
          progress: [{ step: 2, totalSteps: 10, elapsedMs: 0 }, { step: 8, totalSteps: 10, elapsedMs: 0 }],
          running: ['x', 'y'],
        },
      ],
      waiting: [{ id: 'w', plan: job() }],
      lanes: 1,
      maxBatchImages: 1,
      cost: linear,
    });
    expect([...result.keys()].sort()).toEqual(['w', 'x', 'y']);
    // 2 images × 100 ms × 10 steps = 2000, 2 of 10 steps left.
    expect(result.get('y')).toMatchObject({ place: 0, doneInMs: 400 });
    expect(result.get('w')).toMatchObject({ place: 1, startsInMs: 400, doneInMs: 1400 });
  });
});
