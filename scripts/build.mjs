/**
 * `npm run build`: compile src/ and commands/ to dist/ with tsc (tsconfig.build.json), and copy the files the code
 * reads beside itself (src/eval/heldout.json). `--if-stale` (what `npm start` runs first) builds only when dist/ is
 * missing or older than a source, so a fresh clone needs only `npm ci` and `npm start`.
 *
 * Plain JavaScript on purpose: it runs before anything is compiled, and in a production install without
 * TypeScript, where it only checks that dist/ is current.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** What is compiled (folders) or decides how (files). A change to any of them makes dist/ stale. */
const SOURCES = ['src', 'commands', 'tsconfig.json', 'tsconfig.build.json'];
/** Written last by a build that succeeded; its mtime is the build's. */
const STAMP = '.build-stamp';

/** The first file or folder under `target` (itself included) modified after `time` (ms), or undefined. */
function changedSince(target, time) {
  let stat;
  try {
    stat = fs.statSync(target);
  } catch {
    return undefined;
  }
  // A folder's own mtime moves when a file in it is added, deleted or renamed.
  if (stat.mtimeMs > time) return target;
  if (!stat.isDirectory()) return undefined;
  for (const entry of fs.readdirSync(target)) {
    const found = changedSince(path.join(target, entry), time);
    if (found !== undefined) return found;
  }
  return undefined;
}

/**
 * Why `<root>/dist` must be rebuilt (`'missing'`, or the path, relative to `root`, of a source changed since the
 * last build), or undefined when it is current.
 */
export function staleReason(root = ROOT) {
  let built;
  try {
    built = fs.statSync(path.join(root, 'dist', STAMP)).mtimeMs;
  } catch {
    return 'missing';
  }
  for (const source of SOURCES) {
    const changed = changedSince(path.join(root, source), built);
    if (changed !== undefined) return path.relative(root, changed).split(path.sep).join('/');
  }
  return undefined;
}

/**
 * The problem with running on Node `version` when package.json asks for `engines` (`>=X.Y.Z`), or undefined.
 * src/node-version.ts says the same at the bot's start.
 */
export function nodeVersionProblem(version, engines) {
  const minimum = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(engines.trim());
  if (!minimum) throw new Error(`Expected package.json's engines.node to read ">=X.Y.Z", got \`${engines}\``);
  const have = version.replace(/^v/, '').split('.').map((part) => Number.parseInt(part, 10));
  const want = minimum.slice(1).map((part) => Number(part ?? 0));
  for (let i = 0; i < 3; i++) {
    if ((have[i] ?? 0) > want[i]) return undefined;
    if ((have[i] ?? 0) < want[i]) return `imagine needs Node.js ${want.join('.')} or newer, and this is ${version.replace(/^v/, '')}: install a current LTS release (https://nodejs.org)`;
  }
  return undefined;
}

/** Copy every file under `from` that tsc does not emit (not .ts) to the same place under `to`. */
function copyAssets(from, to) {
  if (!fs.existsSync(from)) return;
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name);
    if (entry.isDirectory()) copyAssets(source, path.join(to, entry.name));
    else if (!entry.name.endsWith('.ts')) {
      fs.mkdirSync(to, { recursive: true });
      fs.copyFileSync(source, path.join(to, entry.name));
    }
  }
}

/** Compile to dist/ from scratch (so a deleted source leaves nothing behind). Returns the exit code. */
export function build(root = ROOT) {
  let tsc;
  try {
    tsc = path.join(path.dirname(createRequire(path.join(root, 'package.json')).resolve('typescript/package.json')), 'bin', 'tsc');
  } catch {
    process.stderr.write(
      'imagine: dist/ must be built, and TypeScript is not installed (a production install, `npm ci --omit=dev`?): ' +
        'build where dev dependencies are installed (`npm ci && npm run build`), then `npm prune --omit=dev`\n',
    );
    return 1;
  }
  const started = Date.now();
  const dist = path.join(root, 'dist');
  fs.rmSync(dist, { recursive: true, force: true });
  const result = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) {
    process.stderr.write(`imagine: the build failed (tsc exit code ${result.status ?? result.signal}); see above\n`);
    return 1;
  }
  copyAssets(path.join(root, 'src'), path.join(dist, 'src'));
  copyAssets(path.join(root, 'commands'), path.join(dist, 'commands'));
  fs.writeFileSync(path.join(dist, STAMP), `${new Date().toISOString()} node ${process.version}\n`);
  process.stderr.write(`imagine: compiled to dist/ in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return 0;
}

function main(args) {
  const engines = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).engines?.node;
  const problem = engines === undefined ? undefined : nodeVersionProblem(process.version, engines);
  if (problem) {
    process.stderr.write(`${problem}\n`);
    return 1;
  }
  if (args.includes('--if-stale')) {
    const reason = staleReason();
    if (reason === undefined) return 0;
    process.stderr.write(reason === 'missing' ? 'imagine: dist/ is missing; compiling\n' : `imagine: ${reason} changed since the last build; compiling\n`);
  }
  return build();
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}
