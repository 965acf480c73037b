import { pathToFileURL } from 'node:url';
import { CONFORMANCE_CASES, matches, sameTimesteps } from './conformance-cases.js';
import { parseLoopCase, runLoop } from './conformance-loop.js';
import { TorchCpuGenerator } from '../diffusion/torch-generator.js';

/**
 * Scheduler conformance against diffusers' own test numbers.
 *
 *   npm run --silent conformance                      run the committed cases, one line each; exit 0 iff all match
 *   npm run --silent conformance -- --case '<json>'   run one full loop, print {"sum":…,"mean":…}
 *
 * A case is {"scheduler": name, "config": {scheduler_config.json keys}, "steps": n, "start"?: t_start,
 * "strength"?: img2img strength, "seed"?: torch seed}. Bad arguments: exit 2 and one line on stderr.
 */
export function runConformanceCli(args: readonly string[], out: (line: string) => void, err: (line: string) => void): number {
  let caseJson: string | undefined;
  if (args.length === 0) return runAll(out);
  if (args.length === 1 && args[0].startsWith('--case=')) caseJson = args[0].slice('--case='.length);
  else if (args.length === 2 && args[0] === '--case') caseJson = args[1];
  else {
    err(`Expected no arguments or \`--case '<json>'\`, got \`${args.join(' ')}\``);
    return 2;
  }

  let parsed: unknown;
  try {
    parsed = JSON.parse(caseJson);
  } catch (error) {
    err(`Expected \`--case\` to be JSON, got \`${caseJson}\` (${(error as Error).message})`);
    return 2;
  }
  try {
    const loopCase = parseLoopCase(parsed);
    const result = runLoop(loopCase, new TorchCpuGenerator(loopCase.seed ?? 0));
    out(JSON.stringify({ sum: result.sum, mean: result.mean }));
    return 0;
  } catch (error) {
    err((error as Error).message.split('\n')[0]);
    return 2;
  }
}

function runAll(out: (line: string) => void): number {
  let matched = 0;
  for (const c of CONFORMANCE_CASES) {
    let line: string;
    try {
      const result = runLoop(c, new TorchCpuGenerator(c.seed ?? 0));
      const ok = matches(c, result);
      if (ok) matched++;
      const sum = c.sum === undefined ? `sum ${fmt(result.sum)}` : `sum ${fmt(result.sum)} (diffusers ${c.sum})`;
      const steps = c.timesteps !== undefined && !sameTimesteps(c.timesteps, result.timesteps) ? `  timesteps differ: ${result.timesteps.join(', ')}` : '';
      line = `${ok ? 'match   ' : 'MISMATCH'} ${c.source}  ${sum}  mean ${fmt(result.mean)} (diffusers ${c.mean})${steps}`;
    } catch (error) {
      line = `ERROR    ${c.source}  ${(error as Error).message}`;
    }
    out(line);
  }
  out(`${matched}/${CONFORMANCE_CASES.length} cases match diffusers`);
  return matched === CONFORMANCE_CASES.length ? 0 : 1;
}

function fmt(x: number): string {
  return Math.abs(x) >= 1e-3 || x === 0 ? x.toFixed(6) : x.toExponential(6);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = runConformanceCli(
    process.argv.slice(2),
    (line) => console.log(line),
    (line) => console.error(line),
  );
}
