/**
 * Load test of the queue: many members submitting through the real FairQueue, journal and result files, with the
 * stand-in engine. Checks that no job is lost or delivered twice, samples memory, and reports the longest wait
 * per member.
 *
 *   tsx tools/bench/load.ts [--jobs 1000] [--members 100] [--guilds 10] [--steps 4] [--ms-per-step 1]
 *                         [--concurrency 1] [--member-cap 2] [--global-cap 100] [--data-dir DIR] [--json]
 *
 * Members behave like people: each wants `jobs / members` images, submits when under the caps, and when refused
 * (their cap or the global one) tries again once a job starts.
 */
import { createLogger } from '../../src/log.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { Identifiers, isUserError } from '../../src/errors.js';
import { FairQueue } from '../../src/queue/fair-queue.js';
import { StandInEngine } from '../../src/diffusion/engine/stand-in.js';
import { openDatabase } from '../../src/store/database.js';
import { JobStore } from '../../src/store/jobs.js';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '1000' },
    members: { type: 'string', default: '100' },
    guilds: { type: 'string', default: '10' },
    steps: { type: 'string', default: '4' },
    'ms-per-step': { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '1' },
    'member-cap': { type: 'string', default: '2' },
    'global-cap': { type: 'string', default: '100' },
    'data-dir': { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});

function integer(name: string, min: number): number {
  const raw = values[name as keyof typeof values] as string;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    console.error(`Expected \`--${name}\` to be an integer ≥ ${min}, got \`${raw}\``);
    process.exit(1);
  }
  return value;
}

const totalJobs = integer('jobs', 1);
const members = integer('members', 1);
const guilds = integer('guilds', 1);
const steps = integer('steps', 1);
const msPerStep = integer('ms-per-step', 0);
const concurrency = integer('concurrency', 1);
const memberCap = integer('member-cap', 1);
const globalCap = integer('global-cap', 1);
const ownDir = values['data-dir'] === undefined;
const dataDir = values['data-dir'] ?? fs.mkdtempSync(path.join(os.tmpdir(), 'imagine-load-'));

const db = openDatabase({ dataDir });
const engine = new StandInEngine({ msPerStep, width: 32, height: 32 });
const deliveries = new Map<string, number>();
const queue = new FairQueue({
  db,
  engine,
  resultsDir: path.join(dataDir, 'results'),
  concurrency,
  memberCap,
  globalCap,
  initialMsPerStep: Math.max(msPerStep, 1),
  deliver: async (job) => {
    deliveries.set(job.id, (deliveries.get(job.id) ?? 0) + 1);
    return { messageId: `m-${job.id}` };
  },
  logger: createLogger({ level: 'warn' }),
});

const acceptedAt = new Map<string, number>();
const waits = new Map<string, number[]>(); // member → ms from accepted to started, per job
const memberOf = new Map<string, string>();
// Refused members wait for a start rather than polling: their own job's start for their cap; for the global cap,
// the next start not already promised to an earlier refused member.
const wakeOnStart = new Map<string, () => void>();
const wakeOnAnyStart: (() => void)[] = []; // first come, first woken: one start frees one place
queue.events.on('started', ({ job }) => {
  const member = memberOf.get(job.id)!;
  waits.get(member)!.push(performance.now() - acceptedAt.get(job.id)!);
  wakeOnStart.get(member)?.();
  wakeOnStart.delete(member);
  wakeOnAnyStart.shift()?.();
});

let peakRss = 0;
let peakHeap = 0;
const sampleMemory = () => {
  const usage = process.memoryUsage();
  peakRss = Math.max(peakRss, usage.rss);
  peakHeap = Math.max(peakHeap, usage.heapUsed);
};
const engine$ = setInterval(sampleMemory, 50);

await queue.resume();
const started = performance.now();
let refusals = 0;
let maxWaiting = 0;

