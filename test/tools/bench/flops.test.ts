/**
 * The "how close to the CPU's limit" tool: the FLOP counter (tools/bench/unet_flops.py) on tiny graphs built here
 * with known multiply-accumulates, and the peak formula on a canned /proc/cpuinfo. No timing.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpuPeakFrom } from '../../../tools/bench/cpu-peak.js';
import { countFlops, parseFlopsArgs, probeOnnx } from '../../../tools/bench/flops.js';

const onnx = probeOnnx();
if (!onnx.ok) console.warn(`flops.test: skipping the FLOP counter tests: ${onnx.reason}`);

/** Build the test graph with python3-onnx: every counted op with a MAC count worked out by hand below. */
const BUILD = `
import sys, numpy as np, onnx
from onnx import helper as h, numpy_helper as nh, TensorProto as T
init = [
  nh.from_array(np.zeros((3, 4), np.float32), 'B'),
  nh.from_array(np.zeros((4, 2, 3, 3), np.float32), 'W'),
  nh.from_array(np.zeros((4, 2, 3, 3), np.float32), 'Wg'),
  nh.from_array(np.zeros((4, 5), np.float32), 'D'),
  nh.from_array(np.array([0], np.int64), 'zero'), nh.from_array(np.array([1], np.int64), 'one'),
  nh.from_array(np.array([2], np.int64), 'two'),
]
nodes = [
  h.make_node('MatMul', ['A', 'B'], ['ab']),
  h.make_node('Conv', ['X', 'W'], ['conv'], kernel_shape=[3, 3]),
  h.make_node('Conv', ['Xg', 'Wg'], ['convg'], kernel_shape=[3, 3], group=2),
  h.make_node('Add', ['conv', 'convg'], ['sum']),
  # C[:, : C.shape[1] / 2] @ D: the Slice's end comes through Div, where onnx's data propagation stops.
  h.make_node('Shape', ['C'], ['cs']),
  h.make_node('Gather', ['cs', 'one'], ['c1'], axis=0),
  h.make_node('Div', ['c1', 'two'], ['half']),
  h.make_node('Slice', ['C', 'zero', 'half', 'one'], ['ch']),
  h.make_node('MatMul', ['ch', 'D'], ['cd']),
]
f = lambda n, s: h.make_tensor_value_info(n, T.FLOAT, s)
graph = h.make_graph(nodes, 'g',
  [f('A', ['n', 3]), f('X', [1, 2, 5, 5]), f('Xg', [1, 4, 5, 5]), f('C', ['batch', 'width'])],
  [f('ab', None), f('sum', None), f('cd', None)], init)
onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid('', 14)]), sys.argv[1])
`;

