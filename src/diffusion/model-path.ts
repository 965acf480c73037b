import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The nearest folder at or above `start` that holds a package.json. */
function packageRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) return start;
  }
}

/**
 * The repository root: this file is src/diffusion/model-path.ts, or dist/src/diffusion/model-path.js once
 * compiled, so it is found by its package.json rather than by counting folders.
 */
export const REPO_ROOT = packageRoot(resolve(fileURLToPath(new URL('.', import.meta.url))));

/** The embedded model, trained by training/ and committed under models/. */
export const EMBEDDED_MODEL_DIR = join(REPO_ROOT, 'models', 'imagine-shapes');

/** The tiny random-weight test model, used until the embedded model exists. */
export const TEST_MODEL_DIR = join(REPO_ROOT, 'test', 'fixtures', 'models', 'sd-tiny');

/**
 * The model folder to use: `explicit` (resolved against `cwd`) when given, else the embedded model when it is
 * present, else the test model. Used by the CLI and the bot's config alike. Does not check the folder's contents
 * (loadModel does, naming the file that does not fit).
 */
export function resolveModelDir(explicit?: string, cwd = process.cwd()): string {
  if (explicit !== undefined && explicit.trim() !== '') return resolve(cwd, explicit);
  if (existsSync(join(EMBEDDED_MODEL_DIR, 'model_index.json'))) return EMBEDDED_MODEL_DIR;
  return TEST_MODEL_DIR;
}