async function member(index: number): Promise<void> {
  const userId = `user${index}`;
  const guildId = `guild${index % guilds}`;
  waits.set(`${guildId}/${userId}`, []);
  const share = Math.floor(totalJobs / members) + (index < totalJobs % members ? 1 : 0);
  // Stagger arrivals over the first few milliseconds, as people do not all press Enter at once.
  await sleep(index % 20);
  for (let n = 0; n < share; ) {
    try {
      const { job } = queue.submit({
        guildId,
        channelId: `channel${index % guilds}`,
        userId,
        params: { prompt: `${userId} image ${n}`, steps, seed: index * 1000 + n, guidanceScale: 0 },
      });
      acceptedAt.set(job.id, performance.now());
      memberOf.set(job.id, `${guildId}/${userId}`);
      maxWaiting = Math.max(maxWaiting, queue.snapshot().totals.waiting);
      n++;
    } catch (error) {
      if (!isUserError(error)) throw error;
      refusals++;
      await new Promise<void>((resolve) => {
        if (error.identifier === Identifiers.MemberQueueFull) wakeOnStart.set(`${guildId}/${userId}`, resolve);
        else wakeOnAnyStart.push(resolve);
      });
    }
  }
}

await Promise.all(Array.from({ length: members }, (_, i) => member(i)));
await queue.onIdle();
const elapsedMs = performance.now() - started;
clearInterval(engine$);
sampleMemory();

const journal = new JobStore(db);
const notDone = journal.listByState('queued', 'running', 'delivering', 'failed', 'cancelled');
const duplicates = [...deliveries.values()].filter((count) => count > 1).length;
const lost = totalJobs - deliveries.size;
const memberMaxWaits = [...waits.entries()].map(([key, list]) => ({ member: key, maxMs: Math.max(...list), jobs: list.length }));
memberMaxWaits.sort((a, b) => a.maxMs - b.maxMs);
const quantile = (q: number) => memberMaxWaits[Math.min(memberMaxWaits.length - 1, Math.floor(q * memberMaxWaits.length))].maxMs;
const worst = memberMaxWaits.at(-1)!;
await queue.shutdown();
db.close();
if (ownDir) fs.rmSync(dataDir, { recursive: true, force: true });

const summary = {
  jobs: totalJobs,
  members,
  guilds,
  concurrency,
  memberCap,
  globalCap,
  delivered: deliveries.size,
  lost,
  duplicates,
  unfinishedInJournal: notDone.length,
  refusalsRetried: refusals,
  maxWaitingSeen: maxWaiting,
  elapsedMs: Math.round(elapsedMs),
  jobsPerSecond: Number(((totalJobs / elapsedMs) * 1000).toFixed(1)),
  longestWaitPerMemberMs: {
    median: Math.round(quantile(0.5)),
    p95: Math.round(quantile(0.95)),
    max: Math.round(worst.maxMs),
    worstMember: worst.member,
  },
  peakRssMiB: Number((peakRss / 2 ** 20).toFixed(1)),
  peakHeapMiB: Number((peakHeap / 2 ** 20).toFixed(1)),
};

if (values.json) {
  console.log(JSON.stringify(summary));
} else {
  console.log(`Load test: ${totalJobs} jobs from ${members} members in ${guilds} guilds, concurrency ${concurrency}`);
  console.log(`  delivered ${summary.delivered}, lost ${lost}, duplicates ${duplicates}, unfinished in journal ${notDone.length}`);
  console.log(`  ${summary.elapsedMs} ms, ${summary.jobsPerSecond} jobs/s; ${refusals} refusals (caps), retried after a start; most waiting at once ${maxWaiting}`);
  console.log(
    `  longest wait per member: median ${summary.longestWaitPerMemberMs.median} ms, p95 ${summary.longestWaitPerMemberMs.p95} ms, ` +
      `max ${summary.longestWaitPerMemberMs.max} ms (${worst.member})`,
  );
  console.log(`  peak RSS ${summary.peakRssMiB} MiB, peak heap ${summary.peakHeapMiB} MiB`);
}
process.exit(lost === 0 && duplicates === 0 && notDone.length === 0 ? 0 : 1);
