/**
 * Traces a burst of V presses through the emulator with the real bot: `npx tsx tools/discord-emulator/v-burst.ts`.
 * One /imagine count:4, then `PRESSES` V presses (V1…V4 in turn) by its requester, each sent once the previous one
 * was acknowledged. For every variation job it prints, from the press: the ephemeral ack, the job queued, its
 * first message in the channel, started, generated, and the pictures on Discord; then the emulator's 429s and
 * the REST calls per route bucket while the burst ran. Measures; asserts nothing (the tests do that).
 *
 * Environment: MODEL=stand-in for the stand-in engine (default: the embedded model, models/imagine-shapes, in
 * the worker pool); PRESSES (default 10); any of the bot's keys (EDIT_INTERVAL_MS, EDITS_PER_CHANNEL_PER_MINUTE…)
 * pass through, the production defaults otherwise.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { APIActionRowComponent, APIButtonComponent } from 'discord-api-types/v10';
import { eventually, startHarness } from './harness.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PRESSES = Number(process.env.PRESSES ?? 10);
const passThrough = Object.fromEntries(
  ['EDIT_INTERVAL_MS', 'EDITS_PER_CHANNEL_PER_MINUTE', 'SAMPLER_WORKERS', 'QUEUE_MAX_PER_MEMBER', 'STAND_IN_STEP_MS']
    .filter((key) => process.env[key] !== undefined)
    .map((key) => [key, process.env[key]!]),
);
const engineEnv: Record<string, string> =
  process.env.MODEL === 'stand-in'
    ? { SAMPLER: 'stand-in', STAND_IN_STEP_MS: '20' }
    : { SAMPLER: 'workers', MODEL_DIR: path.join(ROOT, 'models/imagine-shapes') };

const h = await startHarness({
  // The production pacing (harness turns the channel budget off for tests); room for the whole burst in the caps.
  env: { EDITS_PER_CHANNEL_PER_MINUTE: '30', EDIT_INTERVAL_MS: '1500', QUEUE_MAX_PER_MEMBER: '20', ...engineEnv, ...passThrough },
});
const { emulator } = h;
const channelId = emulator.defaults.channelId;
const alice = emulator.defaults.users.alice.id;

const gridHandle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'a red circle', count: 4, seed: 5 }, userId: alice });
const grid = await eventually(() => {
  const original = gridHandle.original();
  return original && original.message.attachments.length > 0 && original.message.embeds.length > 0 ? original : undefined;
}, 120_000, 'the grid');
await h.app.queue.onIdle();
// Let the grid's own reactions and last edits drain, so the burst starts from a quiet channel.
await new Promise((resolve) => setTimeout(resolve, 3000));
const rows = (grid.message.components ?? []) as APIActionRowComponent<APIButtonComponent>[];
const vIds = rows.flatMap((row) => row.components).flatMap((b) => ('custom_id' in b && 'label' in b && b.label?.startsWith('V') ? [b.custom_id] : []));

interface Trace {
  press: number;
  ack?: number;
  answer?: string;
  /** When the private answer (the deferred reply's edit) reached Discord. */
  answered?: number;
  jobId?: string;
  queued?: number;
  place?: number;
  started?: number;
  generated?: number;
  delivered?: number;
}
const traces: Trace[] = [];
const byJob = new Map<string, Trace>();
const now = () => Date.now();
const events = h.app.queue.events;
// Jobs are matched to presses in the order they were queued (one press is sent after the previous one's ack).
events.on('queued', ({ job, position }) => {
  if (job.kind !== 'variation') return;
  const trace = traces.find((t) => t.jobId === undefined);
  if (!trace) return;
  trace.jobId = job.id;
  trace.queued = now();
  trace.place = position.place;
  byJob.set(job.id, trace);
});
events.on('started', ({ job }) => {
  const t = byJob.get(job.id);
  if (t) t.started = now();
});
events.on('generated', ({ job }) => {
  const t = byJob.get(job.id);
  if (t) t.generated = now();
});
events.on('delivered', ({ job }) => {
  const t = byJob.get(job.id);
  if (t) t.delivered = now();
});

const firstCall = emulator.calls.length;
const burstStart = now();
const handles = [];
for (let i = 0; i < PRESSES; i++) {
  const trace: Trace = { press: now() };
  traces.push(trace);
  const handle = emulator.sendButton({ messageId: grid.message.id, customId: vIds[i % vIds.length]!, userId: alice });
  handles.push(handle);
  const response = await handle.waitForResponse();
  trace.ack = response.at;
}
for (const [i, handle] of handles.entries()) {
  const answer = await eventually(() => {
    const original = handle.original();
    return original && original.message.content.length > 0 ? original : undefined;
  }, 60_000, 'an answer');
  traces[i]!.answer = answer.message.content;
  traces[i]!.answered = handle.calls().find((c) => c.method === 'PATCH' && c.status < 300)?.at;
}
await eventually(() => traces.every((t) => t.jobId === undefined || t.delivered !== undefined), 300_000, 'every variation delivered');
await new Promise((resolve) => setTimeout(resolve, 2000));
const calls = emulator.calls.slice(firstCall);

