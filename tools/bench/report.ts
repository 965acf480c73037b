/** The bench's results as one object (tools/bench/results.json), the targets of issue 6 judged, and the printed table. */
import type { BotProcessResult, BotResult } from './bot-section.js';
import type { CachedStartupResult, Fp16Result, LeverResult } from './levers-section.js';
import type { LoopLeverResult } from './loop-levers-section.js';
import type { MachineInfo } from './machine.js';
import type { ModelSectionResult } from './model-section.js';
import type { ScaleResult } from './scale-section.js';
import { round } from './stats.js';

/** A part that did not run, and why (no torch, no python, a section that failed). */
export interface Skipped {
  skipped: string;
}

export interface TorchComparison {
  model: string;
  threads: number;
  batch: number;
  torchVersion: string;
  onnxMs: number;
  torchMs: number;
  /** torchMs / onnxMs: how many times faster the runtime is. */
  speedup: number;
}

export interface ModelEntry {
  /** What the folder is: the embedded model, its architecture twin, the SD-contract bench model. */
  role: 'embedded' | 'sd';
  label: string;
  dir: string;
  result: ModelSectionResult | Skipped;
  levers?: { batch: number; results: LeverResult[] } | Skipped;
  loopLevers?: { results: LoopLeverResult[] } | Skipped;
  /** loadModel with and without the optimised-graph cache. */
  cachedStartup?: CachedStartupResult | Skipped;
  torch?: TorchComparison | Skipped;
}

export interface BenchResults {
  machine: MachineInfo;
  executionProvider: string;
  notes: string[];
  models: ModelEntry[];
  /** float16 against float32 weights on the same small UNet. */
  fp16?: Fp16Result | Skipped;
  bot?: {
    model: string;
    inProcess: BotResult | Skipped;
    process: BotProcessResult | Skipped;
    /** The bot as a process with each lever of `processLevers`' names (load options), beside `process`. */
    processLevers?: { name: string; result: BotProcessResult | Skipped }[];
  };
  /** The scaled mode (issue 11): redis-server, bot queue and image workers on the stand-in engine. */
  scale?: ScaleResult | Skipped;
  targets: Target[];
  durationS: number;
}

export interface Target {
  name: string;
  target: string;
  measured: string;
  met: boolean | null;
  /** How far from the target when missed, in words. */
  gap?: string;
}

export function isSkipped(value: unknown): value is Skipped {
  return typeof value === 'object' && value !== null && 'skipped' in value;
}

const fmt = (value: number, unit = '') => (Number.isFinite(value) ? `${round(value)}${unit}` : 'n/a');

