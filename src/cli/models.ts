/**
 * models CLI: the model library (MODELS_DIR).
 *
 *   npm run models -- pull <namespace/name> [--revision R] [--subfolder S] [--name N]
 *   npm run models -- list
 *   npm run models -- info <name>
 *   npm run models -- remove <name>
 *
 * Problems are one line on stderr: exit code 2 for a command used wrongly, 1 for one that could not be done.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { EMBEDDED_MODEL_DIR } from '../diffusion/model-path.js';
import { describeModel, findModel, listModels, listPartial, removeModel, type ModelEntry } from '../models/library.js';
import { ModelsError } from '../models/models-error.js';
import { formatBytes, progressReporter, type ProgressSink } from '../models/progress.js';
import { pullModel } from '../models/pull.js';

export const USAGE = [
  'usage: npm run models -- <command>',
  '  pull <namespace/name> [--revision R] [--subfolder S] [--name N]   download an ONNX model from the Hub into MODELS_DIR',
  '  list                                                              the models in MODELS_DIR',
  '  info <name>                                                       one model in detail',
  '  remove <name>                                                     delete a model folder (and an unfinished pull of it)',
].join('\n');

export interface CliIo {
  stdout: ProgressSink;
  stderr: ProgressSink;
  /** The configuration; default: loadConfig() (.env and the environment). */
  config?: Config;
}

function usage(message: string): never {
  throw new ModelsError(message, 2);
}

function defaultsText(model: ModelEntry): string {
  const d = model.defaults;
  const parts = [
    d.steps !== undefined ? `${d.steps} steps` : undefined,
    d.guidance !== undefined ? `guidance ${d.guidance}` : undefined,
    d.width !== undefined && d.height !== undefined ? `${d.width}×${d.height}` : undefined,
  ].filter(Boolean);
  return parts.length ? parts.join(', ') : '-';
}

function sourceText(model: ModelEntry): string {
  if (!model.source) return resolve(model.dir) === EMBEDDED_MODEL_DIR ? 'embedded (trained here)' : 'local';
  const s = model.source;
  return `${s.repo}${s.subfolder ? `/${s.subfolder}` : ''}@${s.revision === s.commit ? s.commit.slice(0, 12) : `${s.revision} (${s.commit.slice(0, 12)})`}, ${s.pulledAt.slice(0, 10)}`;
}

/** Rows padded into columns. */
function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()).join('\n');
}

function listText(models: readonly ModelEntry[], partial: readonly string[], modelsDir: string): string {
  const lines: string[] = [];
  if (models.length === 0) lines.push(`no models in ${modelsDir} (npm run models -- pull <namespace/name>)`);
  else {
    lines.push(
      table([
        ['name', 'kind', 'size', 'defaults', 'safety checker', 'source'],
        ...models.map((m) => [m.name, m.kind, formatBytes(m.bytes), defaultsText(m), m.safetyChecker ? 'yes' : 'none', sourceText(m)]),
      ]),
    );
  }
  for (const name of partial) lines.push(`unfinished pull: ${name} (run its pull again to resume, or npm run models -- remove ${name})`);
  return `${lines.join('\n')}\n`;
}

function infoText(model: ModelEntry): string {
  const s = model.source;
  return [
    `name:           ${model.name}`,
    `folder:         ${model.dir}`,
    `kind:           ${model.kind}`,
    `size on disk:   ${formatBytes(model.bytes)}`,
    `defaults:       ${defaultsText(model)}${defaultsText(model) === '-' ? ' (no imagine.json: the bot\'s own defaults apply)' : ' (imagine.json)'}`,
    `safety checker: ${model.safetyChecker ? 'yes (safety_checker/model.onnx)' : 'none: pictures are not checked'}`,
    `source:         ${sourceText(model)}`,
    ...(s ? [`  repo ${s.repo}, revision ${s.revision}, commit ${s.commit}${s.subfolder ? `, subfolder ${s.subfolder}` : ''}, pulled ${s.pulledAt}`] : []),
    ...(model.unsupported ? [`note:           ${model.unsupported}`] : []),
    `use it:         npm run imagine -- "<prompt>" --model ${model.dir}   (the bot: MODEL_DIR=${model.dir})`,
  ].join('\n') + '\n';
}

