/**
 * Soak test of the whole bot: `npm start` (stand-in engine) as its own process against the Discord emulator,
 * with members sending /imagine, /queue, ❌ and 🔁 at random. At the end it checks the journal and the
 * emulator's message store: every accepted job finished exactly once (no job lost, no picture posted twice), no
 * request refused for breaking Discord's limits, and the bot's resident memory over time.
 *
 *   tsx tools/bench/soak.ts [--jobs 1000] [--members 100] [--channels 10] [--seed 1] [--json]
 *
 * --jobs counts accepted /imagine commands; 🔁 adds reroll jobs on top. Takes minutes: reaction calls are paced
 * by Discord's rules (one per 250 ms), and each job adds and removes reactions.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { DiscordEmulator, type InteractionHandle } from '../../src/playground/emulator/index.js';
import { deployCommands } from '../discord-emulator/harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '1000' },
    members: { type: 'string', default: '100' },
    channels: { type: 'string', default: '10' },
    seed: { type: 'string', default: '1' },
    json: { type: 'boolean', default: false },
  },
});
const totalJobs = Number(values.jobs);
const memberCount = Number(values.members);
const channelCount = Number(values.channels);
for (const [name, value] of [['jobs', totalJobs], ['members', memberCount], ['channels', channelCount]] as const) {
  if (!Number.isInteger(value) || value < 1) {
    console.error(`Expected \`--${name}\` to be a positive integer, got \`${values[name]}\``);
    process.exit(2);
  }
}

/** mulberry32, seeded: the same seed gives the same sequence of member actions. */
let state = Number(values.seed) >>> 0;
function random(): number {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
const log = (line: string) => {
  if (!values.json) console.error(line);
};

function rssMb(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

const emulator = await DiscordEmulator.start();
const channels = Array.from({ length: channelCount }, (_, i) => emulator.createTextChannel({ name: `soak-${i}` }).id);
const members = Array.from({ length: memberCount }, (_, i) => {
  const user = emulator.createUser({ username: `member${i}` });
  emulator.addMember({ userId: user.id });
  return user.id;
});
await deployCommands(emulator);
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imagine-soak-'));
const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'index.ts')], {
  cwd: root,
  env: {
    ...process.env,
    DISCORD_TOKEN: emulator.token,
    DISCORD_API_URL: emulator.apiUrl,
    DATA_DIR: dataDir,
    SAMPLER: 'stand-in',
    STAND_IN_STEP_MS: '20',
    STEPS_DEFAULT: '4',
    QUEUE_MAX_PER_MEMBER: '2',
    QUEUE_MAX_TOTAL: '100',
    LOG_LEVEL: 'warn',
  },
  stdio: ['ignore', 'ignore', 'pipe'],
});
// The bot dies with the soak, whatever ends it (an error, Ctrl-C, a timeout's SIGTERM).
process.on('exit', () => child.kill('SIGKILL'));
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
let output = '';
child.stderr!.setEncoding('utf8');
child.stderr!.on('data', (chunk: string) => (output = (output + chunk).slice(-50_000)));
const pid = child.pid!;
const started = Date.now();
child.once('exit', (code) => {
  if (code !== 0 && code !== null) console.error(`The bot exited with ${code}: ${output.slice(-2000)}`);
});
await emulator.waitForReady(120_000);
await sleep(500);

const rss: { atS: number; done: number; rssMb: number }[] = [];
const jobsDb = new Database(path.join(dataDir, 'imagine.db'), { readonly: true, fileMustExist: true });
const countDone = () => (jobsDb.prepare("SELECT count(*) AS n FROM jobs WHERE state IN ('done', 'failed', 'cancelled')").get() as { n: number }).n;
const sampler = setInterval(() => rss.push({ atS: Math.round((Date.now() - started) / 1000), done: countDone(), rssMb: Math.round(rssMb(pid)) }), 5000);

const accepted: { handle: InteractionHandle; userId: string }[] = [];
const counts = { imagine: 0, refused: 0, queue: 0, cancels: 0, rerolls: 0, slowAnswers: 0, longReplies: 0 };

