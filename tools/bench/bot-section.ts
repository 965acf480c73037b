/**
 * The bot as members feel it: the real app (startApp: SQLite journal, fair queue, delivery, discord.js) against the
 * Discord emulator on 127.0.0.1, with the ONNX worker pool making images. Measures the main thread's event-loop
 * delay while images are made, the time from an /imagine to its defer with 30 members sending commands meanwhile,
 * images per minute with 1 and with 4 jobs waiting, and resident memory.
 *
 * The emulator runs in this same process, so its own work on the event loop is counted against the bot: the
 * latencies here are upper bounds.
 */
import fs from 'node:fs';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { DiscordEmulator, type InteractionHandle } from '../../src/playground/emulator/index.js';
import { deployCommands, startHarness, type Harness } from '../discord-emulator/harness.js';
import { percentile, peakRssMb, rssMb } from './stats.js';

export interface BotInput {
  modelDir: string;
  /** Steps of every /imagine. Default 20. */
  steps?: number;
  /** Members sending /imagine at once while an image is made. Default 30. */
  members?: number;
  /** Bursts of `members` commands. Default 3. */
  bursts?: number;
  /** Single jobs timed one after another (after one warm-up). Default 3. */
  singleJobs?: number;
  /** Jobs sent at once for the "4 waiting" rate. Default 4. */
  queuedJobs?: number;
  /** bot-process only: single /imagine commands timed to the picture, queue idle. Default 20. */
  idlePictures?: number;
  /** Extra environment for the bot's config (e.g. EXECUTION_PROVIDERS). */
  env?: Record<string, string>;
  /**
   * bot-process only: start the bot through tools/bench/bot-entry.ts with these extra load options (a runtime lever)
   * instead of src/index.ts.
   */
  loadOptions?: Record<string, unknown>;
}

export interface LoopDelay {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  samples: number;
}

export interface BotResult {
  model: string;
  width: number;
  height: number;
  steps: number;
  /** RSS of this process before the bot started (node, discord.js, the emulator), MiB. */
  rssBeforeBotMb: number;
  /** RSS with the bot up and the model loaded, idle, MiB. */
  rssIdleMb: number;
  /** Highest RSS sampled while jobs ran, MiB, and the kernel's high-water mark for the whole process. */
  rssPeakSampledMb: number;
  rssHighWaterMb: number;
  loopWhileGenerating: LoopDelay;
  loopDuringBurst: LoopDelay;
  defer: { p50Ms: number; p99Ms: number; maxMs: number; samples: number; failed: number };
  /** Seconds from /imagine to the final image for one job alone. */
  singleJobS: number[];
  imagesPerMinuteOne: number;
  /** Seconds from sending `queuedJobs` commands at once to the last image delivered. */
  queuedJobsS: number;
  imagesPerMinuteQueued: number;
  queuedJobs: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The histogram's timer fires every this many ms. */
const LOOP_RESOLUTION_MS = 10;

function loopDelay(histogram: IntervalHistogram): LoopDelay {
  // Node records the whole interval between two firings of its timer (nanoseconds), the resolution included (an
  // idle loop reads about 10.2 ms at resolution 10): the delay is what lies beyond it.
  const delay = (ns: number) => Math.max(0, ns / 1e6 - LOOP_RESOLUTION_MS);
  return {
    p50Ms: delay(histogram.percentile(50)),
    p99Ms: delay(histogram.percentile(99)),
    maxMs: delay(histogram.max),
    samples: histogram.count,
  };
}

/** Resolves when the interaction's reply carries the final image. */
async function delivered(handle: InteractionHandle, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const original = handle.original();
    if (original?.message.attachments.some((a) => a.filename.startsWith('imagine-'))) return;
    if (performance.now() > deadline) throw new Error(`No image delivered within ${timeoutMs} ms (interaction ${handle.id})`);
    await sleep(10);
  }
}

