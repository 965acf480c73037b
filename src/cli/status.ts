/**
 * `npm run status`: the scaled mode's fleet at a glance (README, "More than one GPU"): the image workers (host,
 * models, ms per step, current jobs, last heartbeat; stale ones marked), the queue depth per server and per model,
 * the oldest waiting job, and the runs being made. Reads REDIS_URL; changes nothing in Redis.
 *
 *   npm run status [-- --json]
 *
 * Exit code 0 when it printed; 1 when REDIS_URL is unset or Redis cannot be reached; 2 on bad arguments.
 */
import '../node-version.js';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config.js';
import { commandConnection, Keys, ready, withinMs } from '../scale/redis.js';
import { readFleetStatus, type FleetStatus } from '../scale/status.js';

const USAGE = 'usage: npm run status [-- --json]';
/** How long to wait for Redis before saying it cannot be reached. */
const CONNECT_TIMEOUT_MS = 5000;

function fail(message: string, code: number): never {
  process.stderr.write(`imagine status: ${message}\n`);
  process.exit(code);
}

/** A Redis URL as it may be printed: no password. */
function redacted(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}

/** A duration for people: 850 ms, 4.2 s, 3 min, 2.5 h. */
function age(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

/** Rows padded into columns, two spaces apart. */
function table(rows: string[][], indent = '  '): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => indent + row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()).join('\n');
}

/** The status as plain aligned text for a terminal. */
export function formatStatus(status: FleetStatus, url: string): string {
  const out: string[] = [];
  out.push(`imagine status: ${redacted(url)} (key prefix ${status.prefix}), ${new Date(status.at).toISOString().slice(0, 19).replace('T', ' ')} UTC`);

  const stale = status.workers.filter((worker) => worker.stale).length;
  out.push('', `Workers: ${status.workers.length - stale} alive${stale > 0 ? `, ${stale} stale (no heartbeat for over ${age(status.staleAfterMs)}; not counted)` : ''}`);
  if (status.workers.length === 0) out.push('  none (start one with `npm run worker`)');
  else {
    out.push(table([
      ['id', 'host', 'models', 'ms/step', 'current', 'heartbeat'],
      ...status.workers.map((worker) => [
        worker.id,
        worker.host,
        worker.models.join(',') || '-',
        worker.msPerStep > 0 ? String(worker.msPerStep) : '-',
        worker.current.join(',') || 'idle',
        `${age(worker.beatAgeMs)} ago${worker.stale ? ' STALE' : ''}`,
      ]),
    ]));
  }

  const { waiting } = status;
  out.push('', `Waiting: ${waiting.jobs} job${waiting.jobs === 1 ? '' : 's'} (${waiting.images} image${waiting.images === 1 ? '' : 's'})`);
  if (waiting.jobs > 0) {
    out.push(`  per server  ${waiting.byServer.map((entry) => `${entry.guildId}: ${entry.jobs}`).join('   ')}`);
    out.push(`  per model   ${waiting.byModel.map((entry) => `${entry.model}: ${entry.jobs}`).join('   ')}`);
    const oldest = waiting.oldest!;
    out.push(`  oldest      ${oldest.jobId}, waiting ${age(oldest.ageMs)}, server ${oldest.guildId}, member ${oldest.userId}, model ${oldest.model}`);
  }

  out.push('', `Running: ${status.running.length} run${status.running.length === 1 ? '' : 's'}`);
  if (status.running.length > 0) {
    out.push(table([
      ['jobs', 'model', 'worker', 'running for', 'servers'],
      ...status.running.map((run) => [
        run.jobs.map((job) => job.id).join(',') + (run.runs > 1 ? ` (run ${run.runs}: taken over)` : ''),
        run.model,
        run.worker,
        age(run.ageMs),
        [...new Set(run.jobs.map((job) => job.guildId))].join(','),
      ]),
    ]));
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  let json: boolean;
  try {
    const { values, positionals } = parseArgs({ args: process.argv.slice(2), strict: true, allowPositionals: true, options: { json: { type: 'boolean' } } });
    if (positionals.length > 0) throw new Error(`Expected no positional arguments, got \`${positionals.join(' ')}\``);
    json = values.json ?? false;
  } catch (error) {
    fail(`${(error as Error).message}\n${USAGE}`, 2);
  }
  let url: string | undefined;
  try {
    url = loadConfig().redisUrl;
  } catch (error) {
    if (error instanceof ConfigError) fail(error.message, 1);
    throw error;
  }
  if (url === undefined) fail('`REDIS_URL` is not set: the status shows the scaled mode\'s workers and queue in Redis (see the README, "More than one GPU")', 1);

  const keys = new Keys();
  const redis = commandConnection({ url }, 'imagine-status');
  try {
    if (!(await ready(redis, CONNECT_TIMEOUT_MS))) fail(`cannot reach Redis at ${redacted(url)} within ${CONNECT_TIMEOUT_MS / 1000} s`, 1);
    const status = await withinMs(readFleetStatus(redis, keys, Date.now()), CONNECT_TIMEOUT_MS, 'the status read');
    process.stdout.write(json ? `${JSON.stringify(status, null, 2)}\n` : `${formatStatus(status, url)}\n`);
  } finally {
    redis.disconnect();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`imagine status: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