/** One member action; /imagine most of the time. Waits for the interaction's first answer. */
async function act(): Promise<void> {
  const userId = pick(members);
  const roll = random();
  if (roll < 0.1) {
    const handle = emulator.sendCommand({ name: 'queue', userId, channelId: pick(channels) });
    const response = await handle.waitForResponse();
    counts.queue++;
    if (String(response.body.data?.content ?? '').length > 2000) counts.longReplies++;
    return;
  }
  const mine = accepted.filter((entry) => entry.userId === userId);
  if (roll < 0.17 && mine.length > 0) {
    const message = pick(mine).handle.original();
    if (message) {
      emulator.addReaction({ userId, channelId: message.message.channel_id, messageId: message.message.id, emoji: '❌' });
      counts.cancels++;
    }
    return;
  }
  if (roll < 0.22 && mine.length > 0) {
    const message = pick(mine).handle.original();
    if (message && message.message.attachments.length > 0) {
      emulator.addReaction({ userId, channelId: message.message.channel_id, messageId: message.message.id, emoji: '🔁' });
      counts.rerolls++;
    }
    return;
  }
  const handle = emulator.sendCommand({
    name: 'imagine',
    options: { prompt: `soak ${counts.imagine + counts.refused} a ${pick(['red', 'blue', 'green'])} ${pick(['circle', 'square'])}` },
    userId,
    channelId: pick(channels),
  });
  const response = await handle.waitForResponse();
  if (handle.responseDelayMs !== undefined && handle.responseDelayMs > 3000) counts.slowAnswers++;
  if (response.body.type === 5) {
    accepted.push({ handle, userId });
    counts.imagine++;
  } else {
    counts.refused++;
    // A refused member waits a little before trying again, as a person would.
    await sleep(50);
  }
}

log(`soak: ${totalJobs} jobs from ${memberCount} members in ${channelCount} channels; bot pid ${pid}`);
let lastReport = Date.now();
while (counts.imagine < totalJobs) {
  await act();
  await sleep(5 + random() * 20);
  if (Date.now() - lastReport > 30_000) {
    lastReport = Date.now();
    log(`  ${Math.round((Date.now() - started) / 1000)} s: ${counts.imagine} accepted, ${countDone()} finished, ${Math.round(rssMb(pid))} MiB`);
  }
}

// Drain: every job in the journal reaches an end state.
const drainDeadline = Date.now() + 30 * 60_000;
const open = () => (jobsDb.prepare("SELECT count(*) AS n FROM jobs WHERE state IN ('queued', 'running', 'delivering')").get() as { n: number }).n;
while (open() > 0 && Date.now() < drainDeadline) await sleep(1000);
await sleep(3000);
clearInterval(sampler);
rss.push({ atS: Math.round((Date.now() - started) / 1000), done: countDone(), rssMb: Math.round(rssMb(pid)) });

const jobs = jobsDb.prepare('SELECT id, kind, state FROM jobs').all() as { id: string; kind: string; state: string }[];
// A finished picture is a message whose embed footer names the job; count them per job across all channels.
const posts = new Map<string, number>();
for (const stored of emulator.messages()) {
  for (const embed of stored.message.embeds) {
    const id = /job (\S+)$/.exec(embed.footer?.text ?? '')?.[1];
    if (id && stored.message.attachments.length > 0) posts.set(id, (posts.get(id) ?? 0) + 1);
  }
}
const refusedByLimits = emulator.calls.filter((call) => call.status === 400 || call.status === 413);
const summary = {
  accepted: counts.imagine,
  refusedAtCap: counts.refused,
  queueCalls: counts.queue,
  cancelReactions: counts.cancels,
  rerollReactions: counts.rerolls,
  jobsInJournal: jobs.length,
  imagineJobsInJournal: jobs.filter((job) => job.kind === 'imagine').length,
  byState: Object.fromEntries(['done', 'cancelled', 'failed', 'queued', 'running', 'delivering'].map((s) => [s, jobs.filter((j) => j.state === s).length])),
  lost: jobs.filter((job) => !['done', 'cancelled', 'failed'].includes(job.state)).length + Math.max(0, counts.imagine - jobs.filter((job) => job.kind === 'imagine').length),
  doneWithoutPicture: jobs.filter((job) => job.state === 'done' && !posts.has(job.id)).length,
  duplicatedPictures: [...posts.values()].filter((n) => n > 1).length,
  rejectedByDiscordLimits: refusedByLimits.length,
  rejectedExamples: refusedByLimits.slice(0, 3).map((call) => `${call.method} ${call.route} ${call.status} ${JSON.stringify(call.response).slice(0, 200)}`),
  answersOver3s: counts.slowAnswers,
  repliesOver2000: counts.longReplies,
  seconds: Math.round((Date.now() - started) / 1000),
  rss,
};

child.kill('SIGTERM');
if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
jobsDb.close();
await emulator.close();
fs.rmSync(dataDir, { recursive: true, force: true });

if (values.json) {
  console.log(JSON.stringify(summary, null, 2));
} else {
  const { rss: curve, ...rest } = summary;
  console.log(JSON.stringify(rest, null, 2));
  console.log('RSS curve (seconds, jobs finished, MiB):');
  for (const point of curve) console.log(`  ${point.atS}\t${point.done}\t${point.rssMb}`);
}
process.exit(summary.lost + summary.duplicatedPictures + summary.rejectedByDiscordLimits + summary.doneWithoutPicture > 0 ? 1 : 0);
