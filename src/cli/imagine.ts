/**
 * imagine CLI: make pictures from the command line with the same engine the bot uses.
 *
 *   npm run imagine -- "<prompt>" [--negative TEXT] [--steps N] [--seed N] [--guidance X] [--scheduler NAME]
 *                      [--width W] [--height H] [--count N] [--model DIR] [--out FILE] [--provider LIST]
 *                      [--image FILE [--strength X]] [--noise torch|xoshiro]
 *
 * `--image`: img2img from a PNG, JPEG or WebP picture (latent models need vae_encoder/), `--strength` 0 < X ≤ 1
 * (default 0.8). `--noise`: the generator the seed drives, torch's CPU one (the default: diffusers' and ComfyUI's
 * noise for the same seed) or imagine's xoshiro (pictures made before it). Writes PNG(s) (count > 1: out-1.png, out-2.png, ...), with a progress bar on stderr. Bad arguments: exit code 2,
 * one line on stderr, nothing written.
 */
import { randomInt } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, extname, join, dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { isUserError } from '../errors.js';
import { EXECUTION_PROVIDERS, loadModel, ModelLoadError, type ExecutionProviderName } from '../diffusion/model.js';
import { resolveModelDir } from '../diffusion/model-path.js';
import { checkInputs, generate } from '../diffusion/pipeline.js';
import { NOISE_NAMES, SCHEDULER_NAMES, type GenerateParams, type GenerateResult, type NoiseName, type SchedulerName, type StepProgress } from '../diffusion/types.js';

const USAGE =
  'usage: npm run imagine -- "<prompt>" [--negative TEXT] [--steps N] [--seed N] [--guidance X] [--scheduler NAME] ' +
  '[--width W] [--height H] [--count N] [--model DIR] [--out FILE] [--provider cpu,cuda,webgpu] [--image FILE [--strength X]] [--noise torch|xoshiro]';

/** Default steps: few for consistency models, which are made for 1–8 steps; 20 for the rest. */
const DEFAULT_STEPS = 20;
const DEFAULT_LCM_STEPS = 4;
const DEFAULT_GUIDANCE = 7.5;

/** An expected problem with the arguments: printed as one line, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export interface CliArgs {
  prompt: string;
  negative?: string;
  steps?: number;
  seed?: number;
  guidance?: number;
  scheduler?: SchedulerName;
  width?: number;
  height?: number;
  count?: number;
  model?: string;
  out?: string;
  /** img2img: the picture to start from, and how much of the schedule runs. */
  image?: string;
  strength?: number;
  /** The noise generator; omitted: the engine's default. */
  noise?: NoiseName;
  providers: ExecutionProviderName[];
  help?: boolean;
}

function integer(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isInteger(value)) throw new UsageError(`Expected \`--${name}\` to be an integer, got \`${raw}\``);
  return value;
}

/** Parse argv (without node and the script) strictly: unknown flags and missing values are usage errors. */
export function parseCliArgs(argv: string[]): CliArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        negative: { type: 'string' },
        steps: { type: 'string' },
        seed: { type: 'string' },
        guidance: { type: 'string' },
        scheduler: { type: 'string' },
        width: { type: 'string' },
        height: { type: 'string' },
        count: { type: 'string' },
        model: { type: 'string' },
        out: { type: 'string' },
        provider: { type: 'string' },
        image: { type: 'string' },
        strength: { type: 'string' },
        noise: { type: 'string' },
        help: { type: 'boolean' },
      },
    });
  } catch (error) {
    // Node's message goes on about positionals after `--`; the first sentence is the news.
    throw new UsageError(`${(error as Error).message.split('. To specify')[0].split('\n')[0]} (see --help)`);
  }
  const { values, positionals } = parsed;
  if (values.help) return { prompt: '', providers: [], help: true };
  if (positionals.length !== 1) {
    throw new UsageError(`Expected one prompt (quote it), got ${positionals.length === 0 ? 'none' : `${positionals.length} words: quote the prompt`}`);
  }
  let guidance: number | undefined;
  if (values.guidance !== undefined) {
    guidance = Number(values.guidance);
    if (values.guidance.trim() === '' || !Number.isFinite(guidance)) {
      throw new UsageError(`Expected \`--guidance\` to be a number, got \`${values.guidance}\``);
    }
  }
  let strength: number | undefined;
  if (values.strength !== undefined) {
    strength = Number(values.strength);
    if (values.strength.trim() === '' || !Number.isFinite(strength)) {
      throw new UsageError(`Expected \`--strength\` to be a number, got \`${values.strength}\``);
    }
    if (values.image === undefined) throw new UsageError('Expected `--strength` only with `--image` (img2img), got no `--image`');
  }
  const scheduler = values.scheduler;
  if (scheduler !== undefined && !(SCHEDULER_NAMES as readonly string[]).includes(scheduler)) {
    throw new UsageError(`Expected \`--scheduler\` to be one of ${SCHEDULER_NAMES.join(', ')}, got \`${scheduler}\``);
  }
  const noise = values.noise;
  if (noise !== undefined && !(NOISE_NAMES as readonly string[]).includes(noise)) {
    throw new UsageError(`Expected \`--noise\` to be one of ${NOISE_NAMES.join(', ')}, got \`${noise}\``);
  }
  const providers = (values.provider ?? 'cpu').split(',').map((p) => p.trim().toLowerCase()).filter(Boolean);
  for (const provider of providers) {
    if (!(EXECUTION_PROVIDERS as readonly string[]).includes(provider)) {
      throw new UsageError(`Expected \`--provider\` to list ${EXECUTION_PROVIDERS.join(', ')}, got \`${values.provider}\``);
    }
  }
  if (values.out !== undefined && extname(values.out).toLowerCase() !== '.png') {
    throw new UsageError(`Expected \`--out\` to be a .png file, got \`${values.out}\``);
  }
  return {
    prompt: positionals[0],
    negative: values.negative,
    steps: integer('steps', values.steps),
    seed: integer('seed', values.seed),
    guidance,
    scheduler: scheduler as SchedulerName | undefined,
    width: integer('width', values.width),
    height: integer('height', values.height),
    count: integer('count', values.count),
    model: values.model,
    out: values.out,
    image: values.image,
    strength,
    noise: noise as NoiseName | undefined,
    providers: providers as ExecutionProviderName[],
  };
}

