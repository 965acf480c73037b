import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { Identifiers, UserError, isUserError } from '../../src/errors.js';
import { readMeta } from '../../src/store/database.js';
import { makeQueue, nextEvent, params, record, type Harness } from './helpers.js';

const harnesses: Harness[] = [];
async function harness(options: Parameters<typeof makeQueue>[0] = {}): Promise<Harness> {
  const h = await makeQueue(options);
  harnesses.push(h);
  await h.queue.resume();
  return h;
}
afterEach(async () => {
  for (const h of harnesses.splice(0)) {
    if (h.db.open) await h.queue.shutdown({ deliveryGraceMs: 100 });
    await h.close();
    fs.rmSync(h.dataDir, { recursive: true, force: true });
  }
});

function submit(h: Harness, userId: string, prompt: string, extra: Partial<Parameters<Harness['queue']['submit']>[0]> = {}) {
  return h.queue.submit({ guildId: 'g1', channelId: 'c1', userId, params: params(prompt), ...extra });
}

function refusal(fn: () => unknown): UserError {
  try {
    fn();
  } catch (error) {
    if (isUserError(error)) return error;
    throw error;
  }
  throw new Error('expected a UserError');
}

function jobCount(h: Harness): number {
  return (h.db.prepare('SELECT COUNT(*) AS n FROM jobs').get() as { n: number }).n;
}

