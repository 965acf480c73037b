/**
 * Start-up time and resident memory of the bot as its owner starts it, against the Discord emulator with the
 * embedded model: how long from the command to the "ready" log line (wall time, and the CPU time the process
 * tree used by then, which a busy machine disturbs less), and the memory of the whole process tree (npm, a
 * transpiler's own processes, the bot and its worker threads) once ready and after one picture.
 *
 *   npx tsx tools/bench/startup.ts [--command "npm start"] [--cwd DIR] [--runs 5] [--workers 1,4] [--json]
 *
 * `--cwd` runs the command in another checkout (to compare against an older commit: `git archive` it to a
 * folder and link its node_modules). Each run gets a fresh emulator and DATA_DIR; medians are printed.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { DiscordEmulator } from '../../src/playground/emulator/index.js';
import { deployCommands } from '../discord-emulator/harness.js';
import { median } from './stats.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { values } = parseArgs({
  options: {
    command: { type: 'string', default: 'npm start' },
    cwd: { type: 'string', default: root },
    runs: { type: 'string', default: '5' },
    workers: { type: 'string', default: '1' },
    json: { type: 'boolean', default: false },
  },
});
const runs = Number(values.runs);
const workerCounts = values.workers.split(',').map(Number);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`Expected \`--runs\` to be a positive integer, got \`${values.runs}\``);
if (workerCounts.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`Expected \`--workers\` to be a list of positive integers, got \`${values.workers}\``);

interface ProcessInfo {
  pid: number;
  ppid: number;
  name: string;
  rssMb: number;
  threads: number;
  /** CPU time used by the process and its children it has waited for (user + system), ms. */
  cpuMs: number;
}

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** utime + stime + cutime + cstime from /proc/<pid>/stat (fields 14–17), ms. */
function cpuMsOf(pid: string): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields.slice(11, 15).reduce((sum, f) => sum + Number(f), 0) * TICK_MS;
}

/** Every process on the machine with its parent, from /proc (Linux only). */
function processes(): ProcessInfo[] {
  const list: ProcessInfo[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = fs.readFileSync(`/proc/${entry}/status`, 'utf8');
      const field = (key: string) => new RegExp(`^${key}:\\s+(.+)$`, 'm').exec(status)?.[1] ?? '';
      list.push({
        pid: Number(entry),
        ppid: Number(field('PPid')),
        name: field('Name'),
        rssMb: Number(field('VmRSS').replace(/ kB$/, '') || 0) / 1024,
        threads: Number(field('Threads') || 0),
        cpuMs: cpuMsOf(entry),
      });
    } catch {
      // gone meanwhile
    }
  }
  return list;
}

/** `pid` and all its descendants. */
function tree(pid: number): ProcessInfo[] {
  const all = processes();
  const found = all.filter((p) => p.pid === pid);
  for (let i = 0; i < found.length; i++) found.push(...all.filter((p) => p.ppid === found[i]!.pid));
  return found;
}

interface Sample {
  totalRssMb: number;
  /** The process that printed "ready" is the one with the most threads (workers, libuv, onnxruntime). */
  botRssMb: number;
  processes: string[];
}

function sample(pid: number): Sample {
  const members = tree(pid);
  const bot = members.reduce((a, b) => (b.threads > a.threads ? b : a));
  return {
    totalRssMb: members.reduce((sum, p) => sum + p.rssMb, 0),
    botRssMb: bot.rssMb,
    processes: members.map((p) => `${p.name}(${Math.round(p.rssMb)})`),
  };
}

interface RunResult {
  readyMs: number;
  /** CPU time the whole tree had used when "ready" was printed: less sensitive to a busy machine than `readyMs`. */
  readyCpuMs: number;
  idle: Sample;
  afterPicture: Sample;
  pictureMs: number;
}

async function once(workers: number): Promise<RunResult> {
  const emulator = await DiscordEmulator.start();
  await deployCommands(emulator);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imagine-startup-'));
  const started = performance.now();
  const child = spawn(values.command, {
    shell: true,
    cwd: values.cwd,
    detached: true, // its own process group, so the whole tree is stopped at the end
    env: {
      ...process.env,
      DISCORD_TOKEN: emulator.token,
      DISCORD_API_URL: emulator.apiUrl,
      DATA_DIR: dataDir,
      SAMPLER: 'workers',
      SAMPLER_WORKERS: String(workers),
      MODEL_DIR: '',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk) => (output = (output + chunk).slice(-20_000)));
  child.stderr!.on('data', (chunk) => (output = (output + chunk).slice(-20_000)));
  try {
    while (!/"msg":"ready"/.test(output)) {
      if (child.exitCode !== null || performance.now() - started > 180_000) throw new Error(`The bot did not start: ${output.slice(-1500)}`);
      await sleep(10);
    }
    const readyMs = performance.now() - started;
    const readyCpuMs = tree(child.pid!).reduce((sum, p) => sum + p.cpuMs, 0);
    await sleep(2000);
    const idle = sample(child.pid!);
    const pictureStart = performance.now();
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'a red circle on a blue background', steps: 20 } });
    await handle.waitForResponse(10_000);
    while (!handle.original()?.message.attachments.some((a) => a.filename.startsWith('imagine-'))) {
      if (performance.now() - pictureStart > 120_000) throw new Error(`No picture: ${output.slice(-1500)}`);
      await sleep(20);
    }
    const pictureMs = performance.now() - pictureStart;
    await sleep(2000);
    return { readyMs, readyCpuMs, idle, afterPicture: sample(child.pid!), pictureMs };
  } finally {
    try {
      process.kill(-child.pid!, 'SIGTERM');
    } catch {
      // already gone
    }
    const deadline = performance.now() + 30_000;
    while (child.exitCode === null && child.signalCode === null && performance.now() < deadline) await sleep(50);
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // ended
    }
    await emulator.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

const report: Record<string, unknown>[] = [];
for (const workers of workerCounts) {
  const results: RunResult[] = [];
  for (let i = 0; i < runs; i++) {
    const result = await once(workers);
    results.push(result);
    if (!values.json) {
      console.error(
        `workers=${workers} run ${i + 1}/${runs}: ready ${Math.round(result.readyMs)} ms (CPU ${result.readyCpuMs} ms), idle ${Math.round(result.idle.totalRssMb)} MiB ` +
          `(bot ${Math.round(result.idle.botRssMb)}), after a picture ${Math.round(result.afterPicture.totalRssMb)} MiB; ${result.afterPicture.processes.join(' ')}`,
      );
    }
  }
  report.push({
    command: values.command,
    cwd: values.cwd,
    workers,
    runs,
    readyMsMedian: Math.round(median(results.map((r) => r.readyMs))),
    readyCpuMsMedian: median(results.map((r) => r.readyCpuMs)),
    idleTreeRssMbMedian: Math.round(median(results.map((r) => r.idle.totalRssMb))),
    idleBotRssMbMedian: Math.round(median(results.map((r) => r.idle.botRssMb))),
    pictureTreeRssMbMedian: Math.round(median(results.map((r) => r.afterPicture.totalRssMb))),
    pictureBotRssMbMedian: Math.round(median(results.map((r) => r.afterPicture.botRssMb))),
    processes: results.at(-1)!.afterPicture.processes.length,
  });
}
console.log(values.json ? JSON.stringify(report) : report.map((r) => JSON.stringify(r)).join('\n'));
console.error(`node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
