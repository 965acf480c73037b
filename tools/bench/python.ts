/**
 * The bench's Python side (Debian's python3 with torch 1.13 + onnx): building the bench models into a cache, and
 * timing the same UNet in PyTorch. Everything here degrades to a reason string when Python or torch is missing.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Debian's interpreter: the one with python3-torch (a pyenv or venv python3 on PATH usually lacks it). */
export const DEFAULT_PYTHON = '/usr/bin/python3';

/** torch's version, or why the PyTorch side cannot run. */
export function probeTorch(python: string): { version: string } | { reason: string } {
  if (!existsSync(python)) return { reason: `${python} not found` };
  const probe = spawnSync(python, ['-c', 'import torch, onnx; print(torch.__version__)'], { encoding: 'utf8', timeout: 60_000 });
  if (probe.status !== 0) return { reason: `${python} has no torch/onnx (${(probe.stderr || probe.error?.message || '').trim().split('\n').pop()})` };
  return { version: probe.stdout.trim() };
}

/** Files whose change means the cached models must be rebuilt. */
const BUILD_INPUTS = [
  'tools/bench/build_bench_models.py',
  'test/fixtures/build-test-models.py',
  'training/model.py',
  'training/export.py',
  'training/train.py',
  'training/data.py',
];

function run(python: string, args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(python, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-4000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Build sd-bench/ and shapes-arch/ into `cacheDir` unless a build from the same sources is there. `ckpt`: export
 * the embedded architecture from this training checkpoint instead of random weights.
 */
export async function buildBenchModels(python: string, cacheDir: string, ckpt?: string): Promise<{ sdDir: string; shapesDir: string }> {
  const hash = createHash('sha256');
  for (const file of BUILD_INPUTS) {
    const full = path.join(ROOT, file);
    hash.update(file).update(existsSync(full) ? readFileSync(full) : '');
  }
  hash.update(ckpt ? `${ckpt}:${readFileSync(ckpt).length}` : 'random');
  const stamp = hash.digest('hex');
  const stampFile = path.join(cacheDir, 'build-stamp');
  const sdDir = path.join(cacheDir, 'sd-bench');
  const shapesDir = path.join(cacheDir, 'shapes-arch');
  if (existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp && existsSync(path.join(sdDir, 'unet', 'model.onnx'))) {
    return { sdDir, shapesDir };
  }
  const args = [path.join(ROOT, 'tools', 'bench', 'build_bench_models.py'), '--out', cacheDir, '--sd', '--shapes', ...(ckpt ? ['--ckpt', ckpt] : [])];
  const result = await run(python, args, 300_000);
  if (result.code !== 0) throw new Error(`tools/bench/build_bench_models.py failed: ${result.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  writeFileSync(stampFile, stamp);
  return { sdDir, shapesDir };
}

/** training/model.py UNet arguments and one input's shape, as bench-model.json writes them. */
export interface UnetSpec {
  channels: number[];
  attn: boolean[];
  stem: number;
  in_ch: number;
  ctx_dim: number;
  sample: [number, number, number];
  sequence: number;
}

/** The spec of a model folder built by the bench, or of the embedded model from its training.json. */
export function unetSpecOf(modelDir: string): UnetSpec | undefined {
  const bench = path.join(modelDir, 'bench-model.json');
  if (existsSync(bench)) {
    const info = JSON.parse(readFileSync(bench, 'utf8')) as { unet: Omit<UnetSpec, 'sample' | 'sequence'>; sample: UnetSpec['sample']; sequence: number };
    return { ...info.unet, sample: info.sample, sequence: info.sequence };
  }
  const training = path.join(modelDir, 'training.json');
  if (!existsSync(training)) return undefined;
  const { config } = JSON.parse(readFileSync(training, 'utf8')) as { config: { channels: number[]; attn: boolean[]; stem: number; text_dim: number; max_len?: number } };
  const unetConfig = JSON.parse(readFileSync(path.join(modelDir, 'unet', 'config.json'), 'utf8')) as { sample_size: number; in_channels: number };
  return {
    channels: config.channels,
    attn: config.attn,
    stem: config.stem,
    in_ch: unetConfig.in_channels,
    ctx_dim: config.text_dim,
    sample: [unetConfig.in_channels, unetConfig.sample_size, unetConfig.sample_size],
    // training/train.py MAX_LEN, which export.py writes as the tokenizer's model_max_length.
    sequence: config.max_len ?? 32,
  };
}

/** Milliseconds of each timed call of the UNet in PyTorch (tools/bench/torch_unet.py). */
export async function timeTorchUnet(python: string, spec: UnetSpec, options: { batch: number; threads: number; calls: number; warmup: number }): Promise<{ version: string; threads: number; ms: number[] }> {
  const args = [
    path.join(ROOT, 'tools', 'bench', 'torch_unet.py'),
    '--spec', JSON.stringify(spec),
    '--batch', String(options.batch),
    '--threads', String(options.threads),
    '--calls', String(options.calls),
    '--warmup', String(options.warmup),
  ];
  const result = await run(python, args, 300_000);
  if (result.code !== 0) throw new Error(`tools/bench/torch_unet.py failed: ${result.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  const line = result.stdout.trim().split('\n').pop() ?? '';
  const parsed = JSON.parse(line) as { torch: string; threads: number; ms: number[] };
  return { version: parsed.torch, threads: parsed.threads, ms: parsed.ms };
}

/**
 * The UNet of `modelDir` rewritten by a tools/bench script (`quantize_dynamic.py`: int8 dynamic quantisation of
 * its MatMuls, and Convs with `--conv`; `to_fp16.py`: float16 throughout), written to `out` (rebuilt when the model,
 * the script or the flags change).
 */
export async function rewriteUnet(python: string, modelDir: string, out: string, scriptName: 'quantize_dynamic.py' | 'to_fp16.py', flags: string[] = []): Promise<string> {
  const source = path.join(modelDir, 'unet', 'model.onnx');
  const script = path.join(ROOT, 'tools', 'bench', scriptName);
  const stamp = createHash('sha256').update(readFileSync(source)).update(readFileSync(script)).update(flags.join(' ')).digest('hex');
  const stampFile = `${out}.stamp`;
  if (existsSync(out) && existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp) return out;
  // The first rewrite on a machine finds no folder to write into (the bench cache holds only the built models).
  mkdirSync(path.dirname(out), { recursive: true });
  const result = await run(python, [script, source, out, ...flags], 300_000);
  if (result.code !== 0) throw new Error(`tools/bench/${scriptName} failed: ${result.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  writeFileSync(stampFile, stamp);
  return out;
}