describe('FairQueue', () => {
  it('GIVEN three members, one flooding THEN jobs run interleaved and every one is delivered once', async () => {
    const h = await harness({ memberCap: 10 });
    const started = nextEvent(h.queue.events, 'started');
    submit(h, 'a', 'a1', { params: params('a1', { steps: 30 }) });
    await started;
    for (let n = 2; n <= 10; n++) submit(h, 'a', `a${n}`);
    submit(h, 'b', 'b1');
    submit(h, 'c', 'c1');
    submit(h, 'b', 'b2');
    submit(h, 'c', 'c2');

    const snapshot = h.queue.snapshot();
    expect(snapshot.running.map((v) => v.job.params.prompt)).toEqual(['a1']);
    expect(snapshot.waiting.map((v) => [v.job.params.prompt, v.position.place])).toEqual(
      ['b1', 'c1', 'a2', 'b2', 'c2', 'a3', 'a4', 'a5', 'a6', 'a7', 'a8', 'a9', 'a10'].map((p, i) => [p, i + 1]),
    );
    expect(snapshot.totals).toEqual({ waiting: 13, running: 1, delivering: 0, members: 3 });

    await h.queue.onIdle();
    expect(h.ran).toEqual(['a1', 'b1', 'c1', 'a2', 'b2', 'c2', 'a3', 'a4', 'a5', 'a6', 'a7', 'a8', 'a9', 'a10']);
    expect(h.delivered.map((d) => d.job.params.prompt).sort()).toEqual([...h.ran].sort());
    for (const d of h.delivered) {
      expect(h.queue.get(d.job.id)).toMatchObject({ state: 'done', attempts: 1, deliveryAttempts: 1 });
      const meta = await sharp(Buffer.from(d.result.images[0])).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['png', 32, 32]);
      expect(d.context).toMatchObject({ attempt: 1, mayHaveBeenDelivered: false, recovered: false });
    }
    // Delivered PNGs do not pile up on disk.
    expect(fs.readdirSync(path.join(h.dataDir, 'results'))).toEqual([]);
  });

  it('GIVEN a member over their cap or a full queue THEN one clear refusal and nothing is written', async () => {
    const h = await harness({ memberCap: (guildId) => (guildId === 'strict' ? 1 : 2), globalCap: 3, engine: { msPerStep: 20 } });
    const started = nextEvent(h.queue.events, 'started');
    submit(h, 'a', 'a1', { params: params('a1', { steps: 10_000 }) });
    await started;
    submit(h, 'a', 'a2');
    submit(h, 'a', 'a3');
    const before = jobCount(h);
    const member = refusal(() => submit(h, 'a', 'a4'));
    expect(member.identifier).toBe(Identifiers.MemberQueueFull);
    expect(member.message).toMatch(/already have 2 images waiting, the most this server allows \(2\)/);

    h.queue.submit({ guildId: 'strict', channelId: 'c', userId: 's', params: params('s1') });
    const strict = refusal(() => h.queue.submit({ guildId: 'strict', channelId: 'c', userId: 's', params: params('s2') }));
    expect(strict.message).toMatch(/the most this server allows \(1\)/);

    const full = refusal(() => submit(h, 'b', 'b1'));
    expect(full.identifier).toBe(Identifiers.QueueFull);
    expect(full.message).toMatch(/queue is full \(3 images waiting\)/);
    expect(jobCount(h)).toBe(before + 1);
    // Running jobs do not count against the member's waiting cap.
    expect(h.queue.snapshot().totals).toMatchObject({ waiting: 3, running: 1 });
  });

  it('GIVEN jobs of several pictures THEN each weighs its count against the member cap and the global cap', async () => {
    const h = await harness({ memberCap: 4, globalCap: 6, engine: { msPerStep: 20 } });
    const started = nextEvent(h.queue.events, 'started');
    submit(h, 'x', 'blocker', { params: params('blocker', { steps: 10_000 }) });
    await started;
    // A member with nothing waiting may queue one request of any count; a count-4 job then weighs 4.
    submit(h, 'a', 'a4', { params: params('a4', { count: 4 }) });
    const before = jobCount(h);
    const one = refusal(() => submit(h, 'a', 'a1'));
    expect(one.identifier).toBe(Identifiers.MemberQueueFull);
    expect(one.message).toMatch(/already have 4 images waiting, the most this server allows \(4\)/);
    // Two waiting pictures and a request for three: named, refused.
    submit(h, 'b', 'b2', { params: params('b2', { count: 2 }) });
    const three = refusal(() => submit(h, 'b', 'b3', { params: params('b3', { count: 3 }) }));
    expect(three.identifier).toBe(Identifiers.MemberQueueFull);
    expect(three.message).toBe(
      'You already have 2 images waiting; 3 more would make 5, over the 4 this server allows. Ask for fewer pictures, wait for one to start, or cancel one with ❌.',
    );
    // A V (or U, or 🔁) takes the original's count: the member cannot ask for fewer, so is not told to.
    const variation = refusal(() => submit(h, 'b', 'b3v', { params: params('b3v', { count: 3 }), kind: 'variation' }));
    expect(variation.message).toBe('You already have 2 images waiting; 3 more would make 5, over the 4 this server allows. Wait for one to start, or cancel one with ❌.');
    // 6 pictures wait (4 + 2), the global cap: a newcomer's count 2 does not fit; the queue says how much would.
    const full = refusal(() => submit(h, 'c', 'c2', { params: params('c2', { count: 2 }) }));
    expect(full.identifier).toBe(Identifiers.QueueFull);
    expect(full.message).toMatch(/queue is full \(6 images waiting\)/);
    expect(jobCount(h)).toBe(before + 1);
    h.queue.cancel(h.queue.snapshot().waiting.find((v) => v.job.params.prompt === 'b2')!.job.id);
    const room = refusal(() => submit(h, 'c', 'c3', { params: params('c3', { count: 3 }) }));
    expect(room.message).toBe('The queue has room for 2 more images, and you asked for 3. Ask for fewer, or try again in a few minutes.');
    const roomForReroll = refusal(() => submit(h, 'c', 'c3r', { params: params('c3r', { count: 3 }), kind: 'reroll' }));
    expect(roomForReroll.message).toBe('The queue has room for 2 more images, and you asked for 3. Try again in a few minutes.');
    submit(h, 'c', 'c2', { params: params('c2', { count: 2 }) });
    expect(h.queue.snapshot().totals).toMatchObject({ waiting: 2, running: 1 });
  });

  it('GIVEN a job over the timeout THEN it is stopped, failed with a clear message, and the next job runs', async () => {
    const h = await harness({ jobTimeoutMs: 300, engine: { msPerStep: 5 } });
    const progress = record(h.queue.events, 'progress');
    const failed = nextEvent(h.queue.events, 'failed');
    const slow = submit(h, 'a', 'slow', { params: params('slow', { steps: 100_000 }) }).job;
    const quick = submit(h, 'b', 'quick').job;
    const failure = await failed;
    expect(failure.job.id).toBe(slow.id);
    expect(failure.identifier).toBe(Identifiers.Timeout);
    expect(failure.error).toBe('This image took longer than the 300 ms limit and was stopped.');
    await h.queue.onIdle();
    expect(h.queue.get(slow.id)).toMatchObject({ state: 'failed', errorCode: 'timeout' });
    expect(h.queue.get(quick.id)?.state).toBe('done');
    const slowSteps = progress.filter((p) => p.job.id === slow.id).map((p) => p.progress.step);
    expect(Math.max(...slowSteps)).toBeLessThan(1000); // it stopped at a step, not at the end
  });

  it('GIVEN cancels THEN a waiting job is removed, a running one stops at its next step, the next job runs', async () => {
    const h = await harness({ engine: { msPerStep: 10 } });
    const started = nextEvent(h.queue.events, 'started');
    const running = submit(h, 'a', 'running', { params: params('running', { steps: 100_000 }) }).job;
    await started;
    const waiting = submit(h, 'b', 'waiting').job;
    const after = submit(h, 'c', 'after').job;
    const cancelled = record(h.queue.events, 'cancelled');
    const positions = record(h.queue.events, 'position');

    expect(h.queue.cancel(waiting.id, 'b')).toBe('cancelled');
    expect(h.queue.get(waiting.id)).toMatchObject({ state: 'cancelled', cancelledBy: 'b', error: 'Cancelled.' });
    // The job behind it moved up and was told.
    expect(positions.map((p) => [p.job.id, p.position.place])).toEqual([[after.id, 1]]);

    const stopped = nextEvent(h.queue.events, 'cancelled', (p) => p.job.id === running.id);
    expect(h.queue.cancel(running.id, 'moderator')).toBe('stopping');
    expect((await stopped).job).toMatchObject({ state: 'cancelled', error: 'Cancelled by <@moderator>.' });
    expect(h.queue.cancel(running.id)).toBe('finished');
    expect(h.queue.cancel('no-such-job')).toBe('not-found');

    await h.queue.onIdle();
    expect(h.ran).toEqual(['running', 'after']);
    expect(cancelled.map((c) => c.by)).toEqual(['b', 'moderator']);
    expect(h.queue.get(after.id)?.state).toBe('done');
    expect(h.delivered.map((d) => d.job.id)).toEqual([after.id]);
  });

  it('GIVEN the engine fails THEN the member gets its UserError message, or a short apology for a bug', async () => {
    const h = await harness({
      engine: {
        failWith: (p) =>
          p.prompt === 'user'
            ? new UserError(Identifiers.InvalidInput, 'That size does not fit this model.')
            : p.prompt === 'bug'
              ? new Error('tensor shape mismatch')
              : undefined,
      },
    });
    const failures = record(h.queue.events, 'failed');
    submit(h, 'a', 'user');
    submit(h, 'b', 'bug');
    submit(h, 'c', 'fine');
    await h.queue.onIdle();
    expect(failures.map((f) => [f.job.params.prompt, f.error, f.identifier])).toEqual([
      ['user', 'That size does not fit this model.', 'invalidInput'],
      ['bug', 'Sorry, something went wrong while making this image.', undefined],
    ]);
    expect(h.logs.some((l) => l.level === 'error' && String(l.context?.error).includes('tensor shape mismatch'))).toBe(true);
    expect(h.delivered.map((d) => d.job.params.prompt)).toEqual(['fine']);
  });

  it('GIVEN a delivery that fails once THEN it is retried, flagged as maybe delivered, and done once', async () => {
    let calls = 0;
    const contexts: unknown[] = [];
    const h = await harness({
      deliver: async (_job, _result, context) => {
        contexts.push({ ...context, signal: undefined });
        if (++calls === 1) throw new Error('503 from Discord');
        return { messageId: 'final-message' };
      },
    });
    const { job } = submit(h, 'a', 'retry me');
    const delivered = nextEvent(h.queue.events, 'delivered');
    expect((await delivered).messageId).toBe('final-message');
    await h.queue.onIdle();
    expect(contexts).toEqual([
      { attempt: 1, mayHaveBeenDelivered: false, recovered: false, signal: undefined },
      { attempt: 2, mayHaveBeenDelivered: true, recovered: false, signal: undefined },
    ]);
    expect(h.queue.get(job.id)).toMatchObject({ state: 'done', resultMessageId: 'final-message', deliveryAttempts: 2 });
    expect(h.queue.findByMessageId('final-message')?.id).toBe(job.id);
  });

  it('GIVEN a delivery refused with a UserError THEN it is not retried and the job fails with that message', async () => {
    let calls = 0;
    const h = await harness({
      deliver: async () => {
        calls++;
        throw new UserError(Identifiers.NotAllowed, 'I cannot post in that channel any more.');
      },
    });
    const { job } = submit(h, 'a', 'nowhere');
    await h.queue.onIdle();
    expect(calls).toBe(1);
    expect(h.queue.get(job.id)).toMatchObject({ state: 'failed', error: 'I cannot post in that channel any more.' });
    expect(fs.readdirSync(path.join(h.dataDir, 'results'))).toEqual([]);
  });

  it('gives ETAs from the measured ms per step and the work ahead, and keeps the measurement', async () => {
    const h = await harness({ initialMsPerStep: 100, referencePixels: 32 * 32, engine: { msPerStep: 20 } });
    const started = nextEvent(h.queue.events, 'started');
    const running = submit(h, 'a', 'r', { params: params('r', { steps: 10 }) }).job;
    await started;
    const w1 = submit(h, 'b', 'w1', { params: params('w1', { steps: 20 }) });
    const w2 = submit(h, 'c', 'w2', { params: params('w2', { steps: 10, width: 64, height: 32, count: 2 }) });
    expect(w1.position.place).toBe(1);
    expect(w1.position.startsInMs).toBeGreaterThan(0);
    expect(w1.position.startsInMs).toBeLessThanOrEqual(1000); // at most the running job's 10 steps × 100 ms
    expect(w1.position.doneInMs - w1.position.startsInMs).toBe(2000);
    const p2 = h.queue.position(w2.job.id)!;
    expect(p2.place).toBe(2);
    expect(Math.abs(p2.startsInMs - w1.position.doneInMs)).toBeLessThanOrEqual(1);
    // Twice the pixels, two images: 4× the work of a 10-step reference job.
    expect(p2.doneInMs - p2.startsInMs).toBe(4000);
    expect(h.queue.position(running.id)).toMatchObject({ place: 0, startsInMs: 0 });

    await h.queue.onIdle();
    const measured = h.queue.snapshot().msPerStep;
    expect(measured).not.toBe(100);
    expect(measured).toBeGreaterThan(0);
    expect(readMeta<number>(h.db, 'queue.msPerStep')).toBe(measured);
  });

  it('GIVEN two workers THEN two jobs run at once and a waiting job goes to the lane that frees first', async () => {
    const h = await harness({ concurrency: 2, initialMsPerStep: 100, referencePixels: 32 * 32, engine: { msPerStep: 20 } });
    const both = new Promise<void>((resolve) => {
      let n = 0;
      h.queue.events.on('started', () => ++n === 2 && resolve());
    });
    submit(h, 'a', 'long', { params: params('long', { steps: 40 }) });
    submit(h, 'b', 'short', { params: params('short', { steps: 10 }) });
    await both;
    expect(h.queue.snapshot().totals.running).toBe(2);
    const w = submit(h, 'c', 'w', { params: params('w', { steps: 5 }) });
    expect(w.position.startsInMs).toBeLessThanOrEqual(1000); // behind "short", not "long"
    await h.queue.onIdle();
    expect(h.delivered).toHaveLength(3);
  });

  it('finds jobs by the message that shows them', async () => {
    const h = await harness();
    const { job } = submit(h, 'a', 'shown', { interaction: { applicationId: 'app', token: 't', createdAt: 1 } });
    h.queue.setMessageId(job.id, 'reply-1');
    expect(h.queue.findByMessageId('reply-1')).toMatchObject({ id: job.id, interaction: { token: 't' } });
    expect(() => h.queue.setMessageId('missing', 'x')).toThrow(/No job missing/);
    await h.queue.onIdle();
    expect(h.delivered[0].job.messageId).toBe('reply-1');
  });

  it('GIVEN submit before resume or nonsense params THEN it is refused and nothing is written', async () => {
    const h = await makeQueue();
    harnesses.push(h);
    const early = refusal(() => submit(h, 'a', 'x'));
    expect([early.identifier, early.message]).toEqual([
      Identifiers.ShuttingDown,
      'The bot is starting up and not taking images yet. Try again in a few seconds.',
    ]);
    await h.queue.resume();
    expect(() => submit(h, 'a', 'x', { params: params('x', { steps: 0 }) })).toThrow(/`params.steps` to be a positive integer/);
    expect(jobCount(h)).toBe(0);
  });
});
