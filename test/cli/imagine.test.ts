import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { outputPaths, parseCliArgs } from '../../src/cli/imagine.js';
import { readPngText } from '../../src/image/png-text.js';
import { EMBEDDED_MODEL_DIR, REPO_ROOT, resolveModelDir, TEST_MODEL_DIR } from '../../src/diffusion/model-path.js';

const run = promisify(execFile);
const SCRIPT = join(REPO_ROOT, 'src', 'cli', 'imagine.ts');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const SD_TINY = join(REPO_ROOT, 'test', 'fixtures', 'models', 'sd-tiny');
const temp = mkdtempSync(join(tmpdir(), 'imagine-cli-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

/** Run the CLI as a user would (node with tsx), from the repository root. */
async function imagine(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', TSX, SCRIPT, ...args], { cwd: REPO_ROOT });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('imagine CLI', () => {
  it('GIVEN a prompt and seed THEN it writes a PNG, the same twice, another for another seed', async () => {
    const [a, b, c] = ['a.png', 'b.png', 'c.png'].map((f) => join(temp, f));
    const common = ['a test', '--model', SD_TINY, '--steps', '5'];
    const first = await imagine([...common, '--seed', '1', '--out', a]);
    expect(first.code).toBe(0);
    expect(first.stderr).toMatch(/5\/5/);
    expect(first.stderr).toMatch(/64×64, sd-tiny, pndm, 5 steps, guidance 7.5, seed 1/);
    expect((await imagine([...common, '--seed', '1', '--out', b])).code).toBe(0);
    expect((await imagine([...common, '--seed', '2', '--out', c])).code).toBe(0);
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    expect(readFileSync(a).equals(readFileSync(c))).toBe(false);
    const meta = await sharp(a).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 64]);
  });

  it('GIVEN --count 2 and options THEN it writes out-1.png and out-2.png at the asked size', async () => {
    const out = join(temp, 'batch', 'out.png');
    rmSync(join(temp, 'batch'), { recursive: true, force: true });
    mkdirSync(join(temp, 'batch'));
    const result = await imagine(['two cats', '--model', SD_TINY, '--count', '2', '--steps', '3', '--seed', '9', '--guidance', '0',
      '--scheduler', 'euler_a', '--width', '128', '--height', '64', '--negative', 'blurry', '--out', out]);
    expect(result.code).toBe(0);
    expect(readdirSync(join(temp, 'batch')).sort()).toEqual(['out-1.png', 'out-2.png']);
    const meta = await sharp(join(temp, 'batch', 'out-2.png')).metadata();
    expect([meta.width, meta.height]).toEqual([128, 64]);
    // Each file carries its parameters, in AUTOMATIC1111's format, with its own seed (image i: seed + i).
    const parameters = (file: string) => readPngText(readFileSync(join(temp, 'batch', file))).get('parameters');
    expect(parameters('out-1.png')).toBe(
      'two cats\nNegative prompt: blurry\nSteps: 3, Sampler: Euler a, CFG scale: 0, Seed: 9, Size: 128x64, Model: sd-tiny, RNG: CPU',
    );
    expect(parameters('out-2.png')).toMatch(/, Seed: 10, Size: 128x64, /);
    expect(meta.comments?.map((c) => c.keyword)).toEqual(['parameters']);
  });

  it('GIVEN --noise xoshiro THEN the picture is made from imagine\'s own stream and says so; the default is torch', async () => {
    const [torch, xoshiro] = ['noise-torch.png', 'noise-xoshiro.png'].map((f) => join(temp, f));
    const common = ['a red barn', '--model', SD_TINY, '--steps', '3', '--seed', '3'];
    const made = await imagine([...common, '--out', torch]);
    expect(made.stderr).toMatch(/seed 3 \(torch noise\)/);
    expect((await imagine([...common, '--noise', 'xoshiro', '--out', xoshiro])).stderr).toMatch(/seed 3 \(xoshiro noise\)/);
    expect(readPngText(readFileSync(torch)).get('parameters')).toMatch(/, RNG: CPU$/);
    expect(readPngText(readFileSync(xoshiro)).get('parameters')).toMatch(/, RNG: imagine$/);
    expect(readFileSync(torch).equals(readFileSync(xoshiro))).toBe(false);
  });

  it('GIVEN --image and --strength THEN it writes a PNG from the picture, with the strength in its text and summary', async () => {
    const picture = join(temp, 'in.png');
    await sharp({ create: { width: 90, height: 60, channels: 3, background: { r: 200, g: 30, b: 30 } } }).png().toFile(picture);
    const [a, b, c] = ['i2i-a.png', 'i2i-b.png', 'i2i-c.png'].map((f) => join(temp, f));
    const common = ['a red barn', '--model', SD_TINY, '--steps', '10', '--seed', '3', '--image', picture];
    const first = await imagine([...common, '--strength', '0.5', '--out', a]);
    expect(first.code).toBe(0);
    expect(first.stderr).toMatch(/5\/5/);
    expect(first.stderr).toMatch(/64×64, sd-tiny, pndm, 10 steps, guidance 7.5, strength 0.5, seed 3/);
    const meta = await sharp(a).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 64]);
    expect(readPngText(readFileSync(a)).get('parameters')).toMatch(/, Denoising strength: 0\.5, RNG: CPU$/);
    expect((await imagine([...common, '--strength', '0.5', '--out', b])).code).toBe(0);
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    // No --strength: diffusers' 0.8.
    expect((await imagine([...common, '--out', c])).stderr).toMatch(/strength 0.8, /);
  });

  const notAPicture = join(temp, 'notes.png');
  writeFileSync(notAPicture, 'these are my notes, not a picture');
  const bad: [string, string[], RegExp][] = [
    ['strength 0', ['x', '--image', notAPicture, '--strength', '0'], /^imagine: Expected `strength` to be a number greater than 0 and at most 1, got `0`$/],
    ['strength not a number', ['x', '--image', notAPicture, '--strength', 'half'], /Expected `--strength` to be a number, got `half`/],
    ['strength without an image', ['x', '--strength', '0.5'], /Expected `--strength` only with `--image`/],
    ['an unknown noise', ['x', '--noise', 'gpu'], /Expected `--noise` to be one of torch, xoshiro, got `gpu`/],
    ['a missing image file', ['x', '--image', join(temp, 'nowhere.png')], /^imagine: Expected `--image` to be a readable picture file, got `.*nowhere\.png` \(ENOENT\)$/],
    ['an image file that is no picture', ['x', '--image', notAPicture], /^imagine: Expected `initImage` to be a PNG, JPEG or WebP picture, got bytes that are not a picture$/],
    ['steps out of range', ['x', '--steps', '0'], /Expected `steps` to be an integer from 1 to 1000, got `0`/],
    ['steps not a number', ['x', '--steps', 'ten'], /Expected `--steps` to be an integer, got `ten`/],
    ['no prompt', ['--seed', '1'], /Expected one prompt/],
    ['an unknown flag', ['x', '--bogus', '1'], /Unknown option '--bogus'/],
    ['an unknown scheduler', ['x', '--scheduler', 'fast'], /Expected `--scheduler` to be one of/],
    ['a width off the grid', ['x', '--width', '100'], /Expected `width` to be a multiple of 64/],
    ['guidance not a number', ['x', '--guidance', 'high'], /Expected `--guidance` to be a number, got `high`/],
    ['a folder that is no model', ['x', '--model', temp], /model_index\.json: expected a diffusers model_index\.json/],
  ];
  it.each(bad)('GIVEN %s THEN exit 2, one clear line, nothing written', async (_, args, message) => {
    const dir = mkdtempSync(join(temp, 'bad-'));
    const out = join(dir, 'out.png');
    // sd-tiny unless the case names a model, so the messages do not depend on which default model is present.
    const model = args.includes('--model') ? [] : ['--model', SD_TINY];
    const result = await imagine([...args, ...model, '--out', out]);
    expect(result.code).toBe(2);
    const lines = result.stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('npm warn'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('CLI helpers', () => {
  it('GIVEN argv THEN flags are parsed as numbers and providers as a list', () => {
    expect(parseCliArgs(['a cat', '--steps', '8', '--guidance', '0', '--provider', 'cuda,cpu'])).toMatchObject({
      prompt: 'a cat',
      steps: 8,
      guidance: 0,
      providers: ['cuda', 'cpu'],
    });
  });

  it('GIVEN count 1 or more THEN output paths are the file or numbered files', () => {
    expect(outputPaths('/x/out.png', 1)).toEqual(['/x/out.png']);
    expect(outputPaths('/x/out.png', 3)).toEqual(['/x/out-1.png', '/x/out-2.png', '/x/out-3.png']);
  });

  it('GIVEN no --model THEN the embedded model is used when present, else the test model; a given path resolves against cwd', () => {
    const expected = existsSync(join(EMBEDDED_MODEL_DIR, 'model_index.json')) ? EMBEDDED_MODEL_DIR : TEST_MODEL_DIR;
    expect(resolveModelDir()).toBe(expected);
    expect(resolveModelDir('', '/somewhere')).toBe(expected);
    expect(resolveModelDir('models/x', '/somewhere')).toBe('/somewhere/models/x');
    expect(existsSync(join(TEST_MODEL_DIR, 'model_index.json'))).toBe(true);
  });
});