/** Runs one command; returns the exit code. @throws ModelsError or ConfigError (main prints them). */
export async function runModels(argv: readonly string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        revision: { type: 'string' },
        subfolder: { type: 'string' },
        name: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    usage(`${(error as Error).message.split('\n')[0]} (npm run models -- --help)`);
  }
  const { values, positionals } = parsed;
  if (values.help || positionals[0] === 'help') {
    io.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const [verb, ...rest] = positionals;
  if (verb === undefined) usage(`Expected a command: pull, list, info or remove (npm run models -- --help)`);
  const pullOnly = values.revision !== undefined || values.subfolder !== undefined || values.name !== undefined;
  if (verb !== 'pull' && pullOnly) usage(`Expected --revision, --subfolder and --name with \`pull\` only, got them with \`${verb}\``);
  const one = (what: string): string => {
    if (rest.length !== 1) usage(`Expected \`${verb}\` to be given ${what}, got ${rest.length === 0 ? 'none' : `\`${rest.join(' ').slice(0, 80)}\``}`);
    return rest[0]!;
  };
  const config = io.config ?? loadConfig();

  switch (verb) {
    case 'pull': {
      const repo = one('one Hub repo (namespace/name)');
      const progress = progressReporter(io.stderr);
      try {
        const result = await pullModel({
          repo,
          revision: values.revision,
          subfolder: values.subfolder,
          name: values.name,
          modelsDir: config.modelsDir,
          hubUrl: config.hfEndpoint,
          accessToken: config.hfToken,
          onProgress: (p) => progress.update(p),
        });
        progress.done();
        const speed = result.seconds > 0 ? result.bytesFetched / result.seconds : 0;
        io.stdout.write(
          `pulled ${repo} (${result.commit.slice(0, 12)}) into ${result.dir}: ${result.files} files, ${formatBytes(result.bytes)}` +
            `${result.bytesFetched < result.bytes ? ` (${formatBytes(result.bytesFetched)} fetched, the rest resumed)` : ''}` +
            ` in ${result.seconds.toFixed(1)} s, ${formatBytes(speed)}/s\n` +
            `try it: npm run imagine -- "a lighthouse at dusk" --model ${result.dir}\n`,
        );
        const unsupported = describeModel(result.dir, result.name).unsupported;
        if (unsupported) io.stdout.write(`note: ${unsupported}\n`);
        return 0;
      } catch (error) {
        progress.done();
        throw error;
      }
    }
    case 'list': {
      if (rest.length > 0) usage(`Expected nothing after \`list\`, got \`${rest.join(' ').slice(0, 80)}\``);
      io.stdout.write(listText(listModels(config.modelsDir), listPartial(config.modelsDir), config.modelsDir));
      return 0;
    }
    case 'info': {
      io.stdout.write(infoText(findModel(config.modelsDir, one('one model name'))));
      return 0;
    }
    case 'remove': {
      const name = one('one model name');
      const protect = new Map<string, string>([[EMBEDDED_MODEL_DIR, 'it is the embedded model, kept in git (it is the default model)']]);
      if (config.modelDir !== undefined) protect.set(resolve(config.modelDir), 'the bot uses it (MODEL_DIR); change MODEL_DIR first');
      const removed = await removeModel(config.modelsDir, name, { protect });
      io.stdout.write(`removed ${removed.join(' and ')}\n`);
      return 0;
    }
    default:
      usage(`Expected a command: pull, list, info or remove, got \`${verb.slice(0, 40)}\` (npm run models -- --help)`);
  }
}

/** The process entry: one line on stderr for every expected problem, with its exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  // Ctrl-C during a pull: what was downloaded stays in the .partial folder; say how to go on.
  const onInterrupt = () => {
    process.stderr.write('\nmodels: stopped; run the same command again to resume the download\n');
    process.exit(130);
  };
  if (argv.includes('pull')) process.once('SIGINT', onInterrupt);
  try {
    return await runModels(argv, { stdout: process.stdout, stderr: process.stderr });
  } catch (error) {
    if (error instanceof ModelsError) {
      process.stderr.write(`models: ${error.message}\n`);
      return error.exitCode;
    }
    if (error instanceof ConfigError) {
      process.stderr.write(`models: ${error.message}\n`);
      return 1;
    }
    throw error;
  } finally {
    process.off('SIGINT', onInterrupt);
  }
}

const invokedDirectly = process.argv[1] !== undefined && /models\.[cm]?[jt]s$/.test(process.argv[1]);
if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (error: unknown) => {
      process.stderr.write(`models: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