/** The files a job writes: `out` itself for one image, out-1.png, out-2.png, ... for several. */
export function outputPaths(out: string, count: number): string[] {
  if (count === 1) return [out];
  const ext = extname(out);
  const stem = join(dirname(out), basename(out, ext));
  return Array.from({ length: count }, (_, i) => `${stem}-${i + 1}${ext}`);
}

function progressBar(progress: StepProgress): string {
  const width = 30;
  const filled = Math.round((progress.step / progress.totalSteps) * width);
  const seconds = (progress.elapsedMs / 1000).toFixed(1);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${progress.step}/${progress.totalSteps} ${seconds}s`;
}

export async function main(argv: string[]): Promise<number> {
  const args = parseCliArgs(argv);
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const initImage = args.image === undefined ? undefined : readImage(args.image);
  const modelDir = resolveModelDir(args.model);
  const model = await loadModel(modelDir, { executionProviders: args.providers });
  try {
    const scheduler = args.scheduler ?? model.info.defaultScheduler;
    const seed = args.seed ?? randomInt(0, 2 ** 32);
    const params: GenerateParams = {
      prompt: args.prompt,
      negativePrompt: args.negative,
      steps: args.steps ?? (scheduler === 'lcm' ? DEFAULT_LCM_STEPS : DEFAULT_STEPS),
      seed,
      guidanceScale: args.guidance ?? model.info.defaultGuidance ?? DEFAULT_GUIDANCE,
      scheduler,
      width: args.width,
      height: args.height,
      count: args.count,
      noise: args.noise,
      ...(initImage ? { initImage, strength: args.strength } : {}),
    };
    // Validate before any work, so a bad value is one line and nothing is written.
    const checked = checkInputs(params, model.info);
    const files = outputPaths(args.out ?? `imagine-${seed}.png`, checked.count);

    // A terminal gets one bar redrawn in place; a log (no TTY) gets a line per tenth of the way.
    const tty = process.stderr.isTTY === true;
    const tenth = (step: number, total: number) => Math.floor((step * 10) / total);
    const result = await generate(model, params, {
      previewEvery: 0,
      onProgress: (progress) => {
        if (tty) process.stderr.write(`\r${progressBar(progress)}`);
        else if (tenth(progress.step, progress.totalSteps) !== tenth(progress.step - 1, progress.totalSteps)) process.stderr.write(`${progressBar(progress)}\n`);
      },
    });
    if (tty) process.stderr.write('\n');
    result.images.forEach((png, i) => writeFileSync(files[i], png));
    const strength = result.strength !== undefined ? `, strength ${result.strength}` : '';
    const notes = result.truncated ? ' (prompt truncated to the text encoder length)' : '';
    process.stderr.write(
      `${files.join(', ')}: ${result.width}×${result.height}, ${result.model}, ${result.scheduler}, ${result.steps} steps, ` +
        `guidance ${result.guidanceScale}${strength}, seed ${result.seed} (${result.noise} noise), ${(result.timings.totalMs / 1000).toFixed(2)} s${notes}\n` +
        `${safetyLine(result)}\n`,
    );
    return 0;
  } finally {
    await model.release();
  }
}

/** `--image`'s bytes; whether they are a picture is the engine's check (sharp decodes them, whatever the name). */
function readImage(path: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new UsageError(`Expected \`--image\` to be a readable picture file, got \`${path}\` (${code})`);
  }
}

/** What the model's safety checker said, or that the model has none (the pictures were not checked). */
export function safetyLine(result: Pick<GenerateResult, 'flagged' | 'timings'>): string {
  if (result.flagged === undefined) return 'safety checker: none in this model folder (no safety_checker/); the pictures were not checked';
  const flagged = result.flagged.filter(Boolean).length;
  const ms = ((result.timings.safetyMs ?? 0) / result.flagged.length).toFixed(1);
  return `safety checker: ${flagged} of ${result.flagged.length} flagged (${ms} ms per picture)`;
}

const invokedDirectly = process.argv[1] !== undefined && /imagine\.[cm]?[jt]s$/.test(process.argv[1]);
if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (error: unknown) => {
      const expected = error instanceof UsageError || isUserError(error) || error instanceof ModelLoadError;
      // One line: what was expected and what arrived (--help shows the usage).
      process.stderr.write(`imagine: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = expected ? 2 : 1;
    },
  );
}