/** Judge every target of issue 6 against what was measured; a target with nothing measured is `met: null`. */
export function judgeTargets(results: Omit<BenchResults, 'targets'>): Target[] {
  const targets: Target[] = [];
  const atMost = (name: string, target: string, value: number, limit: number, unit: string) => {
    const met = Number.isFinite(value) ? value <= limit : null;
    targets.push({ name, target, measured: fmt(value, unit), met, ...(met === false ? { gap: `${fmt(value - limit, unit)} over` } : {}) });
  };
  for (const entry of results.models) {
    if (isSkipped(entry.result)) continue;
    const r = entry.result;
    atMost(`${r.model}: pipeline overhead (20-step image)`, '≤ 2 %', r.overheadPct, 2, ' %');
    atMost(`${r.model}: pipeline step vs bare run()`, '≤ +2 %', r.step.costPct, 2, ' %');
    if (entry.torch && !isSkipped(entry.torch)) {
      const s = entry.torch.speedup;
      targets.push({
        name: `${r.model}: runtime vs PyTorch per UNet call`,
        target: '≥ 3× faster',
        measured: `${fmt(s)}×`,
        met: s >= 3,
        ...(s < 3 ? { gap: `${fmt(3 - s)}× short` } : {}),
      });
    }
  }
  // Batching in the engine alone: images/min with 4 jobs sharing UNet calls against one job at a time.
  for (const entry of results.models) {
    if (isSkipped(entry.result)) continue;
    const one = entry.result.jobBatches.find((b) => b.count === 1);
    const four = entry.result.jobBatches.find((b) => b.count === 4);
    if (!one || !four) continue;
    const ratio = one.msPerImage / four.msPerImage;
    targets.push({
      name: `${entry.result.model}: engine images/min, 4 jobs sharing UNet calls vs one at a time`,
      target: '≥ 1.5×',
      measured: `${fmt(ratio)}×`,
      met: ratio >= 1.5,
      ...(ratio < 1.5 ? { gap: `${fmt(1.5 - ratio)}× short` } : {}),
    });
  }
  const bot = results.bot;
  if (bot && !isSkipped(bot.inProcess)) {
    atMost(`event-loop delay p99 while generating (${bot.model})`, '≤ 20 ms', bot.inProcess.loopWhileGenerating.p99Ms, 20, ' ms');
    const one = bot.inProcess.imagesPerMinuteOne;
    const many = bot.inProcess.imagesPerMinuteQueued;
    const ratio = many / one;
    targets.push({
      name: `bot images/min with ${bot.inProcess.queuedJobs} waiting vs one at a time (delivery included)`,
      target: '≥ 1.5×',
      measured: `${fmt(ratio)}× (${fmt(many)} vs ${fmt(one)})`,
      met: ratio >= 1.5,
      ...(ratio < 1.5 ? { gap: `${fmt(1.5 - ratio)}× short` } : {}),
    });
  }
  if (bot && !isSkipped(bot.process)) {
    atMost('defer p99, 30 members, bot in its own process', '≤ 50 ms', bot.process.defer.p99Ms, 50, ' ms');
    atMost(`bot process peak RSS (${bot.model})`, '< 300 MiB', bot.process.rssHighWaterMb, 300, ' MiB');
    atMost('/imagine → picture, queue idle, p50', '≤ 0.5 s', bot.process.pictureIdle.p50Ms, 500, ' ms');
    atMost('/imagine → picture, queue idle, p99', '≤ 1 s', bot.process.pictureIdle.p99Ms, 1000, ' ms');
    atMost('edits refused by the per-message limit while timing pictures', '0', bot.process.pictureIdle.rateLimited, 0, '');
  }
  const scale = results.scale;
  if (scale && !isSkipped(scale)) {
    const ratio = scale.linearRatio;
    const perWorker = scale.throughput.map((run) => `${run.workers}: ${fmt(run.imagesPerMinute)}`).join(', ');
    targets.push({
      name: `scaled: images/min with ${scale.linearAt} workers vs linear (stand-in, ${scale.steps} × ${scale.msPerStep} ms)`,
      target: '≥ 0.9 × linear',
      measured: `${fmt(ratio)} × linear (images/min by workers ${perWorker})`,
      met: Number.isFinite(ratio) ? ratio >= 0.9 : null,
      ...(ratio < 0.9 ? { gap: `${fmt(0.9 - ratio)} short` } : {}),
    });
    atMost(`scaled: submit() called → worker starts, idle workers, p99 of ${scale.overhead.fromCall.n}`, '≤ 20 ms', scale.overhead.fromCall.p99, 20, ' ms');
    if (scale.progress !== undefined && scale.progress.events > 0) {
      atMost(
        `scaled: a step's progress, worker's engine → bot's queue, p99 of ${scale.progress.events}`,
        `≤ one edit interval (${scale.progress.editIntervalMs} ms)`,
        scale.progress.latency.p99,
        scale.progress.editIntervalMs,
        ' ms',
      );
    }
    const f = scale.fairness;
    const over = f.scaledLongestMs - f.embeddedLongestMs;
    targets.push({
      name: `scaled: longest wait of a single-job member beside a flood of ${f.floodJobs} (${f.lanes} workers vs ${f.lanes} embedded lanes)`,
      target: `within one job time (${fmt(scale.jobMs)} ms) of embedded`,
      measured: `${fmt(f.scaledLongestMs)} vs ${fmt(f.embeddedLongestMs)} ms (${over >= 0 ? '+' : ''}${fmt(over)} ms)`,
      met: over <= scale.jobMs,
      ...(over > scale.jobMs ? { gap: `${fmt(over - scale.jobMs)} ms over` } : {}),
    });
  }
  return targets;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

/** The report as Markdown tables: what is printed and what tools/bench/README.md carries. */
export function formatReport(results: BenchResults): string {
  const m = results.machine;
  const out: string[] = [];
  out.push(`imagine bench, ${m.date.slice(0, 16).replace('T', ' ')} UTC: ${m.cpu}, ${m.cores} cores, ${m.memoryGb} GB, ${m.platform}, node ${m.node}, onnxruntime-node ${m.onnxruntimeNode}, provider ${results.executionProvider}, load average ${fmt(m.loadAverage)} at start; ${fmt(results.durationS)} s in all.`);
  for (const note of results.notes) out.push(`- ${note}`);

  const modelRows: string[][] = [];
  for (const e of results.models) {
    if (isSkipped(e.result)) {
      modelRows.push([e.label, `skipped: ${e.result.skipped}`, '', '', '', '', '', '', '']);
      continue;
    }
    const r = e.result;
    modelRows.push([
      `${e.label} (${r.width}×${r.height})`,
      fmt(r.loadMs, ' ms'),
      fmt(r.unetMsPerStep, ' ms'),
      fmt(r.sPerImage, ' s'),
      `${fmt(r.overheadPct, ' %')} (best ${fmt(r.overheadBestPct, ' %')})`,
      `${fmt(r.step.pipelineMs)} / ${fmt(r.step.bareRunPreallocMs)} ms (${r.step.costPct >= 0 ? '+' : ''}${fmt(r.step.costPct)} %); allocating run() ${fmt(r.step.bareRunMs)} ms`,
      fmt(r.step.pipelineWithPreviewMs, ' ms'),
      fmt(r.peakRssMb, ' MiB'),
      e.torch ? (isSkipped(e.torch) ? `skipped: ${e.torch.skipped}` : `${fmt(e.torch.onnxMs)} vs ${fmt(e.torch.torchMs)} ms: ${fmt(e.torch.speedup)}×`) : '',
    ]);
  }
  if (modelRows.length > 0) out.push('', 'Per model (guidance 7.5, so 2 UNet rows per image; euler; 20 steps; medians):', '');
  if (modelRows.length > 0) out.push(table(['model', 'load', 'UNet/step', 'per image', 'overhead', 'step: pipeline / bare run()', 'step w/ preview', 'peak RSS', 'runtime vs PyTorch (same net, same threads)'], modelRows));

  const batchRows: string[][] = [];
  for (const e of results.models) {
    if (isSkipped(e.result)) continue;
    for (const [kind, list] of [['one job, count=N', e.result.batches], ['N jobs sharing calls', e.result.jobBatches]] as const) {
      batchRows.push([e.label, kind, ...list.map((b) => `${fmt(b.msPerImage, ' ms')} (${fmt(b.relativeToOne)}×); UNet ${fmt(b.unetMsPerStepPerImage, ' ms')}/step`)]);
    }
  }
  if (batchRows.length > 0) {
    const counts = (results.models.find((e) => !isSkipped(e.result))?.result as ModelSectionResult).batches.map((b) => `batch ${b.count}: ms/image`);
    out.push('', 'Batching (median wall time per image, × against batch 1; UNet time per step per image):', '', table(['model', 'how', ...counts], batchRows));
  }

  for (const e of results.models) {
    if (!e.levers || isSkipped(e.levers)) continue;
    out.push('', `Runtime levers on ${e.label}'s UNet (batch ${e.levers.batch}, median of interleaved rounds; vs the loader's current options):`, '');
    out.push(table(['variant', 'median', 'vs current', 'fastest call', 'session create', 'output max |Δ|'], e.levers.results.map((l) => [l.name, fmt(l.medianMs, ' ms'), `${l.vsCurrentPct >= 0 ? '+' : ''}${fmt(l.vsCurrentPct)} %`, fmt(l.minMs, ' ms'), fmt(l.createMs, ' ms'), l.maxAbsDiff === undefined ? '' : l.maxAbsDiff === 0 ? '0 (same)' : l.maxAbsDiff.toExponential(2)])));
  }
  const startups = results.models.filter((e) => e.cachedStartup && !isSkipped(e.cachedStartup));
  if (startups.length > 0) {
    out.push('', 'Model start-up (loadModel, median of interleaved loads) without and with the optimised-graph cache (DATA_DIR/ort-cache):', '');
    out.push(table(['model', 'no cache', 'cache filled', 'change', 'first load (fills the cache)'], startups.map((e) => {
      const c = e.cachedStartup as CachedStartupResult;
      return [e.label, fmt(c.coldMs, ' ms'), fmt(c.warmMs, ' ms'), `${c.savedPct >= 0 ? '+' : ''}${fmt(c.savedPct)} %`, fmt(c.firstFillMs, ' ms')];
    })));
  }
  for (const e of results.models) {
    if (!e.loopLevers || isSkipped(e.loopLevers)) continue;
    out.push('', `Threads and the bot's event loop: ${e.label}'s UNet in a worker thread, the main thread's loop delay meanwhile:`, '');
    out.push(table(['variant', 'UNet median', 'fastest', 'loop delay p50', 'p99 (worst round)', 'max'], e.loopLevers.results.map((l) => [l.name, fmt(l.medianMs, ' ms'), fmt(l.minMs, ' ms'), fmt(l.loopP50Ms, ' ms'), fmt(l.loopP99Ms, ' ms'), fmt(l.loopMaxMs, ' ms')])));
  }

  if (results.fp16) {
    const f = results.fp16;
    out.push('', isSkipped(f)
      ? `fp16 weights: skipped: ${f.skipped}`
      : `fp16 weights (sd-tiny vs sd-tiny-fp16, same UNet, ${f.cells}×${f.cells} latents, batch 2, ${f.calls} calls each): float32 ${fmt(f.float32Ms, ' ms')}, float16 ${fmt(f.float16Ms, ' ms')} (${f.costPct >= 0 ? '+' : ''}${fmt(f.costPct)} %).`);
  }

  const bot = results.bot;
  if (bot) {
    out.push('', `The bot with ${bot.model} (real app, discord.js, emulator on 127.0.0.1):`, '');
    const rows: string[][] = [];
    if (isSkipped(bot.inProcess)) rows.push(['in-process measurements', `skipped: ${bot.inProcess.skipped}`]);
    else {
      const b = bot.inProcess;
      rows.push(['event-loop delay while generating, p50 / p99 / max', `${fmt(b.loopWhileGenerating.p50Ms)} / ${fmt(b.loopWhileGenerating.p99Ms)} / ${fmt(b.loopWhileGenerating.maxMs)} ms`]);
      rows.push(['event-loop delay during 30-member bursts (emulator included), p50 / p99', `${fmt(b.loopDuringBurst.p50Ms)} / ${fmt(b.loopDuringBurst.p99Ms)} ms`]);
      rows.push([`defer, ${b.defer.samples} commands in bursts, p50 / p99 (emulator's work on the same loop: an upper bound)`, `${fmt(b.defer.p50Ms)} / ${fmt(b.defer.p99Ms)} ms${b.defer.failed ? `, ${b.defer.failed} unanswered` : ''}`]);
      rows.push(['one job alone: /imagine to image', `${fmt(b.singleJobS.reduce((a, c) => a + c, 0) / b.singleJobS.length)} s → ${fmt(b.imagesPerMinuteOne)} images/min`]);
      rows.push([`${b.queuedJobs} jobs sent at once: to the last image`, `${fmt(b.queuedJobsS)} s → ${fmt(b.imagesPerMinuteQueued)} images/min`]);
    }
    for (const { name, result: p } of [{ name: 'npm start', result: bot.process }, ...(bot.processLevers ?? [])]) {
      if (isSkipped(p)) {
        rows.push([`bot as its own process (${name})`, `skipped: ${p.skipped}`]);
        continue;
      }
      rows.push([`defer, ${p.defer.samples} commands, p50 / p99 (bot in its own process, ${name})`, `${fmt(p.defer.p50Ms)} / ${fmt(p.defer.p99Ms)} ms${p.defer.failed ? `, ${p.defer.failed} unanswered` : ''}`]);
      rows.push([`bot process RSS: idle / busy / high-water (${name})`, `${fmt(p.rssIdleMb)} / ${fmt(p.rssBusyMb)} / ${fmt(p.rssHighWaterMb)} MiB`]);
      rows.push([`/imagine → picture, queue idle, ${p.pictureIdle.samples} commands, p50 / p99 (${name})`, `${fmt(p.pictureIdle.p50Ms)} / ${fmt(p.pictureIdle.p99Ms)} ms, ${p.pictureIdle.rateLimited} edits refused`]);
    }
    out.push(table(['measure', 'value'], rows));
  }

  const scale = results.scale;
  if (scale) {
    if (isSkipped(scale)) out.push('', `The scaled mode: skipped: ${scale.skipped}`);
    else {
      const o = scale.overhead;
      const f = scale.fairness;
      out.push('', `The scaled mode (redis-server ${scale.redisVersion} on 127.0.0.1; bot queue and image workers in one process; stand-in engine, ${scale.steps} steps × ${scale.msPerStep} ms = ${scale.jobMs} ms a job, one job per run):`, '');
      out.push(table(['measure', 'value'], [
        ...scale.throughput.map((run) => [`images/min with ${run.workers} worker${run.workers === 1 ? '' : 's'} (${run.jobs} jobs at once, to the last delivery)`, `${fmt(run.imagesPerMinute)} (${fmt(run.seconds, ' s')})`]),
        [`images/min at ${scale.linearAt} workers vs linear`, `${fmt(scale.linearRatio)} ×`],
        [`submit() called → generate starts, ${o.workers} idle workers, ${o.fromCall.n} jobs, p50 / p99 / max`, `${fmt(o.fromCall.p50)} / ${fmt(o.fromCall.p99)} / ${fmt(o.fromCall.max)} ms`],
        [`control: the embedded FairQueue's submit() called → generate starts, same machine, ${o.embeddedFromCall.n} jobs, p50 / p99 / max`, `${fmt(o.embeddedFromCall.p50)} / ${fmt(o.embeddedFromCall.p99)} / ${fmt(o.embeddedFromCall.max)} ms`],
        ['submit() resolved → generate starts, p50 / p99 (negative: started before the answer)', `${fmt(o.fromResolved.p50)} / ${fmt(o.fromResolved.p99)} ms`],
        ['submit() itself (journal, fair-state transaction, ticket, places), p50 / p99', `${fmt(o.submit.p50)} / ${fmt(o.submit.p99)} ms`],
        ...(scale.progress !== undefined
          ? [[`a step's progress, worker's engine → bot's queue, ${scale.progress.events} events, p50 / p99 / max`, `${fmt(scale.progress.latency.p50)} / ${fmt(scale.progress.latency.p99)} / ${fmt(scale.progress.latency.max)} ms`]]
          : []),
        [`single-job members' waits beside a flood of ${f.floodJobs}, scaled (${f.lanes} workers)`, f.scaledWaitsMs.map((ms) => fmt(ms)).join(', ') + ' ms'],
        [`the same, embedded FairQueue with ${f.lanes} lanes`, f.embeddedWaitsMs.map((ms) => fmt(ms)).join(', ') + ' ms'],
      ]));
    }
  }

  out.push('', 'Targets (issue 6, and issue 11 for the scaled mode):', '');
  out.push(table(['target', 'wanted', 'measured', 'met'], results.targets.map((t) => [t.name, t.target, t.measured, t.met === null ? 'n/a' : t.met ? 'met' : `MISSED (${t.gap})`])));
  return out.join('\n');
}
