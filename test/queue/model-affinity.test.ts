/**
 * The queue prefers a job whose model is loaded (issue 12), within a bounded delay for the jobs it passes over:
 * the pure rule (model-affinity.ts), then the FairQueue with an engine that holds one model at a time.
 */
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import type { GenerateParams, ImageEngine } from '../../src/diffusion/types.js';
import { MAX_PASSES, preferredStart } from '../../src/queue/model-affinity.js';
import { makeQueue, nextEvent, params, type Harness } from './helpers.js';

describe('preferredStart', () => {
  const job = (loaded: boolean, passes = 0) => ({ loaded, passes });

  it('GIVEN the head’s model is loaded THEN the head starts', () => {
    expect(preferredStart([job(true), job(true)])).toBe(0);
  });

  it('GIVEN the head’s model is not loaded THEN the first job in fair order whose model is loaded starts', () => {
    expect(preferredStart([job(false), job(false), job(true), job(true)])).toBe(2);
  });

  it('GIVEN no loaded model, or nothing waiting THEN the head (0)', () => {
    expect(preferredStart([job(false), job(false)])).toBe(0);
    expect(preferredStart([])).toBe(0);
  });

  it('GIVEN a job it would pass over has been passed over MAX_PASSES times THEN the head starts', () => {
    expect(MAX_PASSES).toBe(1);
    expect(preferredStart([job(false, 1), job(true)])).toBe(0);
    expect(preferredStart([job(false), job(false, 1), job(true)])).toBe(0);
    expect(preferredStart([job(false, 1), job(true)], 2)).toBe(1);
  });
});

describe('FairQueue with an engine that holds one model at a time', () => {
  const harnesses: Harness[] = [];
  afterEach(async () => {
    for (const h of harnesses.splice(0)) {
      if (h.db.open) await h.queue.shutdown({ deliveryGraceMs: 100 });
      await h.close();
      fs.rmSync(h.dataDir, { recursive: true, force: true });
    }
  });

  /**
   * A queue whose engine reports the last model it ran as the one loaded (a worker with room for one model);
   * `loads` counts the model switches. `affinity: false` leaves `modelLoaded` out (the fair order alone).
   */
  async function harness(affinity: boolean) {
    let loaded = 'x';
    let loads = 0;
    const h = await makeQueue({
      engine: {
        msPerStep: 2,
        onGenerate: (p: GenerateParams) => {
          const model = p.model ?? 'x';
          if (model !== loaded) loads++;
          loaded = model;
        },
      },
    });
    harnesses.push(h);
    if (affinity) (h.engine as ImageEngine).modelLoaded = (model) => (model ?? 'x') === loaded;
    // This onGenerate replaces the harness's recorder of `ran`: the started events give the order instead.
    const ran: string[] = [];
    h.queue.events.on('started', ({ job }) => ran.push(job.params.prompt));
    await h.queue.resume();
    return { h, ran, loads: () => loads };
  }

  const submit = (h: Harness, userId: string, prompt: string, model?: string, steps = 4) =>
    h.queue.submit({ guildId: 'g1', channelId: 'c1', userId, params: params(prompt, { steps, ...(model ? { model } : {}) }) });

  /** A long job of member `a` on the default model, then the others while it runs. */
  async function scenario(h: Harness, jobs: [user: string, prompt: string, model?: string][]) {
    const started = nextEvent(h.queue.events, 'started');
    submit(h, 'a', 'a1', undefined, 40);
    await started;
    for (const [user, prompt, model] of jobs) submit(h, user, prompt, model);
    await h.queue.onIdle();
  }

  const alternating: [string, string, string?][] = [
    ['b', 'b1', 'y'],
    ['c', 'c1'],
    ['b', 'b2', 'y'],
    ['c', 'c2'],
  ];

  it('GIVEN members alternating two models THEN a job for the loaded model starts first and the engine switches models less often', async () => {
    const fair = await harness(false);
    await scenario(fair.h, alternating);
    expect(fair.ran).toEqual(['a1', 'b1', 'c1', 'b2', 'c2']);
    expect(fair.loads()).toBe(4);

    const preferring = await harness(true);
    await scenario(preferring.h, alternating);
    // c1 (model x, loaded) passes b1 once; b1 then starts (it may not be passed twice) and loads y, so b2 follows.
    expect(preferring.ran).toEqual(['a1', 'c1', 'b1', 'b2', 'c2']);
    expect(preferring.loads()).toBe(2);
    expect(preferring.h.delivered).toHaveLength(5);
  });

  it('GIVEN many jobs for the loaded model and one that needs a load THEN that one starts at most MAX_PASSES runs later than in fair order', async () => {
    const flood: [string, string, string?][] = [['b', 'b1', 'y'], ...['c', 'd', 'e', 'f'].flatMap((u) => [[u, `${u}1`], [u, `${u}2`]] as [string, string][])];
    const fair = await harness(false);
    await scenario(fair.h, flood);
    const preferring = await harness(true);
    await scenario(preferring.h, flood);
    expect(fair.ran.indexOf('b1')).toBe(1);
    expect(preferring.ran.indexOf('b1')).toBe(1 + MAX_PASSES);
    // Every member still gets one turn per round: nobody's second job starts before everyone's first.
    const firsts = preferring.ran.filter((p) => p.endsWith('1')).map((p) => preferring.ran.indexOf(p));
    const seconds = preferring.ran.filter((p) => p.endsWith('2')).map((p) => preferring.ran.indexOf(p));
    expect(Math.max(...firsts)).toBeLessThan(Math.min(...seconds));
  });
});
