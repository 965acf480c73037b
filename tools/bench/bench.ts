/**
 * `npm run bench`: how fast imagine is on this machine, measured side by side (issue 6). Prints a table and
 * writes tools/bench/results.json (machine, versions, execution provider, date, every number and the targets judged).
 *
 *   npm run bench -- [--quick] [--no-torch] [--no-bot] [--no-levers] [--no-scale | --scale-only] [--embedded DIR] [--shapes-checkpoint FILE]
 *                    [--python PATH] [--provider cpu,cuda,webgpu] [--out FILE]
 *
 * Exit code 0 when the bench ran (missed targets are reported, not failures); 2 on bad arguments.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ROOT } from './python.js';
import { EXECUTION_PROVIDERS, type ExecutionProviderName } from '../../src/diffusion/model.js';
import { formatReport } from './report.js';
import { runBench, type BenchOptions } from './run-bench.js';

const USAGE =
  'usage: npm run bench -- [--quick] [--no-torch] [--no-bot] [--no-levers] [--no-scale | --scale-only] [--embedded DIR] [--shapes-checkpoint FILE] [--python PATH] [--provider cpu,cuda,webgpu] [--out FILE]';

export interface BenchCliArgs extends BenchOptions {
  out: string;
}

function parseProviders(raw: string): ExecutionProviderName[] {
  const names = raw.split(',').map((name) => name.trim());
  for (const name of names) {
    if (!(EXECUTION_PROVIDERS as readonly string[]).includes(name)) {
      throw new Error(`Expected \`--provider\` to be a comma-separated list of ${EXECUTION_PROVIDERS.join(', ')}, got \`${raw}\``);
    }
  }
  return names as ExecutionProviderName[];
}

/** Parse the command line; throws with a one-line message on anything unknown. */
export function parseBenchArgs(argv: string[]): BenchCliArgs {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      quick: { type: 'boolean' },
      'no-torch': { type: 'boolean' },
      'no-bot': { type: 'boolean' },
      'no-levers': { type: 'boolean' },
      'no-scale': { type: 'boolean' },
      'scale-only': { type: 'boolean' },
      embedded: { type: 'string' },
      'shapes-checkpoint': { type: 'string' },
      python: { type: 'string' },
      provider: { type: 'string' },
      out: { type: 'string' },
    },
  });
  if (positionals.length > 0) throw new Error(`Expected no positional arguments, got \`${positionals.join(' ')}\``);
  if (values['no-scale'] && values['scale-only']) throw new Error('Expected at most one of `--no-scale` and `--scale-only`, got both');
  return {
    out: path.resolve(values.out ?? path.join(ROOT, 'tools', 'bench', 'results.json')),
    quick: values.quick ?? false,
    skipTorch: values['no-torch'] ?? false,
    skipBot: values['no-bot'] ?? false,
    skipLevers: values['no-levers'] ?? false,
    skipScale: values['no-scale'] ?? false,
    scaleOnly: values['scale-only'] ?? false,
    ...(values.embedded !== undefined ? { embeddedDir: path.resolve(values.embedded) } : {}),
    ...(values['shapes-checkpoint'] !== undefined ? { shapesCheckpoint: path.resolve(values['shapes-checkpoint']) } : {}),
    ...(values.python !== undefined ? { python: values.python } : {}),
    ...(values.provider !== undefined ? { providers: parseProviders(values.provider) } : {}),
  };
}

async function main(): Promise<void> {
  let args: BenchCliArgs;
  try {
    args = parseBenchArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`imagine bench: ${(error as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  const results = await runBench(args);
  mkdirSync(path.dirname(args.out), { recursive: true });
  writeFileSync(args.out, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`\n${formatReport(results)}\n\nwrote ${path.relative(process.cwd(), args.out)}\n`);
}

// Run only as the entry point (tests import parseBenchArgs).
if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    process.stderr.write(`imagine bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  });
}
