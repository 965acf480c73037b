import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { main, runModels } from '../../src/cli/models.js';
import { parseConfig } from '../../src/config.js';
import { REPO_ROOT } from '../../src/diffusion/model-path.js';
import { inferKind } from '../../src/models/library.js';
import { ModelsError } from '../../src/models/models-error.js';
import { progressReporter } from '../../src/models/progress.js';
import { startHubStandIn, type HubStandIn } from '../../tools/hub-stand-in/server.js';
import { LCM_TINY, SD_TINY, testRepos } from '../models/hub-repos.js';

const run = promisify(execFile);

let hub: HubStandIn;
let modelsDir: string;

beforeAll(async () => {
  hub = await startHubStandIn({ repos: testRepos() });
});

afterAll(async () => {
  await hub?.close();
});

beforeEach(() => {
  modelsDir = mkdtempSync(join(tmpdir(), 'imagine-models-cli-'));
  return () => rmSync(modelsDir, { recursive: true, force: true });
});

function capture(isTTY = false) {
  let text = '';
  return { sink: { write: (chunk: string) => (text += chunk), isTTY }, text: () => text };
}

async function models(argv: string[], env: Record<string, string> = {}) {
  const stdout = capture();
  const stderr = capture();
  const config = parseConfig({ MODELS_DIR: modelsDir, HF_ENDPOINT: hub.url, ...env });
  const code = await runModels(argv, { stdout: stdout.sink, stderr: stderr.sink, config });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}

async function usageError(argv: string[]): Promise<string> {
  const error = await models(argv).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ModelsError);
  expect((error as ModelsError).exitCode).toBe(2);
  return (error as Error).message;
}

