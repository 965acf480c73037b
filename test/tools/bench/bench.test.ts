/**
 * Smoke test of the bench harness on the tiny test models: every section produces well-formed numbers that agree
 * with each other, the report judges targets from what was measured, the CLI parses its flags. No timing
 * assertions: speed targets belong to `npm run bench`, not to tests.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseBenchArgs } from '../../../tools/bench/bench.js';
import { probeOnnx } from '../../../tools/bench/flops.js';
import { runSection } from '../../../tools/bench/child.js';
import { measureCachedStartup, measureFp16, measureLevers } from '../../../tools/bench/levers-section.js';
import { measureLoopLevers } from '../../../tools/bench/loop-levers-section.js';
import { measureModel, type ModelSectionResult } from '../../../tools/bench/model-section.js';
import { rewriteUnet, unetSpecOf } from '../../../tools/bench/python.js';
import { formatReport, judgeTargets, type ModelEntry } from '../../../tools/bench/report.js';
import type { ScaleResult } from '../../../tools/bench/scale-section.js';
import { machineInfo } from '../../../tools/bench/machine.js';
import { percentile, summarize } from '../../../tools/bench/stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const SD_TINY = path.join(ROOT, 'test/fixtures/models/sd-tiny');
const PIXEL_TINY = path.join(ROOT, 'test/fixtures/models/pixel-tiny');

describe('bench statistics', () => {
  it('GIVEN 1..100 THEN nearest-rank p50 is 50, p99 is 99 and p100 the maximum', () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i); // unsorted on purpose
    expect(percentile(values, 50)).toBe(50);
    expect(percentile(values, 99)).toBe(99);
    expect(percentile(values, 100)).toBe(100);
    expect(summarize(values)).toMatchObject({ n: 100, min: 1, max: 100, mean: 50.5 });
  });

  it('GIVEN fewer than 100 samples THEN p99 is the largest (a short series cannot hide its worst case)', () => {
    expect(percentile([3, 9, 1], 99)).toBe(9);
  });

  it('GIVEN no samples or a bad percentage THEN it says what it expected', () => {
    expect(() => percentile([], 50)).toThrow(/at least one sample/);
    expect(() => percentile([1], 0)).toThrow(/Expected `p`/);
  });
});

describe('bench model section on sd-tiny', () => {
  let result: ModelSectionResult;

  it('GIVEN a tiny model THEN load, images, step comparison and batches are measured and consistent', async () => {
    result = await measureModel({ modelDir: SD_TINY, images: 2, compareRounds: 1, compareSteps: 3, batches: [1, 2], batchSteps: 2, batchRepeats: 1, steps: 3 });
    expect(result.model).toBe('sd-tiny');
    expect(result.executionProvider).toBe('cpu');
    expect(result.loadMs).toBeGreaterThan(0);
    expect(result.images).toHaveLength(1); // the first image is a warm-up
    for (const image of result.images) {
      expect(image.unetMs).toBeLessThanOrEqual(image.runtimeMs);
      expect(image.runtimeMs).toBeLessThanOrEqual(image.totalMs);
    }
    expect(result.overheadPct).toBeGreaterThanOrEqual(0);
    expect(result.overheadPct).toBeLessThan(100);
    expect(result.sPerImage * 1000).toBeCloseTo(result.images[0].totalMs, 6);
    // 3 steps per job: steps 2 and 3 are intervals, one job per round.
    expect(result.step.samples).toBe(2);
    expect(result.step.bareRunMs).toBeGreaterThan(0);
    expect(result.step.bareRunPreallocMs).toBeGreaterThan(0);
    expect(result.step.costPct).toBeCloseTo((result.step.pipelineMs / result.step.bareRunPreallocMs - 1) * 100, 6);
    for (const list of [result.batches, result.jobBatches]) {
      expect(list.map((b) => b.count)).toEqual([1, 2]);
      expect(list[0].relativeToOne).toBe(1);
      expect(list[1].msPerImage).toBeCloseTo(list[1].totalMs / 2, 6);
    }
    expect(result.peakRssMb).toBeGreaterThanOrEqual(result.rssAfterLoadMb * 0.5);
  }, 120_000);

  it('GIVEN the measured result THEN the report judges each target from the number it shows', () => {
    const entry: ModelEntry = { role: 'sd', label: 'sd-tiny', dir: 'test/fixtures/models/sd-tiny', result };
    const partial = { machine: machineInfo(), executionProvider: 'cpu', notes: ['a note'], models: [entry], durationS: 1 };
    const targets = judgeTargets(partial);
    const overhead = targets.find((t) => t.name.includes('pipeline overhead'))!;
    expect(overhead.met).toBe(result.overheadPct <= 2);
    expect(overhead.gap !== undefined).toBe(!overhead.met);
    const text = formatReport({ ...partial, targets });
    expect(text).toContain('sd-tiny (');
    expect(text).toContain('a note');
    expect(text).toMatch(/Targets \(issue 6/);
    expect(text.split('\n').filter((line) => line.startsWith('| sd-tiny')).length).toBeGreaterThanOrEqual(3);
  });
});

describe('bench levers and child processes', () => {
  it('GIVEN two levers THEN the current options come first and each variant has its own median', async () => {
    const { results, batch } = await measureLevers({ modelDir: SD_TINY, calls: 1, rounds: 1, only: ['spinning (ort default)', 'preallocated output'] });
    expect(batch).toBe(2);
    expect(results.map((r) => r.name)).toEqual(['current', 'spinning (ort default)', 'preallocated output']);
    expect(results[0].vsCurrentPct).toBe(0);
    for (const r of results) {
      expect(r.medianMs).toBeGreaterThan(0);
      expect(r.calls).toBe(1);
    }
  }, 60_000);

  it('GIVEN graph levels THEN each variant\'s output is compared with the current one: the layout level gives the same output as all', async () => {
    const { results } = await measureLevers({ modelDir: SD_TINY, calls: 1, rounds: 1, only: ['graph layout', 'graph extended'] });
    expect(results.map((r) => r.name)).toEqual(['current', 'graph extended', 'graph layout']);
    expect(results[0].maxAbsDiff).toBe(0);
    expect(results[2].maxAbsDiff).toBe(0);
    expect(results[1].maxAbsDiff).toBeLessThan(1e-4);
  }, 60_000);

  it.skipIf(!probeOnnx().ok)('GIVEN the int8 and fp16 rewrites of a UNet THEN they run beside the model\'s own with a small, non-zero output difference', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imagine-rewrites-'));
    try {
      const int8 = await rewriteUnet('/usr/bin/python3', SD_TINY, path.join(dir, 'int8.onnx'), 'quantize_dynamic.py');
      const fp16 = await rewriteUnet('/usr/bin/python3', SD_TINY, path.join(dir, 'fp16.onnx'), 'to_fp16.py');
      expect(fs.readFileSync(int8).includes('MatMulInteger')).toBe(true);
      expect(fs.readFileSync(int8).includes('DynamicQuantizeLinear')).toBe(true);
      const { results } = await measureLevers({ modelDir: SD_TINY, calls: 1, rounds: 1, only: [], files: { int8, fp16 } });
      expect(results.map((r) => r.name)).toEqual(['current', 'int8', 'fp16']);
      for (const r of results.slice(1)) {
        expect(r.maxAbsDiff).toBeGreaterThan(0);
        expect(r.maxAbsDiff).toBeLessThan(0.5);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('GIVEN the optimised-graph cache THEN cold and warm loads are both timed', async () => {
    const r = await measureCachedStartup(SD_TINY, 1);
    expect(r).toMatchObject({ model: 'sd-tiny', loads: 1 });
    for (const ms of [r.coldMs, r.warmMs, r.firstFillMs]) expect(ms).toBeGreaterThan(0);
    expect(r.savedPct).toBeCloseTo((r.warmMs / r.coldMs - 1) * 100, 6);
  }, 60_000);

  it('GIVEN the thread levers THEN each runs the UNet in a worker and the main thread’s loop delay is read', async () => {
    const { results } = await measureLoopLevers({ modelDir: PIXEL_TINY, calls: 2, rounds: 1 });
    expect(results.map((r) => r.name).slice(0, 2)).toEqual(['current', 'spinning (ort default)']);
    for (const r of results) {
      expect(r.minMs).toBeGreaterThan(0);
      expect(r.minMs).toBeLessThanOrEqual(r.medianMs);
      expect(r.loopP50Ms).toBeGreaterThanOrEqual(0);
      expect(r.loopP99Ms).toBeGreaterThanOrEqual(r.loopP50Ms);
    }
  }, 60_000);

  it('GIVEN the float32 and float16 fixtures THEN both UNets run at the asked size and are compared', async () => {
    const f = await measureFp16(SD_TINY, path.join(ROOT, 'test/fixtures/models/sd-tiny-fp16'), 16, 2, 1);
    expect(f).toMatchObject({ cells: 16, calls: 2 });
    expect(f.float32Ms).toBeGreaterThan(0);
    expect(f.costPct).toBeCloseTo((f.float16Ms / f.float32Ms - 1) * 100, 6);
  }, 60_000);

  it('GIVEN a section run in a child process THEN its result comes back as data', async () => {
    const times = await runSection<number[]>('bare-unet', { modelDir: PIXEL_TINY, threads: 1, calls: 2 }, 60_000);
    expect(times).toHaveLength(2);
    for (const t of times) expect(t).toBeGreaterThan(0);
  }, 60_000);

  it('GIVEN a section that fails THEN the promise rejects with the child’s message', async () => {
    await expect(runSection('bare-unet', { modelDir: path.join(ROOT, 'test/fixtures/models/no-such-model'), threads: 1, calls: 1 }, 60_000)).rejects.toThrow(
      /bare-unet.*exited with 1.*model_index\.json/,
    );
  }, 60_000);
});

describe('bench helpers', () => {
  it('GIVEN a bench model folder or an exported embedded model THEN the PyTorch side gets the same network spec', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imagine-bench-test-'));
    try {
      fs.mkdirSync(path.join(dir, 'unet'));
      fs.writeFileSync(path.join(dir, 'unet', 'config.json'), JSON.stringify({ sample_size: 32, in_channels: 3 }));
      fs.writeFileSync(path.join(dir, 'training.json'), JSON.stringify({ config: { channels: [48, 64, 96], attn: [false, true, true], stem: 2, text_dim: 128 } }));
      expect(unetSpecOf(dir)).toEqual({ channels: [48, 64, 96], attn: [false, true, true], stem: 2, in_ch: 3, ctx_dim: 128, sample: [3, 32, 32], sequence: 32 });
      fs.writeFileSync(
        path.join(dir, 'bench-model.json'),
        JSON.stringify({ unet: { channels: [64], attn: [true], stem: 1, in_ch: 4, ctx_dim: 32 }, sample: [4, 64, 64], sequence: 77 }),
      );
      expect(unetSpecOf(dir)).toMatchObject({ in_ch: 4, sample: [4, 64, 64], sequence: 77 });
      expect(unetSpecOf(SD_TINY)).toBeUndefined();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('GIVEN bench flags THEN they parse; GIVEN an unknown flag THEN it throws', () => {
    expect(parseBenchArgs(['--quick', '--no-bot', '--out', 'x.json'])).toMatchObject({ quick: true, skipBot: true, skipTorch: false, out: path.resolve('x.json') });
    expect(parseBenchArgs(['--provider', 'webgpu,cpu'])).toMatchObject({ providers: ['webgpu', 'cpu'] });
    expect(() => parseBenchArgs(['--provider', 'tpu'])).toThrow(/Expected `--provider` to be a comma-separated list of cpu, cuda, webgpu, got `tpu`/);
    expect(() => parseBenchArgs(['--fast'])).toThrow(/Unknown option/);
    expect(() => parseBenchArgs(['extra'])).toThrow(/no positional arguments/);
    expect(parseBenchArgs([])).toMatchObject({ skipScale: false, scaleOnly: false });
    expect(parseBenchArgs(['--no-scale'])).toMatchObject({ skipScale: true, scaleOnly: false });
    expect(parseBenchArgs(['--scale-only'])).toMatchObject({ skipScale: false, scaleOnly: true });
    expect(() => parseBenchArgs(['--no-scale', '--scale-only'])).toThrow(/at most one of `--no-scale` and `--scale-only`/);
  });

  it('GIVEN scaled-mode figures THEN each of its three targets is judged from them, and a missed one says by how much', () => {
    const summary = (p99: number) => ({ n: 120, p50: p99 / 2, p99, mean: p99 / 2, min: 1, max: p99 });
    const scale = (fourWorkers: number, p99: number, scaledLongestMs: number): ScaleResult => ({
      redisVersion: '7.0.15',
      msPerStep: 25,
      steps: 20,
      jobMs: 500,
      throughput: [
        { workers: 1, jobs: 8, seconds: 4, imagesPerMinute: 120 },
        { workers: 4, jobs: 32, seconds: 4, imagesPerMinute: fourWorkers },
      ],
      linearRatio: fourWorkers / 480,
      linearAt: 4,
      overhead: { fromCall: summary(p99), fromResolved: summary(p99 / 2), submit: summary(3), workers: 2, embeddedFromCall: summary(2) },
      progress: { latency: summary(p99 * 100), events: 50, editIntervalMs: 1500 },
      fairness: { floodJobs: 12, singles: 3, lanes: 3, scaledLongestMs, embeddedLongestMs: 500, scaledWaitsMs: [scaledLongestMs], embeddedWaitsMs: [500] },
    });
    const judged = (result: ScaleResult) => judgeTargets({ machine: machineInfo(), executionProvider: 'cpu', notes: [], models: [], scale: result, durationS: 1 }).filter((t) => t.name.startsWith('scaled:'));
    expect(judged(scale(470, 14, 900)).map((t) => t.met)).toEqual([true, true, true, true]);
    const missed = judged(scale(400, 25, 1100));
    expect(missed.map((t) => t.met)).toEqual([false, false, false, false]);
    expect(missed.map((t) => t.gap)).toEqual(['0.067 short', '5 ms over', '1000 ms over', '100 ms over']);
    const text = formatReport({ machine: machineInfo(), executionProvider: 'cpu', notes: [], models: [], scale: scale(470, 14, 900), targets: judged(scale(470, 14, 900)), durationS: 1 });
    expect(text).toContain('images/min with 4 workers (32 jobs at once, to the last delivery)');
    expect(text).not.toContain('Per model');
  });
});