describe.skipIf(!onnx.ok)('unet_flops.py', () => {
  it('GIVEN MatMul [2,3]×[3,4], Conv 2→4 ch 3×3 on 5×5, the same Conv with group 2, and a Slice through Div THEN it counts 2 × MACs of each', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flops-'));
    try {
      const file = path.join(dir, 'g.onnx');
      const built = spawnSync('/usr/bin/python3', ['-c', BUILD, file], { encoding: 'utf8' });
      expect(built.status, built.stderr).toBe(0);
      const count = countFlops(file, { A: [2, 3], X: [1, 2, 5, 5], Xg: [1, 4, 5, 5], C: [2, 8] });
      const matmul = 2 * 2 * 3 * 4; // 48
      const conv = 2 * (4 * 3 * 3) * (2 * 3 * 3); // output elements × Cin × k²: 1296
      const grouped = 2 * (4 * 3 * 3) * ((4 / 2) * 3 * 3); // Cin / groups: 1296, not 2592
      const sliced = 2 * 2 * 5 * 4; // [2,4]×[4,5]: 80
      expect(count.byOp.MatMul).toEqual({ nodes: 2, flops: matmul + sliced });
      expect(count.byOp.Conv).toEqual({ nodes: 2, flops: conv + grouped });
      expect(count.flops).toBe(matmul + conv + grouped + sliced);
      expect(count.unknownShapeNodes).toEqual([]);
      expect(count.inputsUsed).toEqual({ A: [2, 3], X: [1, 2, 5, 5], Xg: [1, 4, 5, 5], C: [2, 8] });
      expect(count.otherElements).toBeGreaterThanOrEqual(36); // the Add's output, not counted as FLOPs
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('GIVEN the sd-tiny UNet at one guided call THEN every Conv/MatMul/Gemm has a shape and the count is positive', () => {
    const file = path.resolve('test/fixtures/models/sd-tiny/unet/model.onnx');
    const count = countFlops(file, { sample: [2, 4, 8, 8], timestep: [2], encoder_hidden_states: [2, 77, 32] });
    expect(count.unknownShapeNodes).toEqual([]);
    expect(count.flops).toBeGreaterThan(0);
    expect(count.subgraphNodesIgnored).toBe(0);
  });
});

const CPUINFO = `processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model name\t: Intel(R) Xeon(R) Test CPU
cpu MHz\t\t: 2000.000
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse sse2 avx fma avx2

processor\t: 1
vendor_id\t: GenuineIntel
cpu family\t: 6
model name\t: Intel(R) Xeon(R) Test CPU
cpu MHz\t\t: 2100.000
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse sse2 avx fma avx2

processor\t: 2
vendor_id\t: GenuineIntel
cpu family\t: 6
model name\t: Intel(R) Xeon(R) Test CPU
cpu MHz\t\t: 2100.000
physical id\t: 0
core id\t\t: 1
flags\t\t: fpu sse sse2 avx fma avx2
`;

describe('cpu-peak', () => {
  it('GIVEN 3 logical CPUs on 2 cores with avx2+fma at 2.1 GHz THEN peak = 2 × 2 × 8 × 2 × 2.1 = 134.4 GFLOP/s', () => {
    const peak = cpuPeakFrom(CPUINFO);
    expect(peak).toMatchObject({ physicalCores: 2, logicalCpus: 3, simdFlag: 'avx2+fma', lanes: 8, fmaUnits: 2, model: 'Intel(R) Xeon(R) Test CPU' });
    expect(peak.clockGhz).toBeCloseTo(2.1);
    expect(peak.peakGflops).toBeCloseTo(134.4);
    expect(peak.fmaAssumption).toMatch(/assumed/);
    expect(peak.formula).toContain('= 134.4 GFLOP/s');
  });

  it('GIVEN cpufreq max 3.0 GHz THEN that clock wins over "cpu MHz"; avx512f gives 16 lanes, except on AMD family 25 (Zen 4: 8)', () => {
    const intel512 = CPUINFO.replaceAll('avx2', 'avx2 avx512f');
    expect(cpuPeakFrom(intel512, 3_000_000)).toMatchObject({ clockGhz: 3, lanes: 16, peakGflops: 2 * 2 * 16 * 2 * 3 });
    const zen4 = intel512.replaceAll('GenuineIntel', 'AuthenticAMD').replaceAll('cpu family\t: 6', 'cpu family\t: 25');
    expect(cpuPeakFrom(zen4, 3_000_000)).toMatchObject({ lanes: 8, peakGflops: 2 * 2 * 8 * 2 * 3 });
    const sse = CPUINFO.replaceAll(' avx fma avx2', '');
    expect(cpuPeakFrom(sse)).toMatchObject({ simdFlag: 'sse', lanes: 4 });
  });
});

describe('flops CLI', () => {
  it('parses --model, --calls, --json and refuses unknown flags', () => {
    const args = parseFlopsArgs(['--model', 'a', '--model', 'b', '--calls', '7', '--json', 'out.json']);
    expect(args.models).toEqual([path.resolve('a'), path.resolve('b')]);
    expect(args).toMatchObject({ calls: 7, json: 'out.json' });
    expect(() => parseFlopsArgs(['--bogus'])).toThrow(/unknown flag/);
  });
});