describe('npm run models', () => {
  it('GIVEN pull then list and info THEN the model shows with its kind, size, defaults, source and safety checker', async () => {
    const pulled = await models(['pull', LCM_TINY]);
    expect(pulled.code).toBe(0);
    expect(pulled.stdout).toMatch(/^pulled imagine-test\/lcm-tiny \([0-9a-f]{12}\) into .*lcm-tiny: 15 files, \d+(\.\d+)? kB in \d+\.\d s, .+\/s\n/);
    // Not a terminal: plain progress lines with bytes, speed and the file.
    expect(pulled.stderr).toMatch(/kB \/ \d+(\.\d+)? kB {2}.+\/s {2}\[15\/15\] vae_decoder\/model\.onnx\n$/);
    await models(['pull', SD_TINY, '--name', 'sd']);

    const list = await models(['list']);
    const lines = list.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^name +kind +size +defaults +safety checker +source$/);
    expect(lines[1]).toMatch(/^lcm-tiny +LCM +\d+ kB +4 steps, guidance 1 +none +imagine-test\/lcm-tiny@main \([0-9a-f]{12}\), \d{4}-\d\d-\d\d$/);
    expect(lines[2]).toMatch(/^sd +SD +\d+ kB +- +none +imagine-test\/sd-tiny@main/);

    const info = await models(['info', 'lcm-tiny']);
    expect(info.stdout).toContain('kind:           LCM\n');
    expect(info.stdout).toContain('defaults:       4 steps, guidance 1 (imagine.json)\n');
    expect(info.stdout).toContain('safety checker: none: pictures are not checked\n');
    expect(info.stdout).toMatch(/use it: +npm run imagine -- "<prompt>" --model .*lcm-tiny/);
  });

  it('GIVEN the default MODELS_DIR THEN the embedded model is listed as a latent (SD-layout) model trained here', async () => {
    const stdout = capture();
    await runModels(['list'], { stdout: stdout.sink, stderr: capture().sink, config: parseConfig({ MODELS_DIR: join(REPO_ROOT, 'models') }) });
    expect(stdout.text()).toMatch(/\nimagine-shapes +SD +\d+(\.\d+)? MB +- +none +embedded \(trained here\)\n/);
  });

  it('GIVEN remove THEN the folder goes; an unknown name, the embedded model and MODEL_DIR are refused in one line', async () => {
    await models(['pull', SD_TINY]);
    const error = (argv: string[], env: Record<string, string> = {}) =>
      models(argv, env).then(
        () => undefined,
        (e: unknown) => e as ModelsError,
      );
    const inUse = await error(['remove', 'sd-tiny'], { MODEL_DIR: join(modelsDir, 'sd-tiny') });
    expect(inUse?.message).toBe('not removing `sd-tiny`: the bot uses it (MODEL_DIR); change MODEL_DIR first');
    expect(existsSync(join(modelsDir, 'sd-tiny'))).toBe(true);

    const removed = await models(['remove', 'sd-tiny']);
    expect(removed.stdout).toMatch(/^removed .*sd-tiny\n$/);
    expect(readdirSync(modelsDir)).toEqual([]);

    const unknown = await error(['remove', 'sd-tiny']);
    expect(unknown?.message).toBe(`no model \`sd-tiny\` in ${modelsDir} (it has none)`);
    expect(unknown?.exitCode).toBe(1);
    const embedded = await error(['remove', 'imagine-shapes'], { MODELS_DIR: join(REPO_ROOT, 'models') });
    expect(embedded?.message).toBe('not removing `imagine-shapes`: it is the embedded model, kept in git (it is the default model)');
    expect(existsSync(join(REPO_ROOT, 'models', 'imagine-shapes', 'unet', 'model.onnx'))).toBe(true);
  });

  it('GIVEN an unfinished pull THEN list names it and remove deletes it', async () => {
    mkdirSync(join(modelsDir, '.big.partial', 'unet'), { recursive: true });
    writeFileSync(join(modelsDir, '.big.partial', 'unet', 'model.onnx.part'), 'x');
    expect((await models(['list'])).stdout).toBe(
      `no models in ${modelsDir} (npm run models -- pull <namespace/name>)\nunfinished pull: big (run its pull again to resume, or npm run models -- remove big)\n`,
    );
    expect((await models(['remove', 'big'])).stdout).toMatch(/^removed .*\.big\.partial\n$/);
    expect(readdirSync(modelsDir)).toEqual([]);
  });

  it.each([
    [[], 'Expected a command: pull, list, info or remove (npm run models -- --help)'],
    [['frobnicate'], 'Expected a command: pull, list, info or remove, got `frobnicate` (npm run models -- --help)'],
    [['pull'], 'Expected `pull` to be given one Hub repo (namespace/name), got none'],
    [['pull', 'a/b', 'c/d'], 'Expected `pull` to be given one Hub repo (namespace/name), got `a/b c/d`'],
    [['pull', 'sd-turbo'], 'Expected a Hub repo as `namespace/name` (e.g. stabilityai/sd-turbo), got `sd-turbo`'],
    [['list', 'x'], 'Expected nothing after `list`, got `x`'],
    [['list', '--name', 'x'], 'Expected --revision, --subfolder and --name with `pull` only, got them with `list`'],
    [['info'], 'Expected `info` to be given one model name, got none'],
    [['remove', '../etc'], `Expected a model name (a folder of MODELS_DIR), got \`../etc\``],
  ])('GIVEN %j THEN a usage error (exit code 2): %s', async (argv, message) => {
    expect((await usageError(argv)).replace(modelsDir, 'MODELS_DIR')).toBe(message);
  });

  it('GIVEN an unknown flag THEN a usage error names it', async () => {
    expect(await usageError(['pull', 'a/b', '--revisoin', 'x'])).toMatch(/^Unknown option '--revisoin'/);
  });

  it('GIVEN --help THEN the usage, exit code 0', async () => {
    const { code, stdout } = await models(['--help']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^usage: npm run models -- <command>\n {2}pull <namespace\/name> \[--revision R\] \[--subfolder S\] \[--name N\]/);
  });

  it('GIVEN the process THEN a usage problem exits 2 and a failure exits 1, each with one line on stderr', async () => {
    const env = { ...process.env, MODELS_DIR: modelsDir, HF_ENDPOINT: hub.url, DISCORD_TOKEN: '', HF_TOKEN: '' };
    const tsx = join(REPO_ROOT, 'node_modules', '.bin', 'tsx');
    const script = join(REPO_ROOT, 'src', 'cli', 'models.ts');
    const usage = await run(tsx, [script, 'frobnicate'], { env }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(usage?.code).toBe(2);
    expect(usage?.stderr).toBe('models: Expected a command: pull, list, info or remove, got `frobnicate` (npm run models -- --help)\n');
    const missing = await run(tsx, [script, 'pull', 'nobody/nothing'], { env }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(missing?.code).toBe(1);
    expect(missing?.stderr).toBe('models: no model repo `nobody/nothing` on the Hub (or it is private: set HF_TOKEN)\n');
    expect(readdirSync(modelsDir)).toEqual([]);
  });

  it('GIVEN main() with a bad verb THEN it returns 2 rather than throwing', async () => {
    const write = process.stderr.write;
    let written = '';
    process.stderr.write = ((chunk: string) => ((written += chunk), true)) as typeof process.stderr.write;
    try {
      expect(await main(['frobnicate'])).toBe(2);
    } finally {
      process.stderr.write = write;
    }
    expect(written).toMatch(/^models: Expected a command/);
  });
});

describe('model kind', () => {
  function folder(name: string, files: Record<string, object>): string {
    const dir = join(modelsDir, name);
    for (const [file, content] of Object.entries(files)) {
      mkdirSync(join(dir, file, '..'), { recursive: true });
      writeFileSync(join(dir, file), JSON.stringify(content));
    }
    mkdirSync(join(dir, 'vae_decoder'), { recursive: true });
    writeFileSync(join(dir, 'vae_decoder', 'model.onnx'), '');
    return dir;
  }

  it.each([
    ['sd15', { 'unet/config.json': { cross_attention_dim: 768 } }, 'SD 1.x'],
    ['sd21', { 'unet/config.json': { cross_attention_dim: 1024 } }, 'SD 2.x'],
    ['sd-turbo', { 'unet/config.json': { cross_attention_dim: 1024 } }, 'SD 2.x Turbo'],
    ['sdxl', { 'model_index.json': { _class_name: 'ORTStableDiffusionXLPipeline' }, 'unet/config.json': { cross_attention_dim: 2048 } }, 'SDXL'],
    ['sdxl-turbo', { 'unet/config.json': { addition_embed_type: 'text_time' } }, 'SDXL Turbo'],
    ['dreamshaper', { 'scheduler/scheduler_config.json': { _class_name: 'LCMScheduler' }, 'unet/config.json': { cross_attention_dim: 768 } }, 'LCM'],
    ['mystery', { 'unet/config.json': {} }, 'SD'],
  ])('GIVEN %s THEN %s', (name, files, kind) => {
    expect(inferKind(folder(name, files), name)).toBe(`${kind}`);
  });

  it('GIVEN an SDXL base folder THEN info has no note; GIVEN an SDXL refiner THEN info says imagine cannot run it', async () => {
    const base = folder('sdxl-turbo', { 'model_index.json': {}, 'unet/config.json': { addition_embed_type: 'text_time' } });
    const refiner = folder('sdxl-refiner', { 'model_index.json': { requires_aesthetics_score: true }, 'unet/config.json': { addition_embed_type: 'text_time' } });
    for (const dir of [base, refiner]) {
      for (const part of ['unet', 'text_encoder']) {
        mkdirSync(join(dir, part), { recursive: true });
        writeFileSync(join(dir, part, 'model.onnx'), '');
      }
    }
    const info = (await models(['info', 'sdxl-turbo'])).stdout;
    expect(info).toContain('kind:           SDXL Turbo\n');
    expect(info).not.toContain('note:');
    expect((await models(['info', 'sdxl-refiner'])).stdout).toContain(
      'note:           imagine cannot run an SDXL refiner (its UNet is conditioned on an aesthetic score); use an SDXL base model\n',
    );
  });

  it('GIVEN no vae_decoder THEN pixel', () => {
    const dir = join(modelsDir, 'px');
    mkdirSync(join(dir, 'unet'), { recursive: true });
    writeFileSync(join(dir, 'model_index.json'), '{}');
    expect(inferKind(dir, 'px')).toBe('pixel');
  });
});

describe('progress line', () => {
  const p = { file: 'unet/model.onnx', fileIndex: 2, fileCount: 9, bytesDone: 1_500_000, bytesTotal: 3_000_000, bytesFetched: 1_500_000, seconds: 0.5 };

  it('GIVEN a terminal THEN one line redrawn with a bar, at most every 100 ms, ended by done()', () => {
    const out = capture(true);
    let t = 0;
    const reporter = progressReporter(out.sink, () => t);
    reporter.update(p);
    t = 50;
    reporter.update({ ...p, bytesDone: 2_000_000 });
    expect(out.text()).toBe('\r\x1b[2K[████████████░░░░░░░░░░░░]  50%  1.50 MB / 3.00 MB  3.00 MB/s  [2/9] unet/model.onnx');
    reporter.done();
    expect(out.text()).toMatch(/\r\x1b\[2K\[████████████████░░░░░░░░\] {2}66% {2}2\.00 MB \/ 3\.00 MB .*\n$/);
  });

  it('GIVEN a log THEN plain lines, at most every 5 s', () => {
    const out = capture(false);
    let t = 0;
    const reporter = progressReporter(out.sink, () => t);
    reporter.update(p);
    t = 4000;
    reporter.update(p);
    t = 5001;
    reporter.update(p);
    expect(out.text().split('\n').filter(Boolean)).toHaveLength(2);
    expect(out.text().split('\n')[0]).toBe('1.50 MB / 3.00 MB  3.00 MB/s  [2/9] unet/model.onnx');
  });
});