/** When the job's pictures reached Discord: the call that carried its attachments. */
function postedAt(jobId: string): { at: number; seq: number } | undefined {
  const messageId = h.app.queue.get(jobId)?.messageId;
  // The pictures' call: files and the embed (a progress edit may carry a preview file, never an embed).
  const call = calls.find((c) => c.files.length > 0 && (c.body?.embeds?.length ?? 0) > 0 && (c.params.messageId === messageId || c.response?.id === messageId));
  return call && { at: call.at, seq: call.seq };
}
function firstMessageAt(jobId: string): number | undefined {
  const messageId = h.app.queue.get(jobId)?.messageId;
  return calls.find((c) => c.method === 'POST' && c.response?.id === messageId)?.at;
}
const ms = (from: number | undefined, to: number | undefined) => (from === undefined || to === undefined ? '   —' : String(Math.round(to - from)).padStart(5));
console.log(`engine: ${engineEnv.SAMPLER}${engineEnv.MODEL_DIR ? ' (imagine-shapes)' : ''}; presses: ${PRESSES}; env ${JSON.stringify(passThrough)}`);
console.log('press  ack answer queued place  1st-msg  started  generated  posted | queued→start  start→gen  gen→posted   the private answer says');
for (const [i, t] of traces.entries()) {
  if (!t.jobId) {
    console.log(`${String(i + 1).padStart(5)} ${ms(t.press, t.ack)}  refused: ${t.answer}`);
    continue;
  }
  const posted = postedAt(t.jobId);
  console.log(
    `${String(i + 1).padStart(5)} ${ms(t.press, t.ack)} ${ms(t.press, t.answered)}  ${ms(t.press, t.queued)} ${String(t.place).padStart(5)} ${ms(t.press, firstMessageAt(t.jobId))}   ${ms(t.press, t.started)}     ${ms(t.press, t.generated)}  ${ms(t.press, posted?.at)} |        ${ms(t.queued, t.started)}      ${ms(t.started, t.generated)}       ${ms(t.generated, posted?.at)}   ${/\((.*?)\)/.exec(t.answer ?? '')?.[1] ?? ''}`,
  );
}
const byRoute = new Map<string, { n: number; limited: number }>();
for (const c of calls) {
  const key = `${c.method} ${c.route}`;
  const entry = byRoute.get(key) ?? { n: 0, limited: 0 };
  entry.n += 1;
  if (c.status === 429) entry.limited += 1;
  byRoute.set(key, entry);
}
console.log(`\nREST calls during the burst (${Math.round(now() - burstStart)} ms):`);
for (const [route, { n, limited }] of byRoute) console.log(`  ${String(n).padStart(4)} ${route}${limited ? `  (${limited} × 429)` : ''}`);
console.log(`channel ${channelId}: ${calls.filter((c) => c.status === 429).length} × 429 in all`);
// The emulator's buckets as the bot met them: calls counted, and how often a call took the bucket's last slot (so
// discord.js held the next one until the window reset, without a 429).
const bucketNames = new Map(emulator.rateLimiter.rules.map((rule) => [createHash('sha1').update(rule.bucket).digest('hex').slice(0, 32), rule.bucket]));
const buckets = new Map<string, { calls: number; emptied: number }>();
for (const c of calls) {
  const name = bucketNames.get(c.responseHeaders['x-ratelimit-bucket'] ?? '') ?? 'default';
  const entry = buckets.get(name) ?? { calls: 0, emptied: 0 };
  entry.calls += 1;
  if (c.responseHeaders['x-ratelimit-remaining'] === '0') entry.emptied += 1;
  buckets.set(name, entry);
}
console.log('buckets (calls, calls that took the last slot of a window):');
for (const [name, { calls: n, emptied }] of buckets) console.log(`  ${name.padEnd(24)} ${String(n).padStart(4)} ${String(emptied).padStart(4)}`);
if (process.env.CALLS) {
  for (const c of calls) console.log(`  #${c.seq} +${Math.round(c.at - burstStart)} ${c.method} ${c.route} ${c.status} ${c.files.length ? `files:${c.files.length}` : ''} ${String(c.body?.content ?? '').slice(0, 50).replace(/\n/g, ' ')}`);
}
await h.close();
