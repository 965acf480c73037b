import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/store/database.js';
import { JobStore } from '../../src/store/jobs.js';
import type { SubmitInput } from '../../src/queue/types.js';
import { params, tempDataDir } from './helpers.js';

const fixture = fileURLToPath(new URL('./fixtures/queue-process.ts', import.meta.url));

interface Run {
  child: ChildProcess;
  events: Record<string, unknown>[];
  waitFor(predicate: (event: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children: ChildProcess[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function start(dataDir: string, sink: string, jobsFile?: string, msPerStep = 20, batchImages = 1): Run {
  const args = ['--import', 'tsx', fixture, dataDir, sink, ...(jobsFile === undefined ? [] : [jobsFile])];
  const env = { ...process.env, MS_PER_STEP: String(msPerStep), BATCH_IMAGES: String(batchImages) };
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const events: Record<string, unknown>[] = [];
  const waiters: { predicate: (e: Record<string, unknown>) => boolean; resolve: (e: Record<string, unknown>) => void }[] = [];
  let buffer = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let newline: number;
    while ((newline = buffer.indexOf('\n')) !== -1) {
      const event = JSON.parse(buffer.slice(0, newline)) as Record<string, unknown>;
      buffer = buffer.slice(newline + 1);
      events.push(event);
      for (const waiter of [...waiters]) {
        if (waiter.predicate(event)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(event);
        }
      }
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    events,
    exited,
    waitFor(predicate, timeoutMs = 60_000) {
      const seen = events.find(predicate);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`Timed out; events so far: ${JSON.stringify(events)}\nstderr: ${stderr}`)),
          timeoutMs,
        );
        waiters.push({ predicate, resolve: (event) => (clearTimeout(timer), resolve(event)) });
        void exited.then(({ code, signal }) => {
          clearTimeout(timer);
          reject(new Error(`Process exited (${code ?? signal}) before the event; events: ${JSON.stringify(events.slice(-5))} stderr: ${stderr}`));
        });
      });
    },
  };
}

function posted(sink: string): string[] {
  if (!fs.existsSync(sink)) return [];
  return fs
    .readFileSync(sink, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => (JSON.parse(line) as { prompt: string }).prompt);
}

function jobsFile(dir: string, prompts: [string, number][]): string {
  const file = path.join(dir, 'jobs.json');
  const inputs: SubmitInput[] = prompts.map(([prompt, steps], i) => ({
    guildId: 'g',
    channelId: 'c',
    userId: `u${i}`,
    params: params(prompt, { steps }),
  }));
  fs.writeFileSync(file, JSON.stringify(inputs));
  return file;
}

