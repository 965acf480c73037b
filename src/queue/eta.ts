/**
 * Places and ETAs: the learned cost of a step, and when each running and waiting job should start and finish.
 * Pure functions over plain numbers: the queue keeps the learned costs in its journal (`readMeta`/`writeMeta`)
 * and hands in what runs and what waits; nothing here reads a clock, a database or the engine.
 */
import { batchKey, checkInputs, loopSteps } from '../diffusion/check-inputs.js';
import type { GenerateParams, ModelInfo, StepProgress } from '../diffusion/types.js';
import { planBatch, runCost, type CostModel, type PlanJob } from './batch-plan.js';
import type { JobPosition } from './types.js';

/** What was measured: moving averages of the wall time per step. */
export interface StepCosts {
  /** Milliseconds per step of one reference-size image. */
  readonly msPerStep: number;
  /** Milliseconds per step of a run of k reference-size images, by k (runs of several images are batches). */
  readonly runMsPerStep: ReadonlyMap<number, number>;
}

/** The stored form of `StepCosts` (JSON: the map's keys become strings). */
export interface SavedStepCosts {
  msPerStep: number;
  runMsPerStep: Record<string, number>;
}

/** Weight of the newest measurement in the moving averages: reacts within a few jobs, ignores one odd job. */
export const EWMA_WEIGHT = 0.3;

/**
 * Costs from what the journal kept, `initialMsPerStep` where nothing usable was kept. Stored values that are not
 * positive finite numbers (or run sizes that are not positive integers) are dropped, not trusted.
 */
export function loadStepCosts(saved: { msPerStep?: unknown; runMsPerStep?: unknown }, initialMsPerStep: number): StepCosts {
  const runs = typeof saved.runMsPerStep === 'object' && saved.runMsPerStep !== null ? saved.runMsPerStep : {};
  return {
    msPerStep: isPositive(saved.msPerStep) ? saved.msPerStep : initialMsPerStep,
    runMsPerStep: new Map(
      Object.entries(runs)
        .map(([images, ms]) => [Number(images), ms] as [number, unknown])
        .filter((entry): entry is [number, number] => Number.isInteger(entry[0]) && entry[0] > 0 && isPositive(entry[1])),
    ),
  };
}

export function saveStepCosts(costs: StepCosts): SavedStepCosts {
  return { msPerStep: costs.msPerStep, runMsPerStep: Object.fromEntries(costs.runMsPerStep) };
}

/**
 * Milliseconds per step of a run of `images` reference-size images: measured for that size of run, else bounded
 * from the measured ones (a bigger run costs at least as much; a run k times bigger at most k times as much),
 * else the per-image average times `images`.
 */
export function estimateMsPerStep(costs: StepCosts, images: number): number {
  const exact = costs.runMsPerStep.get(images);
  if (exact !== undefined) return exact;
  let below: number | undefined;
  let above: number | undefined;
  for (const k of costs.runMsPerStep.keys()) {
    if (k < images && (below === undefined || k > below)) below = k;
    if (k > images && (above === undefined || k < above)) above = k;
  }
  const bounds: number[] = [];
  if (below !== undefined) bounds.push((costs.runMsPerStep.get(below)! * images) / below);
  if (above !== undefined) bounds.push(costs.runMsPerStep.get(above)!);
  return bounds.length > 0 ? Math.min(...bounds) : costs.msPerStep * images;
}

/** The batch planner's view of `costs`, read afresh on every call (the caller may replace `costs` meanwhile). */
export function costModel(costs: () => StepCosts): CostModel {
  return { msPerStep: (images) => estimateMsPerStep(costs(), images) };
}

/**
 * Learn from a finished run: `runMs`, its wall time, per step, by the number of images it made (the run's `plan`
 * as started). Returns new costs; the same object when the measurement is unusable (not positive and finite).
 */
