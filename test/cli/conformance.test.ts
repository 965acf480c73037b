import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CONFORMANCE_CASES, matches } from '../../src/cli/conformance-cases.js';
import { runLoop } from '../../src/cli/conformance-loop.js';
import { runConformanceCli } from '../../src/cli/conformance.js';
import { TorchCpuGenerator } from '../../src/diffusion/torch-generator.js';
import { SCHEDULER_NAMES } from '../../src/diffusion/types.js';

// Every case is diffusers' own expectation (tests/schedulers/<file>::<test>), checked to diffusers' tolerance.
describe('schedulers reproduce diffusers full-loop values', () => {
  it.each(CONFORMANCE_CASES.map((c) => [c.source, c] as const))('%s', (_source, c) => {
    const result = runLoop(c, new TorchCpuGenerator(c.seed ?? 0));
    if (c.sum !== undefined) expect(Math.abs(result.sum - c.sum)).toBeLessThan(c.sumTolerance ?? 1e-2);
    expect(Math.abs(result.mean - c.mean)).toBeLessThan(c.meanTolerance ?? 1e-3);
    expect(matches(c, result)).toBe(true);
  });

  it('GIVEN the committed list THEN every scheduler has at least one case, and a with-noise case where diffusers has one', () => {
    for (const name of SCHEDULER_NAMES) expect(CONFORMANCE_CASES.some((c) => c.scheduler === name)).toBe(true);
    const withNoise = new Set(CONFORMANCE_CASES.filter((c) => c.start !== undefined).map((c) => c.scheduler));
    expect([...withNoise].sort()).toEqual(['ddim', 'ddpm', 'dpmpp_2m', 'euler', 'euler_a', 'heun', 'lms']);
  });

  it('GIVEN a result off by more than the tolerance THEN it does not match', () => {
    const c = CONFORMANCE_CASES[0];
    expect(matches(c, { sum: (c.sum ?? 0) + 0.02, mean: c.mean })).toBe(false);
    expect(matches(c, { sum: c.sum ?? 0, mean: c.mean + 0.002 })).toBe(false);
  });
});

describe('TorchCpuGenerator (torch.manual_seed + torch.randn on the CPU)', () => {
  it('GIVEN seed 0 THEN the raw MT19937 stream is init_genrand(0)', () => {
    // First outputs of the reference mt19937ar.c after init_genrand(0).
    const g = new TorchCpuGenerator(0);
    expect([g.nextUint32(), g.nextUint32(), g.nextUint32()]).toEqual([2357136044, 2546248239, 3071714933]);
  });

  it('GIVEN seed 5489 THEN the 10000th output is the C++ standard check value', () => {
    // [rand.predef]: the 10000th consecutive invocation of a default-constructed std::mt19937 produces 4123659995.
    const g = new TorchCpuGenerator(5489);
    let last = 0;
    for (let i = 0; i < 10000; i++) last = g.nextUint32();
    expect(last).toBe(4123659995);
  });

  it('GIVEN torch.manual_seed(0) THEN torch.randn(4, 4) is the well-known tensor', () => {
    // torch.manual_seed(0); torch.randn(4, 4) prints these values (4 decimals) on every CPU build.
    const expected = [
      -1.1258, -1.1524, -0.2506, -0.4339, 0.8487, 0.692, -0.316, -2.1152, 0.3223, -1.2633, 0.35, 0.3081, 0.1198, 1.2377, 1.1168, -0.2473,
    ];
    const out = new Float32Array(16);
    new TorchCpuGenerator(0).fillNormal(out);
    out.forEach((x, i) => expect(x).toBeCloseTo(expected[i], 4));
  });

  it('GIVEN a length that is not a multiple of 16 THEN the last 16 values are redrawn, the head kept', () => {
    const a = new Float32Array(40);
    const b = new Float32Array(32);
    new TorchCpuGenerator(7).fillNormal(a);
    new TorchCpuGenerator(7).fillNormal(b);
    // The first 16 come from the first block in both; in `a` elements 24..39 are recomputed from fresh uniforms.
    expect(Array.from(a.subarray(0, 16))).toEqual(Array.from(b.subarray(0, 16)));
    expect(Array.from(a.subarray(24, 40))).not.toEqual(Array.from(b.subarray(16, 32)));
  });

  it('GIVEN fewer than 16 elements or a bad seed THEN it refuses', () => {
    expect(() => new TorchCpuGenerator(0).fillNormal(new Float32Array(8))).toThrow(/16 or more/);
    expect(() => new TorchCpuGenerator(-1)).toThrow(/`seed`/);
  });
});

