/**
 * The image worker's gate (scale/run-gate.ts): one run at a time, the next picked by model-affinity.ts's rule.
 * The whole worker with Redis and real models is in worker-affinity.test.ts; here, the choices alone.
 */
import { describe, expect, it } from 'vitest';
import { MAX_PASSES } from '../../src/queue/model-affinity.js';
import { RunGate } from '../../src/scale/run-gate.js';

/** Start a run of `model` on an idle gate and hold it open until the returned `finish` is called. */
function busyGate(gate: RunGate, model: string, ran: string[]) {
  let finish!: () => void;
  const done = gate.run(model, async () => {
    ran.push(model);
    await new Promise<void>((resolve) => (finish = resolve));
  });
  return { done, finish: () => finish() };
}

describe('RunGate', () => {
  it('GIVEN no loaded-model check THEN tickets run one at a time in arrival order and a run never goes on', async () => {
    const gate = new RunGate();
    const ran: string[] = [];
    const first = busyGate(gate, 'x', ran);
    const rest = ['y', 'x', 'z'].map((model) => gate.run(model, async () => void ran.push(model)));
    expect(gate.goOn('x')).toBeUndefined();
    expect(ran).toEqual(['x']);
    first.finish();
    await Promise.all([first.done, ...rest]);
    expect(ran).toEqual(['x', 'y', 'x', 'z']);
  });

  it('GIVEN a waiting ticket whose model is loaded THEN it starts before earlier ones, each passed over at most MAX_PASSES times', async () => {
    const loaded = new Set(['x']);
    const gate = new RunGate((model) => loaded.has(model));
    const ran: string[] = [];
    const first = busyGate(gate, 'x', ran);
    const rest = ['y', 'x', 'x'].map((model) => gate.run(model, async () => void ran.push(model)));
    first.finish();
    await Promise.all([first.done, ...rest]);
    // y (not loaded) is passed over once by the second x, then starts although the third x's model is loaded.
    expect(MAX_PASSES).toBe(1);
    expect(ran).toEqual(['x', 'x', 'y', 'x']);
  });

  it('GIVEN a run ended and a ticket waits for a model that needs a load THEN the run may go on once, not twice', async () => {
    const gate = new RunGate((model) => model === 'x');
    const ran: string[] = [];
    const first = busyGate(gate, 'x', ran);
    const waiting = gate.run('y', async () => void ran.push('y'));
    const passOver = gate.goOn('x');
    expect(passOver).toBeDefined();
    // Asking does not count a pass: the run may find nothing to take.
    expect(gate.goOn('x')).toBeDefined();
    passOver!();
    expect(gate.goOn('x')).toBeUndefined();
    first.finish();
    await Promise.all([first.done, waiting]);
    expect(ran).toEqual(['x', 'y']);
    // An idle gate: nothing waits, so there is nothing to prefer over.
    expect(gate.goOn('x')).toBeUndefined();
  });

  it('GIVEN the waiting ticket’s model is loaded too THEN the run does not go on', () => {
    const gate = new RunGate(() => true);
    const ran: string[] = [];
    const first = busyGate(gate, 'x', ran);
    void gate.run('y', async () => undefined);
    expect(gate.goOn('x')).toBeUndefined();
    first.finish();
  });
});