export function measureRun(costs: StepCosts, plan: readonly PlanJob[], runMs: number): StepCosts {
  const images = plan.reduce((sum, job) => sum + job.images, 0);
  const perStep = runMs / Math.max(plan[0].steps * plan[0].area, 1e-9);
  if (!Number.isFinite(perStep) || perStep <= 0) return costs;
  const previous = costs.runMsPerStep.get(images);
  const runMsPerStep = new Map(costs.runMsPerStep);
  runMsPerStep.set(images, previous === undefined ? perStep : EWMA_WEIGHT * perStep + (1 - EWMA_WEIGHT) * previous);
  return { msPerStep: EWMA_WEIGHT * (perStep / images) + (1 - EWMA_WEIGHT) * costs.msPerStep, runMsPerStep };
}

/**
 * What the batch planner and the ETAs need of a job. `model` is the model's facts when batching is on: they fill
 * in the default size and scheduler of the batch key. Without them (or for a job the engine would refuse) the
 * key is undefined, so the job runs alone.
 */
export function planJob(params: GenerateParams, model: ModelInfo | undefined, referencePixels: number): PlanJob {
  let key: string | undefined;
  if (model !== undefined) {
    try {
      key = batchKey(checkInputs(params, model), params.model);
    } catch {
      key = undefined; // the engine will say what is wrong with it, alone
    }
  }
  const pixels =
    params.width !== undefined && params.height !== undefined
      ? params.width * params.height
      : model !== undefined
        ? (params.width ?? model.width) * (params.height ?? model.height)
        : referencePixels;
  // The steps its loop runs (img2img: a share of them), which is what the cost per step multiplies.
  return { key, images: params.count ?? 1, steps: loopSteps(params), area: pixels / referencePixels };
}

/** One engine run in progress, as the ETAs see it. */
export interface RunInProgress {
  /** Its jobs as planned when it started (they step together). */
  plan: readonly PlanJob[];
  /** The last step each of its jobs reported; undefined before the first. */
  progress: readonly (StepProgress | undefined)[];
  /** Its jobs still running (a job past running, saving its PNGs, no longer has a position). */
  running: readonly string[];
}

export interface PositionsInput {
  /** The runs going on now. */
  runs: Iterable<RunInProgress>;
  /** Waiting jobs in fair order. */
  waiting: readonly { id: string; plan: PlanJob }[];
  /** Runs that go on at once (the queue's concurrency). */
  lanes: number;
  /** Images one run may make (1: every job runs alone). */
  maxBatchImages: number;
  cost: CostModel;
}

/**
 * Place and ETA of every running and waiting job. Each lane is busy for the remaining work of its running run;
 * then the waiting jobs are planned into runs as they will start (the head of the fair order and its companions,
 * see batch-plan.ts), each run going to the lane that frees first. Places count in that starting order.
 */
export function positions(input: PositionsInput): Map<string, JobPosition> {
  const result = new Map<string, JobPosition>();
  const waiting = input.waiting.length;
  const lanes = new Array<number>(input.lanes).fill(0);
  let lane = 0;
  for (const run of input.runs) {
    if (run.running.length === 0) continue;
    // The jobs of a run step together; the furthest report is the run's.
    let step = 0;
    let total = run.plan[0].steps;
    for (const progress of run.progress) {
      if (progress !== undefined && progress.step >= step) {
        step = progress.step;
        total = progress.totalSteps;
      }
    }
    const remainingMs = runCost(run.plan, input.cost) * (Math.max(total - step, 0) / Math.max(total, 1));
    if (lane < lanes.length) lanes[lane++] = remainingMs;
    for (const id of run.running) result.set(id, { place: 0, waiting, startsInMs: 0, doneInMs: Math.round(remainingMs) });
  }
  let rest = input.waiting;
  let place = 0;
  while (rest.length > 0) {
    const picked = planBatch(
      rest.map((job) => job.plan),
      input.maxBatchImages,
      input.cost,
    );
    let free = 0;
    for (let i = 1; i < lanes.length; i++) if (lanes[i] < lanes[free]) free = i;
    const startsInMs = lanes[free];
    lanes[free] += runCost(
      picked.map((index) => rest[index].plan),
      input.cost,
    );
    for (const index of picked) {
      result.set(rest[index].id, { place: ++place, waiting, startsInMs: Math.round(startsInMs), doneInMs: Math.round(lanes[free]) });
    }
    const taken = new Set(picked);
    rest = rest.filter((_, index) => !taken.has(index));
  }
  return result;
}

function isPositive(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0;
}