describe('crash safety (a real process, SIGKILL)', () => {
  it('GIVEN a kill mid-generation and mid-delivery THEN the next start delivers every job exactly once', async () => {
    const dir = tempDataDir();
    dirs.push(dir);
    const dataDir = path.join(dir, 'data');
    const sink = path.join(dir, 'posts.jsonl');
    const file = jobsFile(dir, [
      ['one', 3],
      ['hang-before-post', 3],
      ['hang-after-post', 3],
      ['slow', 100_000],
      ['five', 3],
    ]);

    const first = start(dataDir, sink, file);
    await first.waitFor((e) => e.event === 'delivered' && e.prompt === 'one');
    await first.waitFor((e) => e.event === 'hanging-before-post');
    await first.waitFor((e) => e.event === 'hanging-after-post');
    await first.waitFor((e) => e.event === 'progress' && e.prompt === 'slow' && (e.step as number) >= 3);
    first.child.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    expect(posted(sink)).toEqual(['one', 'hang-after-post']);

    // Second start, with 1 ms steps so the deliveries and reruns happen quickly.
    const second = start(dataDir, sink, undefined, 1);
    const resumed = await second.waitFor((e) => e.event === 'resumed');
    expect(resumed).toMatchObject({ queued: 1, rerun: 1, failed: 0, redelivering: 2 });
    // "slow" has 100 000 steps: it is rerun (attempt 2), and killed again below.
    await second.waitFor((e) => e.event === 'started' && e.prompt === 'slow');
    expect(second.events.find((e) => e.event === 'started' && e.prompt === 'slow')).toMatchObject({ attempts: 2 });
    await second.waitFor((e) => e.event === 'found-existing-post' && e.prompt === 'hang-after-post');
    await second.waitFor((e) => e.event === 'delivered' && e.prompt === 'hang-before-post');
    // Images made before the crash were delivered from the saved PNGs, not made again.
    const generated = second.events.filter((e) => e.event === 'generate').map((e) => e.prompt);
    expect(generated).not.toContain('hang-before-post');
    expect(generated).not.toContain('hang-after-post');
    second.child.kill('SIGKILL');
    await second.exited;

    // The slow job was interrupted twice now: the third start fails it instead of looping, and runs "five".
    const third = start(dataDir, sink, undefined, 1);
    expect(await third.waitFor((e) => e.event === 'resumed')).toMatchObject({ queued: 1, rerun: 0, failed: 1 });
    await third.waitFor((e) => e.event === 'idle');
    expect((await third.exited).code).toBe(0);

    expect([...posted(sink)].sort()).toEqual(['five', 'hang-after-post', 'hang-before-post', 'one']);
    const db = openDatabase({ dataDir });
    const jobs = new JobStore(db);
    const states = Object.fromEntries(
      jobs.listByState('done', 'failed', 'queued', 'running', 'delivering').map((j) => [j.params.prompt, [j.state, j.attempts]]),
    );
    db.close();
    expect(states).toEqual({
      one: ['done', 1],
      'hang-before-post': ['done', 1],
      'hang-after-post': ['done', 1],
      slow: ['failed', 2],
      five: ['done', 1],
    });
    expect(fs.readdirSync(path.join(dataDir, 'results'))).toEqual([]);

    // A fourth start posts nothing again.
    const fourth = start(dataDir, sink);
    expect(await fourth.waitFor((e) => e.event === 'resumed')).toMatchObject({ queued: 0, rerun: 0, failed: 0, redelivering: 0 });
    await fourth.exited;
    expect(posted(sink)).toHaveLength(4);
  });

  it('GIVEN SIGTERM mid-generation THEN it exits 0, the job keeps its place unfailed, and the next start finishes it', async () => {
    const dir = tempDataDir();
    dirs.push(dir);
    const dataDir = path.join(dir, 'data');
    const sink = path.join(dir, 'posts.jsonl');
    const file = jobsFile(dir, [
      ['long', 200],
      ['next', 3],
    ]);
    const first = start(dataDir, sink, file, 20);
    await first.waitFor((e) => e.event === 'progress' && e.prompt === 'long' && (e.step as number) >= 2);
    first.child.kill('SIGTERM');
    const shutdown = await first.waitFor((e) => e.event === 'shutdown');
    expect(shutdown).toEqual({ event: 'shutdown', waiting: ['long', 'next'], requeued: 1 });
    expect((await first.exited).code).toBe(0);

    const second = start(dataDir, sink, undefined, 1);
    expect(await second.waitFor((e) => e.event === 'resumed')).toMatchObject({ queued: 2, rerun: 0 });
    await second.waitFor((e) => e.event === 'idle');
    // A graceful stop does not count as an attempt.
    expect(second.events.find((e) => e.event === 'started' && e.prompt === 'long')).toMatchObject({ attempts: 1 });
    expect(second.events.filter((e) => e.event === 'started').map((e) => e.prompt)).toEqual(['long', 'next']);
    expect(posted(sink)).toEqual(['long', 'next']);
  });

  it('GIVEN a kill mid-batch THEN every job of the batch runs once more, batched again, and is delivered exactly once', async () => {
    const dir = tempDataDir();
    dirs.push(dir);
    const dataDir = path.join(dir, 'data');
    const sink = path.join(dir, 'posts.jsonl');
    const file = jobsFile(dir, [
      ['b-one', 300],
      ['b-two', 300],
      ['b-three', 300],
      ['b-four', 300],
    ]);
    const first = start(dataDir, sink, file, 20, 4);
    for (const prompt of ['b-one', 'b-two', 'b-three', 'b-four']) {
      await first.waitFor((e) => e.event === 'progress' && e.prompt === prompt && (e.step as number) >= 2);
    }
    first.child.kill('SIGKILL');
    await first.exited;
    expect(posted(sink)).toEqual([]);

    const second = start(dataDir, sink, undefined, 1, 4);
    expect(await second.waitFor((e) => e.event === 'resumed')).toMatchObject({ queued: 0, rerun: 4, failed: 0 });
    const idle = await second.waitFor((e) => e.event === 'idle');
    expect(idle.runs).toEqual([4]);
    const started = second.events.filter((e) => e.event === 'started');
    expect(started.map((e) => e.attempts)).toEqual([2, 2, 2, 2]);
    expect([...posted(sink)].sort()).toEqual(['b-four', 'b-one', 'b-three', 'b-two']);
    const db = openDatabase({ dataDir });
    const states = new JobStore(db).listByState('done', 'failed', 'queued', 'running', 'delivering').map((j) => [j.state, j.attempts]);
    db.close();
    expect(states).toEqual(Array.from({ length: 4 }, () => ['done', 2]));
  });
});
