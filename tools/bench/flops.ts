/**
 * How close the UNet gets to this CPU's limit (issue 17): per model, the FLOPs of one UNet call counted from the
 * graph (tools/bench/unet_flops.py), the median time of that call with the pipeline's inputs and session options
 * (loadModel, tools/bench/unet-feeds.ts), and the achieved GFLOP/s against the peak of tools/bench/cpu-peak.ts.
 *
 *   npx tsx tools/bench/flops.ts [--model DIR ...] [--calls N] [--json FILE] [--python /usr/bin/python3]
 *
 * Default models: models/imagine-shapes, test/fixtures/models/sd-tiny, and the bench's sd-bench when a bench run
 * has built it (node_modules/.cache/imagine-bench/sd-bench).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../../src/diffusion/model.js';
import { cpuPeak, type CpuPeak } from './cpu-peak.js';
import { DEFAULT_PYTHON, ROOT } from './python.js';
import { median } from './stats.js';
import { unetFeeds, unetShapeOf } from './unet-feeds.js';

export interface FlopCount {
  flops: number;
  byOp: Record<string, { nodes: number; flops: number }>;
  inputsUsed: Record<string, number[]>;
  otherElements: number;
  unknownShapeNodes: string[];
  subgraphNodesIgnored: number;
  note: string;
}

/** Run unet_flops.py on `onnxFile` with the given concrete input shapes. */
export function countFlops(onnxFile: string, inputs: Record<string, readonly number[]>, python = DEFAULT_PYTHON): FlopCount {
  const args = [path.join(ROOT, 'tools/bench/unet_flops.py'), onnxFile];
  for (const [name, dims] of Object.entries(inputs)) args.push('--input', `${name}=${dims.join(',')}`);
  const result = spawnSync(python, args, { encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`unet_flops.py failed: ${(result.stderr || result.error?.message || '').trim()}`);
  return JSON.parse(result.stdout) as FlopCount;
}

/** Whether `python` can import onnx; the reason when it cannot. */
export function probeOnnx(python = DEFAULT_PYTHON): { ok: true } | { ok: false; reason: string } {
  if (!existsSync(python)) return { ok: false, reason: `${python} not found` };
  const probe = spawnSync(python, ['-c', 'import onnx, numpy'], { encoding: 'utf8', timeout: 60_000 });
  return probe.status === 0 ? { ok: true } : { ok: false, reason: `${python} cannot import onnx/numpy: ${(probe.stderr ?? '').trim().split('\n').pop()}` };
}

export interface FlopsRow {
  model: string;
  dir: string;
  inputs: Record<string, number[]>;
  gflopPerCall: number;
  msPerCall: number;
  minMs: number;
  gflops: number;
  pctOfPeak: number;
  calls: number;
  count: FlopCount;
}

/** One model: count, then time `calls` UNet runs after `warmup` runs, with the pipeline's feeds and options. */
export async function measureFlops(dir: string, peak: CpuPeak, calls = 20, warmup = 3, python = DEFAULT_PYTHON): Promise<FlopsRow> {
  const model = await loadModel(dir, { log: () => {} });
  try {
    // The pipeline's batch for one image: 2 rows with classifier-free guidance, 1 for a guidance-embedded model.
    const feeds = unetFeeds(model, unetShapeOf(model, model.unet.timestepCond ? 1 : 2));
    const inputs = Object.fromEntries(Object.entries(feeds).map(([name, t]) => [name, [...t.dims]]));
    const count = countFlops(path.join(model.dir, 'unet', 'model.onnx'), inputs, python);
    for (let i = 0; i < warmup; i++) await model.unet.session.run(feeds);
    const times: number[] = [];
    for (let i = 0; i < calls; i++) {
      const t0 = performance.now();
      await model.unet.session.run(feeds);
      times.push(performance.now() - t0);
    }
    const ms = median(times);
    const gflops = count.flops / 1e9 / (ms / 1000);
    return {
      model: model.info.name,
      dir: path.relative(ROOT, model.dir) || model.dir,
      inputs,
      gflopPerCall: count.flops / 1e9,
      msPerCall: ms,
      minMs: Math.min(...times),
      gflops,
      pctOfPeak: (gflops / peak.peakGflops) * 100,
      calls,
      count,
    };
  } finally {
    await model.release();
  }
}

export function defaultModels(): string[] {
  const dirs = [path.join(ROOT, 'models/imagine-shapes'), path.join(ROOT, 'test/fixtures/models/sd-tiny')];
  const sdBench = path.join(ROOT, 'node_modules/.cache/imagine-bench/sd-bench');
  if (existsSync(path.join(sdBench, 'unet', 'model.onnx'))) dirs.push(sdBench);
  return dirs.filter((d) => existsSync(path.join(d, 'unet', 'model.onnx')));
}

export interface FlopsArgs {
  models: string[];
  calls: number;
  json?: string;
  python: string;
}

export function parseFlopsArgs(argv: readonly string[]): FlopsArgs {
  const out: FlopsArgs = { models: [], calls: 20, python: DEFAULT_PYTHON };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === '--model') out.models.push(path.resolve(value()));
    else if (flag === '--calls') out.calls = Number(value());
    else if (flag === '--json') out.json = value();
    else if (flag === '--python') out.python = value();
    else throw new Error(`unknown flag ${flag}`);
  }
  if (!Number.isInteger(out.calls) || out.calls < 1) throw new Error('--calls must be a positive integer');
  return out;
}

export function formatFlopsTable(rows: readonly FlopsRow[], peak: CpuPeak): string {
  const lines = [
    '| model | UNet input (sample) | GFLOP per call | ms per call (median) | achieved GFLOP/s | % of peak |',
    '|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const sample = Object.values(r.inputs)[0] ?? [];
    lines.push(`| ${r.model} | ${sample.join('×')} | ${r.gflopPerCall.toPrecision(3)} | ${r.msPerCall.toPrecision(3)} | ${r.gflops.toPrecision(3)} | ${r.pctOfPeak.toFixed(1)} % |`);
  }
  lines.push('', `Peak (fp32, ${peak.model}): ${peak.formula}`, `Clock: ${peak.clockSource}. FMA units: ${peak.fmaAssumption}.`);
  return lines.join('\n');
}

async function main(): Promise<void> {
  const args = parseFlopsArgs(process.argv.slice(2));
  const probe = probeOnnx(args.python);
  if (!probe.ok) throw new Error(probe.reason);
  const peak = cpuPeak();
  const models = args.models.length > 0 ? args.models : defaultModels();
  const rows: FlopsRow[] = [];
  for (const dir of models) rows.push(await measureFlops(dir, peak, args.calls, 3, args.python));
  console.log(formatFlopsTable(rows, peak));
  const loadAverage = os.loadavg();
  console.log(`\n${new Date().toISOString()}, load average ${loadAverage.map((l) => l.toFixed(2)).join(' ')}, ${os.availableParallelism()} logical CPUs`);
  for (const r of rows) {
    if (r.count.unknownShapeNodes.length > 0) console.log(`${r.model}: ${r.count.unknownShapeNodes.length} counted-op nodes with unknown shapes were not counted`);
    if (r.count.subgraphNodesIgnored > 0) console.log(`${r.model}: ${r.count.subgraphNodesIgnored} nodes inside Loop/If/Scan subgraphs were not counted`);
  }
  if (args.json) {
    writeFileSync(args.json, `${JSON.stringify({ date: new Date().toISOString(), loadAverage, peak, rows }, null, 2)}\n`);
    console.log(`wrote ${args.json}`);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
