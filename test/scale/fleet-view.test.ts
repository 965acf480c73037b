/**
 * The scaled queue's places and ETAs (scale/fleet-view.ts) over the step costs the workers publish: a run of
 * several jobs costs what the fleet measured for runs of that size (eta.ts and batch-plan.ts decide the runs).
 * The same with a real redis-server and worker: scaled-queue.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { StandInEngine } from '../../src/diffusion/engine/stand-in.js';
import { FairScheduler } from '../../src/queue/fair-scheduler.js';
import { FairView, type RemoteJob } from '../../src/scale/fair-state.js';
import { fleetPositions, fleetStepCosts } from '../../src/scale/fleet-view.js';
import type { WorkerRecord } from '../../src/scale/registry.js';

function workerRecord(id: string, overrides: Partial<WorkerRecord>): WorkerRecord {
  return { id, host: 'h', pid: 1, models: ['stand-in'], msPerStep: 0, current: [], startedAt: 0, beatAt: 0, ...overrides };
}

function remote(id: string, userId: string): RemoteJob {
  return {
    id,
    guildId: 'g',
    channelId: 'c',
    userId,
    kind: 'imagine',
    owner: 'bot-1',
    model: 'stand-in',
    params: { prompt: id, steps: 4, seed: 1, guidanceScale: 7.5, model: 'stand-in' },
    createdAt: 0,
    attempts: 0,
  };
}

describe('fleet places and ETAs', () => {
  it('GIVEN two workers’ measured run costs THEN the fleet’s cost of a run of k images is their average for k', () => {
    const costs = fleetStepCosts([
      workerRecord('w1', { msPerStep: 100, runMsPerStep: { '1': 100, '4': 200 } }),
      workerRecord('w2', { msPerStep: 300, runMsPerStep: { '4': 300 } }),
      workerRecord('old', { msPerStep: 0 }),
    ]);
    expect(costs.msPerStep).toBe(200);
    expect([...costs.runMsPerStep.entries()].sort()).toEqual([
      [1, 100],
      [4, 250],
    ]);
  });

  it('GIVEN four batchable jobs and a worker that batches four at its measured cost THEN they share one run of that cost', async () => {
    const info = await new StandInEngine().info();
    const scheduler = new FairScheduler<RemoteJob>();
    for (const user of ['a', 'b', 'c', 'd']) scheduler.add(remote(user, user));
    const seen = (worker: WorkerRecord) => ({
      fair: new FairView(new Map([['stand-in', scheduler]])),
      taken: new Map(),
      workers: [worker],
      models: [{ name: 'stand-in', dir: '', bytes: 0, isDefault: true, estimatedBytes: 0, info }],
    });
    // 4 steps of 64 × 64 (1/64 of the 512 × 512 reference).
    const batching = fleetPositions(seen(workerRecord('w', { msPerStep: 640, runMsPerStep: { '1': 640, '4': 1280 }, maxBatchImages: 4 })), new Map());
    expect(['a', 'b', 'c', 'd'].map((id) => batching.get(id))).toEqual(
      [1, 2, 3, 4].map((place) => ({ place, waiting: 4, startsInMs: 0, doneInMs: (1280 * 4) / 64 })),
    );
    // A worker that runs one job at a time: four runs one after another.
    const alone = fleetPositions(seen(workerRecord('w', { msPerStep: 640, runMsPerStep: { '1': 640, '4': 1280 } })), new Map());
    expect(['a', 'b', 'c', 'd'].map((id) => alone.get(id)?.doneInMs)).toEqual([40, 80, 120, 160]);
  });
});