export async function measureBot(input: BotInput, log: (line: string) => void = () => {}): Promise<BotResult> {
  const steps = input.steps ?? 20;
  const members = input.members ?? 30;
  const bursts = input.bursts ?? 3;
  const singleJobs = input.singleJobs ?? 3;
  const queuedJobs = input.queuedJobs ?? 4;
  const jobTimeoutMs = 300_000;

  const emulator = await DiscordEmulator.start();
  const users = Array.from({ length: Math.max(members, queuedJobs) + 1 }, (_, i) => {
    const user = emulator.createUser({ username: `member${i}` });
    emulator.addMember({ userId: user.id });
    return user;
  });
  await deployCommands(emulator);
  const rssBeforeBotMb = rssMb();

  let h: Harness | undefined;
  let peakSampled = 0;
  const engine = setInterval(() => (peakSampled = Math.max(peakSampled, rssMb())), 50);
  try {
    h = await startHarness({
      existingEmulator: emulator,
      env: {
        SAMPLER: 'workers',
        MODEL_DIR: input.modelDir,
        STEPS_DEFAULT: String(steps),
        STEPS_MAX: String(Math.max(50, steps)),
        // Each member sends one command per burst; the global cap holds every burst's jobs.
        QUEUE_MAX_PER_MEMBER: String(bursts + 1),
        QUEUE_MAX_TOTAL: String(members * bursts + 20),
        ...input.env,
      },
    });
    const model = h.app.model;
    await sleep(500);
    const rssIdleMb = rssMb();
    peakSampled = rssIdleMb;
    log(`bot up with ${model.name}: ${Math.round(rssIdleMb)} MiB resident`);

    const imagine = (userIndex: number, prompt: string) =>
      emulator.sendCommand({ name: 'imagine', options: { prompt }, userId: users[userIndex].id });

    // 1. One job at a time, then 2. `queuedJobs` at once; the main thread's event-loop delay over both phases, one
    //    contiguous window (a histogram disabled and enabled again counts the gap as one long delay).
    const generating = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
    const singleJobS: number[] = [];
    for (let i = 0; i <= singleJobs; i++) {
      const t0 = performance.now();
      if (i === 1) generating.enable();
      const handle = imagine(0, `a red circle ${i}`);
      await delivered(handle, jobTimeoutMs);
      if (i > 0) singleJobS.push((performance.now() - t0) / 1000);
      log(`single job ${i}/${singleJobs}: ${((performance.now() - t0) / 1000).toFixed(2)} s${i === 0 ? ' (warm-up)' : ''}`);
    }
    const meanSingle = singleJobS.reduce((a, b) => a + b, 0) / singleJobS.length;

    const t1 = performance.now();
    const handles = Array.from({ length: queuedJobs }, (_, i) => imagine(i + 1, `a blue square ${i}`));
    await Promise.all(handles.map((handle) => delivered(handle, jobTimeoutMs)));
    const queuedJobsS = (performance.now() - t1) / 1000;
    generating.disable();
    log(`${queuedJobs} jobs at once: ${queuedJobsS.toFixed(2)} s`);

    // 3. Bursts: while an image is being made, every member sends /imagine within about a second.
    const burst = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
    const deferMs: number[] = [];
    let failed = 0;
    for (let b = 0; b < bursts; b++) {
      const running = imagine(0, `a green triangle ${b}`);
      await running.waitForResponse(10_000);
      const deadline = performance.now() + 30_000;
      while (h.app.queue.snapshot().running.length === 0 && performance.now() < deadline) await sleep(5);
      if (b === 0) burst.enable(); // one window over all bursts (jobs run throughout)
      const sent: Promise<void>[] = [];
      for (let m = 0; m < members; m++) {
        const handle = imagine(m + 1, `a small yellow star ${b}-${m}`);
        sent.push(
          handle.waitForResponse(10_000).then(
            () => {
              deferMs.push(handle.responseDelayMs ?? NaN);
            },
            () => {
              failed++;
            },
          ),
        );
        await sleep(1000 / members);
      }
      await Promise.all(sent);
      log(`burst ${b + 1}/${bursts}: ${members} commands answered`);
    }
    burst.disable();
    const answered = deferMs.filter(Number.isFinite);

    return {
      model: model.name,
      width: model.width,
      height: model.height,
      steps,
      rssBeforeBotMb,
      rssIdleMb,
      rssPeakSampledMb: peakSampled,
      rssHighWaterMb: peakRssMb(),
      loopWhileGenerating: loopDelay(generating),
      loopDuringBurst: loopDelay(burst),
      defer: {
        p50Ms: answered.length ? percentile(answered, 50) : NaN,
        p99Ms: answered.length ? percentile(answered, 99) : NaN,
        maxMs: answered.length ? Math.max(...answered) : NaN,
        samples: answered.length,
        failed,
      },
      singleJobS,
      imagesPerMinuteOne: 60 / meanSingle,
      queuedJobsS,
      imagesPerMinuteQueued: (queuedJobs * 60) / queuedJobsS,
      queuedJobs,
    };
  } finally {
    clearInterval(engine);
    // The burst's jobs still wait; a graceful stop tells each member, which is not what is measured: bounded wait.
    if (h) {
      const dataDir = h.dataDir;
      await Promise.race([h.close({ keepData: true }).catch(() => undefined), sleep(15_000)]);
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
    await Promise.race([emulator.close(), sleep(5_000)]);
  }
}

export interface BotProcessResult {
  /** VmRSS of `node --import tsx src/index.ts` (`npm run dev`; `npm start` runs it compiled: startup.ts) once ready, idle, MiB. */
  rssIdleMb: number;
  /** VmRSS while jobs run, highest sampled, and the kernel's high-water mark (VmHWM) at the end, MiB. */
  rssBusyMb: number;
  rssHighWaterMb: number;
  /** Defer latency with the bot in its own process (the emulator's work no longer on the bot's event loop). */
  defer: { p50Ms: number; p99Ms: number; maxMs: number; samples: number; failed: number };
  /**
   * `/imagine` → the picture on the member's screen with the queue idle: from the interaction's creation to the
   * edit that carries the picture, one command at a time; and edits of one message that Discord would refuse
   * (429 from the emulator's 5-per-5-s rule).
   */
  pictureIdle: { p50Ms: number; p99Ms: number; samples: number; rateLimited: number };
  imagesDelivered: number;
}

function procStatusMb(pid: number, key: 'VmRSS' | 'VmHWM'): number {
  try {
    const match = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : NaN;
  } catch {
    return NaN; // not Linux, or the process is gone
  }
}

/**
 * The bot as `npm start` runs it, in its own process against the emulator: its resident memory idle and busy, and
 * the defer latency of `members` commands sent within a second while an image is made (`bursts` times).
 */
export async function measureBotProcess(input: BotInput, log: (line: string) => void = () => {}): Promise<BotProcessResult> {
  const { spawn } = await import('node:child_process');
  const os = await import('node:os');
  const path = await import('node:path');
  const { fileURLToPath } = await import('node:url');
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const steps = input.steps ?? 20;
  const members = input.members ?? 30;
  const bursts = input.bursts ?? 2;

  const emulator = await DiscordEmulator.start();
  const users = Array.from({ length: members + 1 }, (_, i) => {
    const user = emulator.createUser({ username: `member${i}` });
    emulator.addMember({ userId: user.id });
    return user;
  });
  await deployCommands(emulator);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imagine-bench-bot-'));
  const entry = input.loadOptions ? [path.join(root, 'tools', 'bench', 'bot-entry.ts'), JSON.stringify(input.loadOptions)] : [path.join(root, 'src', 'index.ts')];
  const child = spawn(process.execPath, ['--import', 'tsx', ...entry], {
    cwd: root,
    env: {
      ...process.env,
      DISCORD_TOKEN: emulator.token,
      DISCORD_API_URL: emulator.apiUrl,
      DATA_DIR: dataDir,
      SAMPLER: 'workers',
      MODEL_DIR: input.modelDir,
      STEPS_DEFAULT: String(steps),
      STEPS_MAX: String(Math.max(50, steps)),
      QUEUE_MAX_PER_MEMBER: String(bursts + 1),
      QUEUE_MAX_TOTAL: String(members * bursts + 20),
      ...input.env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const pid = child.pid!;
  let output = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => (output = (output + chunk).slice(-20_000)));
  let busyPeak = 0;
  let engine: NodeJS.Timeout | undefined;
  try {
    const deadline = performance.now() + 120_000;
    while (!/"msg":"ready"/.test(output)) {
      if (child.exitCode !== null || performance.now() > deadline) throw new Error(`The bot did not start: ${output.slice(-500)}`);
      await sleep(50);
    }
    await sleep(1000);
    const rssIdleMb = procStatusMb(pid, 'VmRSS');
    log(`bot process up: ${Math.round(rssIdleMb)} MiB resident`);
    engine = setInterval(() => (busyPeak = Math.max(busyPeak, procStatusMb(pid, 'VmRSS') || 0)), 50);

    const imagine = (userIndex: number, prompt: string) =>
      emulator.sendCommand({ name: 'imagine', options: { prompt }, userId: users[userIndex].id });

    // One member at a time, the queue idle: how long until the picture is shown.
    const pictureMs: number[] = [];
    const limitedBefore = emulator.stats.rateLimited;
    for (let i = 0; i < (input.idlePictures ?? 20); i++) {
      const handle = imagine(i % members, `a blue square ${i}`);
      const createdAt = handle.state.createdAt;
      for (const deadline = performance.now() + 30_000; performance.now() < deadline; await sleep(5)) {
        const shown = handle.original()?.message.attachments.some((a) => a.filename.startsWith('imagine-'));
        if (shown) {
          pictureMs.push(Date.now() - createdAt);
          break;
        }
      }
      await sleep(300); // the bot's reactions and the job's end, before the next member
    }
    const pictureIdle = {
      p50Ms: pictureMs.length ? percentile(pictureMs, 50) : NaN,
      p99Ms: pictureMs.length ? percentile(pictureMs, 99) : NaN,
      samples: pictureMs.length,
      rateLimited: emulator.stats.rateLimited - limitedBefore,
    };
    log(`bot process, idle queue: picture p50 ${Math.round(pictureIdle.p50Ms)} ms, p99 ${Math.round(pictureIdle.p99Ms)} ms`);
    const deferMs: number[] = [];
    let failed = 0;
    const all: InteractionHandle[] = [];
    for (let b = 0; b < bursts; b++) {
      const running = imagine(0, `a red circle ${b}`);
      all.push(running);
      await running.waitForResponse(10_000);
      await sleep(200); // the job has started in the worker
      const sent: Promise<void>[] = [];
      for (let m = 0; m < members; m++) {
        const handle = imagine(m + 1, `a small yellow star ${b}-${m}`);
        all.push(handle);
        sent.push(
          handle.waitForResponse(10_000).then(
            () => void deferMs.push(handle.responseDelayMs ?? NaN),
            () => void failed++,
          ),
        );
        await sleep(1000 / members);
      }
      await Promise.all(sent);
      log(`bot process burst ${b + 1}/${bursts}: ${members} commands answered`);
    }
    // Let some of the queued jobs run so the busy figures include generation and delivery.
    await sleep(5000);
    const imagesDelivered = all.filter((handle) => handle.original()?.message.attachments.some((a) => a.filename.startsWith('imagine-'))).length;
    const answered = deferMs.filter(Number.isFinite);
    return {
      rssIdleMb,
      rssBusyMb: busyPeak,
      rssHighWaterMb: procStatusMb(pid, 'VmHWM'),
      defer: {
        p50Ms: answered.length ? percentile(answered, 50) : NaN,
        p99Ms: answered.length ? percentile(answered, 99) : NaN,
        maxMs: answered.length ? Math.max(...answered) : NaN,
        samples: answered.length,
        failed,
      },
      pictureIdle,
      imagesDelivered,
    };
  } finally {
    if (engine) clearInterval(engine);
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      await Promise.race([exited, sleep(15_000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
    await Promise.race([emulator.close(), sleep(5_000)]);
  }
}
