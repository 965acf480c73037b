import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Identifiers, isUserError } from '../../src/errors.js';
import { JobStore } from '../../src/store/jobs.js';
import { ResultFiles } from '../../src/store/results.js';
import { StandInEngine } from '../../src/diffusion/engine/stand-in.js';
import { makeQueue, nextEvent, params, record, tempDataDir, type Harness } from './helpers.js';

const dirs: string[] = [];
const harnesses: Harness[] = [];
afterEach(async () => {
  for (const h of harnesses.splice(0)) {
    if (h.db.open) {
      await h.queue.shutdown({ deliveryGraceMs: 100 });
      await h.close();
    }
  }
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

async function open(dataDir: string, options: Parameters<typeof makeQueue>[0] = {}): Promise<Harness> {
  const h = await makeQueue({ dataDir, ...options });
  harnesses.push(h);
  return h;
}

function input(userId: string, prompt: string, steps = 3) {
  return { guildId: 'g', channelId: 'c', userId, params: params(prompt, { steps }) };
}

describe('restart', () => {
  it('GIVEN a graceful shutdown mid-run THEN the running job is put back unfailed, new jobs are refused, and the next start runs all in order', async () => {
    const dataDir = tempDataDir();
    dirs.push(dataDir);
    const first = await open(dataDir, { engine: { msPerStep: 20 }, memberCap: 5 });
    await first.queue.resume();
    const started = nextEvent(first.queue.events, 'started');
    first.queue.submit(input('a', 'a1', 1000));
    await started;
    first.queue.submit(input('a', 'a2'));
    first.queue.submit(input('b', 'b1'));
    const requeued = record(first.queue.events, 'requeued');
    const shutdownEvent = nextEvent(first.queue.events, 'shutdown');
    const report = await first.queue.shutdown();
    expect(report.requeued).toBe(1);
    expect(report.waiting.map((j) => j.params.prompt)).toEqual(['a1', 'a2', 'b1']);
    expect((await shutdownEvent).waiting).toHaveLength(3);
    expect(requeued.map((r) => [r.job.params.prompt, r.reason, r.job.attempts])).toEqual([['a1', 'shutdown', 0]]);
    let refused: unknown;
    try {
      first.queue.submit(input('c', 'c1'));
    } catch (error) {
      refused = error;
    }
    expect(isUserError(refused) && refused.identifier).toBe(Identifiers.ShuttingDown);
    expect(new JobStore(first.db).listByState('queued').map((j) => [j.params.prompt, j.attempts])).toEqual([
      ['a1', 0],
      ['a2', 0],
      ['b1', 0],
    ]);
    await first.close();

    const second = await open(dataDir, { engine: { msPerStep: 1 } });
    expect(await second.queue.resume()).toEqual({ queued: 3, rerun: 0, failed: 0, redelivering: 0 });
    await second.queue.onIdle();
    expect(second.ran).toEqual(['a1', 'b1', 'a2']);
    expect(second.delivered).toHaveLength(3);
  });

  it('GIVEN the journal after a crash THEN interrupted runs go first, saved images are delivered without generating, lost ones fail, done ones stay done', async () => {
    const dataDir = tempDataDir();
    dirs.push(dataDir);
    const seed = await open(dataDir);
    const jobs = new JobStore(seed.db);
    const results = new ResultFiles(path.join(dataDir, 'results'));
    const engine = new StandInEngine();
    let n = 0;
    const make = (prompt: string) =>
      jobs.insert({
        id: `JOB${++n}`,
        guildId: 'g',
        channelId: 'c',
        userId: `u${n}`,
        kind: 'imagine',
        params: params(prompt),
        state: 'queued',
        attempts: 0,
        deliveryAttempts: 0,
        deliveryKey: `JOB${n}`,
        createdAt: n,
      });
    const queued = make('queued');
    const interrupted = make('interrupted');
    jobs.markRunning(interrupted.id, 10);
    const saved = make('saved');
    jobs.markRunning(saved.id, 11);
    const image = await engine.generate(saved.params);
    await results.save(saved.id, image.images);
    const { images, ...meta } = image;
    jobs.markDelivering(saved.id, { ...meta, imageCount: images.length });
    jobs.beginDelivery(saved.id);
    const lost = make('lost');
    jobs.markRunning(lost.id, 12);
    jobs.markDelivering(lost.id, { ...meta, imageCount: 1 });
    const done = make('done');
    jobs.markRunning(done.id, 13);
    jobs.markDelivering(done.id, { ...meta, imageCount: 1 });
    jobs.markDone(done.id, 'posted', 14);
    await results.save(done.id, images); // an orphan: delivered, but its file outlived a crash
    await seed.close();

    const h = await open(dataDir);
    const failed = record(h.queue.events, 'failed');
    expect(await h.queue.resume()).toEqual({ queued: 1, rerun: 1, failed: 1, redelivering: 1 });
    await h.queue.onIdle();
    expect(h.ran).toEqual(['interrupted', 'queued']);
    expect(failed.map((f) => [f.job.params.prompt, f.error])).toEqual([
      ['lost', 'The finished image was lost in a restart. Please ask again.'],
    ]);
    const recovered = h.delivered.find((d) => d.job.id === saved.id)!;
    expect(recovered.context).toMatchObject({ recovered: true, mayHaveBeenDelivered: true, attempt: 2 });
    expect(Buffer.from(recovered.result.images[0]).equals(Buffer.from(images[0]))).toBe(true);
    expect(h.delivered.map((d) => d.job.params.prompt).sort()).toEqual(['interrupted', 'queued', 'saved']);
    expect(h.queue.get(done.id)).toMatchObject({ state: 'done', resultMessageId: 'posted' });
    expect(h.queue.get(interrupted.id)).toMatchObject({ state: 'done', attempts: 2 });
    expect(fs.readdirSync(path.join(dataDir, 'results'))).toEqual([]);
  });

  it('GIVEN an img2img job waiting when the bot stops THEN the next start runs it from the same picture, kept beside the job (never in its params)', async () => {
    const dataDir = tempDataDir();
    dirs.push(dataDir);
    const picture = new Uint8Array(await (await import('sharp')).default({ create: { width: 8, height: 8, channels: 3, background: '#f00' } }).png().toBuffer());
    const first = await open(dataDir, { engine: { msPerStep: 20 } });
    await first.queue.resume();
    const started = nextEvent(first.queue.events, 'started');
    first.queue.submit(input('a', 'blocker', 1000));
    await started;
    const { job } = first.queue.submit({ ...input('b', 'from a picture', 4), params: params('from a picture', { steps: 4, strength: 0.5 }), initImage: picture });
    expect(() => first.queue.submit({ ...input('c', 'bytes in params'), params: params('x', { initImage: picture, strength: 0.5 }) })).toThrow(/SubmitInput.initImage/);
    await first.queue.shutdown();
    const row = first.db.prepare('SELECT params FROM jobs WHERE id = ?').get(job.id) as { params: string };
    expect(JSON.parse(row.params)).toEqual({ ...params('from a picture', { steps: 4 }), strength: 0.5 });
    await first.close();

    const seen: (Uint8Array | undefined)[] = [];
    const second = await open(dataDir, { engine: { msPerStep: 1, onGenerate: (p) => seen.push(p.initImage) } });
    await second.queue.resume();
    await second.queue.onIdle();
    expect(seen).toHaveLength(2); // the blocker again, then the img2img job
    expect(seen[1]).toEqual(picture);
    expect(second.delivered.find((d) => d.job.id === job.id)?.result.strength).toBe(0.5);
  });
});
