import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CONFORMANCE_CASES, matches, tolerances } from '../../src/cli/conformance-cases.js';
import { IMG2IMG_CASES } from '../../src/cli/conformance-img2img-cases.js';
import { dummyDeter, runLoop } from '../../src/cli/conformance-loop.js';
import { noiseInitLatents, startTimesteps } from '../../src/diffusion/img2img.js';
import { createScheduler } from '../../src/diffusion/schedulers/index.js';
import { runConformanceCli } from '../../src/cli/conformance.js';
import { TorchCpuGenerator } from '../../src/diffusion/torch-generator.js';
import { SCHEDULER_NAMES } from '../../src/diffusion/types.js';

// Every case is diffusers' own expectation (tests/schedulers/<file>::<test>, or a recorded run of diffusers'
// img2img pipeline code), checked to its tolerance; img2img cases also ran exactly diffusers' timesteps.
describe('schedulers reproduce diffusers full-loop values', () => {
  it.each(CONFORMANCE_CASES.map((c) => [`${c.scheduler}: ${c.source}`, c] as const))('%s', (_source, c) => {
    const result = runLoop(c, new TorchCpuGenerator(c.seed ?? 0));
    if (c.timesteps !== undefined) expect(Array.from(result.timesteps)).toEqual(c.timesteps);
    const tol = tolerances(c);
    if (c.sum !== undefined) expect(Math.abs(result.sum - c.sum)).toBeLessThan(tol.sum);
    expect(Math.abs(result.mean - c.mean)).toBeLessThan(tol.mean);
    expect(matches(c, result)).toBe(true);
  });

  it('GIVEN the img2img cases THEN DDIM and Euler have them at strengths where floor and rounding part, and all but LCM and DDPM do', () => {
    const schedulers = new Set(IMG2IMG_CASES.map((c) => c.scheduler));
    expect([...schedulers].sort()).toEqual(['ddim', 'dpmpp_2m', 'euler', 'euler_a', 'heun', 'lms', 'pndm']);
    for (const name of ['ddim', 'euler'] as const) {
      const parting = IMG2IMG_CASES.filter((c) => c.scheduler === name && Math.round(c.steps * c.strength!) !== Math.floor(c.steps * c.strength!));
      expect(parting.length).toBeGreaterThanOrEqual(3);
    }
    for (const c of IMG2IMG_CASES) expect(c.timesteps?.length).toBeGreaterThan(0);
  });

  it('GIVEN an img2img case THEN the loop starts where the pipeline does: startTimesteps, then noiseInitLatents on the picture', () => {
    const c = IMG2IMG_CASES.find((k) => k.scheduler === 'euler' && k.steps === 10 && k.strength === 0.75)!;
    const scheduler = createScheduler(c.scheduler, c.config);
    scheduler.setTimesteps(c.steps);
    const { timesteps, loopSteps } = startTimesteps(scheduler, c.steps, c.strength!);
    expect(loopSteps).toBe(7);
    expect(Array.from(timesteps)).toEqual(c.timesteps);
    // Not scaled by init_noise_sigma as the tests' with-noise loops are: the picture's latents are noised as they are.
    const noised = noiseInitLatents(scheduler, dummyDeter(), dummyDeter(true), timesteps[0]);
    const fromScaled = noiseInitLatents(scheduler, dummyDeter().map((x) => x * scheduler.initNoiseSigma), dummyDeter(true), timesteps[0]);
    expect(noised).not.toEqual(fromScaled);
  });

  it('GIVEN an img2img result whose timesteps differ THEN it does not match, even with the right numbers', () => {
    const c = IMG2IMG_CASES[0];
    expect(matches(c, { sum: c.sum!, mean: c.mean, timesteps: c.timesteps })).toBe(true);
    expect(matches(c, { sum: c.sum!, mean: c.mean, timesteps: c.timesteps!.slice(1) })).toBe(false);
    expect(matches(c, { sum: c.sum!, mean: c.mean })).toBe(false);
    expect(matches(c, { sum: c.sum! * (1 + 2e-4), mean: c.mean, timesteps: c.timesteps })).toBe(false);
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

  it('GIVEN --case with a strength THEN it runs the img2img start and prints that case\'s numbers', () => {
    const c = IMG2IMG_CASES.find((k) => k.scheduler === 'ddim' && k.steps === 10 && k.strength === 0.3)!;
    const { code, out } = cli(['--case', JSON.stringify({ scheduler: c.scheduler, config: c.config, steps: c.steps, strength: c.strength })]);
    expect(code).toBe(0);
    const parsed = JSON.parse(out[0]) as { sum: number; mean: number };
    expect(Math.abs(parsed.sum - c.sum!)).toBeLessThan(tolerances(c).sum);
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
    [['--case', '{"scheduler":"ddim","steps":10,"strength":1.5}'], /Expected `strength` to be a number above 0 and at most 1/],
    [['--case', '{"scheduler":"ddim","steps":10,"strength":0.5,"start":2}'], /no `start` beside it/],
    [['--case', '{"scheduler":"ddim","steps":10,"strength":0.05}'], /Expected `steps` × `strength` to leave at least one step, got 10 × 0.05/],
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
