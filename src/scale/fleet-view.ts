/**
 * What the bot shows of the scaled queue, computed from one read of Redis (pure: no I/O here): places and ETAs
 * per model over the live workers that serve it, the `/queue` snapshot, and which model a new job can get.
 */
import type { EngineModelListing, StepProgress } from '../diffusion/types.js';
import { Identifiers, UserError } from '../errors.js';
import { costModel, loadStepCosts, planJob, positions, type RunInProgress, type StepCosts } from '../queue/eta.js';
import type { JobPosition, JobRecord, JobView } from '../queue/types.js';
import type { FairView, RemoteJob, TakenRecord } from './fair-state.js';
import type { WorkerRecord } from './registry.js';

/** A reference image for step costs: 512 × 512, as the workers measure them. */
const REFERENCE_PIXELS = 512 * 512;

/** What the last read of Redis showed. */
export interface Seen {
  fair: FairView;
  taken: Map<string, TakenRecord>;
  workers: WorkerRecord[];
  models: EngineModelListing[];
}

/**
 * The model a new job gets (the one it asks for, else the published default) when a live worker serves it; else
 * the UserError that tells the member why not.
 */
export function servedModel(seen: Seen, requested: string | undefined): string | UserError {
  const model = requested ?? seen.models.find((listing) => listing.isDefault)?.name;
  if (model === undefined || !seen.models.some((listing) => listing.name === model)) {
    return new UserError(
      Identifiers.ModelUnavailable,
      model === undefined ? 'No image worker has joined yet, so no picture can be made. Try again in a minute.' : `No image worker serves the model \`${model}\`.`,
    );
  }
  if (!seen.workers.some((worker) => worker.models.includes(model))) {
    return new UserError(Identifiers.ModelUnavailable, `No image worker serves the model \`${model}\` right now. Try again in a minute, or pick another model.`);
  }
  return model;
}

/** The live workers' measured milliseconds per step, averaged; 1000 before any was measured. */
export function fleetMsPerStep(workers: readonly WorkerRecord[]): number {
  const measured = workers.map((worker) => worker.msPerStep).filter((ms) => ms > 0);
  return measured.length > 0 ? measured.reduce((a, b) => a + b, 0) / measured.length : 1000;
}

/**
 * The live workers' step costs as eta.ts keeps them: the averaged ms per step, and per run size the average of the
 * workers that measured runs of that size (so a shared run costs what the fleet measured for it).
 */
export function fleetStepCosts(workers: readonly WorkerRecord[]): StepCosts {
  const sums: Record<string, number> = {};
  const counts: Record<string, number> = {};
  for (const worker of workers) {
    for (const [images, ms] of Object.entries(worker.runMsPerStep ?? {})) {
      sums[images] = (sums[images] ?? 0) + ms;
      counts[images] = (counts[images] ?? 0) + 1;
    }
  }
  const runMsPerStep = Object.fromEntries(Object.entries(sums).map(([images, sum]) => [images, sum / counts[images]]));
  return loadStepCosts({ msPerStep: fleetMsPerStep(workers), runMsPerStep }, 1000);
}

/**
 * Places and ETAs per model: its waiting jobs in fair order over the live workers that serve it, planned into
 * shared runs by eta.ts and batch-plan.ts as the workers will take them. The run size is the smallest BATCH_IMAGES
 * among those workers: a fleet that mixes them gets ETAs that err late rather than early.
 */
export function fleetPositions(seen: Seen, progress: ReadonlyMap<string, StepProgress>): Map<string, JobPosition> {
  const costs = fleetStepCosts(seen.workers);
  const cost = costModel(() => costs);
  const all = new Map<string, JobPosition>();
  const info = (model: string) => seen.models.find((listing) => listing.name === model)?.info;
  for (const model of seen.fair.models.keys()) {
    const runs: RunInProgress[] = [...seen.taken.values()]
      .filter((taken) => taken.jobs[0]?.model === model)
      .map((taken) => ({
        plan: taken.jobs.map((job) => planJob(job.params, info(model), REFERENCE_PIXELS)),
        progress: taken.jobs.map((job) => progress.get(job.id)),
        running: taken.jobs.map((job) => job.id),
      }));
    const serving = seen.workers.filter((worker) => worker.models.includes(model));
    const lanes = Math.max(1, serving.length);
    const maxBatchImages = serving.length > 0 ? Math.min(...serving.map((worker) => worker.maxBatchImages ?? 1)) : 1;
    const order = seen.fair.order(model).map((job) => ({ id: job.id, plan: planJob(job.params, info(model), REFERENCE_PIXELS) }));
    for (const [id, position] of positions({ runs, waiting: order, lanes, maxBatchImages, cost })) all.set(id, position);
  }
  for (const taken of seen.taken.values()) {
    for (const job of taken.jobs) if (!all.has(job.id)) all.set(job.id, zeroPosition());
  }
  return all;
}

/**
 * The running and waiting jobs as `/queue` shows them: this process's journal record where it has one, else one
 * made from what Redis holds (another bot process's job).
 */
export function fleetViews(
  seen: Seen,
  places: ReadonlyMap<string, JobPosition>,
  progress: ReadonlyMap<string, StepProgress>,
  journaled: (jobId: string) => JobRecord | undefined,
): { running: JobView[]; waiting: JobView[] } {
  const record = (remote: RemoteJob, state: 'queued' | 'running'): JobRecord =>
    journaled(remote.id) ?? {
      id: remote.id,
      seq: 0,
      guildId: remote.guildId,
      channelId: remote.channelId,
      userId: remote.userId,
      kind: remote.kind,
      params: remote.params,
      state,
      attempts: remote.attempts,
      deliveryAttempts: 0,
      deliveryKey: remote.id,
      createdAt: remote.createdAt,
    };
  const running: JobView[] = [];
  for (const taken of seen.taken.values()) {
    for (const remote of taken.jobs) {
      const view: JobView = { job: { ...record(remote, 'running'), state: 'running', startedAt: taken.startedAt }, position: places.get(remote.id) ?? zeroPosition() };
      const step = progress.get(remote.id);
      if (step !== undefined) view.progress = step;
      running.push(view);
    }
  }
  const waiting: JobView[] = seen.fair
    .all()
    .map((remote) => ({ job: record(remote, 'queued'), position: places.get(remote.id) ?? zeroPosition() }))
    .sort((a, b) => a.position.place - b.position.place);
  return { running, waiting };
}

function zeroPosition(): JobPosition {
  return { place: 0, waiting: 0, startsInMs: 0, doneInMs: 0 };
}