describe('conformance CLI', () => {
  function cli(args: string[]): { code: number; out: string[]; err: string[] } {
    const out: string[] = [];
    const err: string[] = [];
    const code = runConformanceCli(args, (l) => out.push(l), (l) => err.push(l));
    return { code, out, err };
  }

  it('GIVEN --case THEN it prints exactly one JSON line with the loop sum and mean', () => {
    const c = { scheduler: 'euler', config: { num_train_timesteps: 1100 }, steps: 10 };
    const { code, out, err } = cli(['--case', JSON.stringify(c)]);
    expect(code).toBe(0);
    expect(err).toEqual([]);
    expect(out).toHaveLength(1);
    const parsed = JSON.parse(out[0]) as { sum: number; mean: number };
    expect(Object.keys(parsed)).toEqual(['sum', 'mean']);
    expect(Math.abs(parsed.sum - 10.0807)).toBeLessThan(1e-2); // test_scheduler_euler.py::test_full_loop_no_noise
    expect(parsed.mean).toBeCloseTo(parsed.sum / 768, 12);
  });

  it('GIVEN no arguments THEN it prints one line per committed case and a summary, and exits 0', () => {
    const { code, out } = cli([]);
    expect(code).toBe(0);
    expect(out).toHaveLength(CONFORMANCE_CASES.length + 1);
    for (const c of CONFORMANCE_CASES) expect(out.some((l) => l.startsWith('match') && l.includes(c.source))).toBe(true);
    expect(out.at(-1)).toBe(`${CONFORMANCE_CASES.length}/${CONFORMANCE_CASES.length} cases match diffusers`);
  });

  it.each([
    [['--bogus'], /Expected no arguments or `--case/],
    [['--case'], /Expected no arguments or `--case/],
    [['--case', '{bad'], /Expected `--case` to be JSON/],
    [['--case', '{"scheduler":"eulr","steps":10}'], /Expected `scheduler` to be one of .*got `eulr`/],
    [['--case', '{"scheduler":"euler","steps":0}'], /Expected `steps` to be an integer from 1 to 1000, got `0`/],
    [['--case', '{"scheduler":"euler","config":{"beta_schedule":"cubic"},"steps":10}'], /`beta_schedule`.*got `cubic`/],
    [['--case', '{"scheduler":"ddim","config":[],"steps":10}'], /Expected `config` to be a JSON object/],
    [['--case', '{"scheduler":"ddim","steps":10,"start":10}'], /Expected `start` to be an integer from 0 to 9/],
  ])('GIVEN bad arguments %j THEN it exits non-zero with one clear line', (args, message) => {
    const { code, out, err } = cli(args);
    expect(code).not.toBe(0);
    expect(out).toEqual([]);
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(message);
  });

  it('GIVEN the real npm script THEN --case prints one JSON line and a bad case exits non-zero', () => {
    const run = (args: string[]) =>
      spawnSync('npm', ['run', '--silent', 'conformance', '--', ...args], { encoding: 'utf8', cwd: process.cwd(), timeout: 120_000 });
    const good = run(['--case', '{"scheduler":"lcm","steps":1}']);
    expect(good.status).toBe(0);
    const lines = good.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const parsed = JSON.parse(lines[0]) as { sum: number; mean: number };
    // test_scheduler_lcm.py::test_full_loop_onestep uses LCMScheduler's defaults.
    expect(Math.abs(parsed.sum - 18.7097)).toBeLessThan(1e-3);
    const bad = run(['--case', '{"scheduler":"nope","steps":1}']);
    expect(bad.status).not.toBe(0);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toMatch(/Expected `scheduler` to be one of/);
  });
});
