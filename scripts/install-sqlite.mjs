/**
 * The last step of `npm ci` (package.json's "install" script): give better-sqlite3 its native binding, with one
 * clear line when that cannot be done.
 *
 * better-sqlite3's own install script (`prebuild-install || node-gyp rebuild --release`) fetches a prebuilt binary
 * from GitHub (outside the npm registry) or, when none can be fetched for this Node and platform, compiles SQLite,
 * which needs Python 3, make and a C++ compiler. When both fail, npm prints pages of node-gyp output that do not say
 * which. So package.json's `allowScripts` keeps npm from running that script itself, and this runs the same script,
 * its output kept in a log file, and says in one line what happened.
 *
 *   npm run install     # run it again (after installing a compiler, or after changing Node's major version)
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(ROOT, 'package.json'));

/** True when better-sqlite3 loads and opens a database on this Node. */
function works() {
  try {
    const Database = require('better-sqlite3');
    new Database(':memory:').close();
    return true;
  } catch {
    return false;
  }
}

function main() {
  let packageDir;
  try {
    packageDir = path.dirname(require.resolve('better-sqlite3/package.json'));
  } catch {
    process.stderr.write('imagine: better-sqlite3 is not installed; run `npm ci`\n');
    return 1;
  }
  if (works()) return 0; // its own script ran (an npm without allowScripts), or an earlier run built it
  const script = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8')).scripts?.install;
  if (typeof script !== 'string') throw new Error('Expected better-sqlite3 to have an install script');
  const log = path.join(os.tmpdir(), `imagine-better-sqlite3-${process.pid}.log`);
  const output = fs.openSync(log, 'w');
  // npm runs this with its node-gyp and node_modules/.bin on PATH, as it would run better-sqlite3's own script.
  const result = spawnSync(script, { cwd: packageDir, shell: true, stdio: ['ignore', output, output] });
  fs.closeSync(output);
  const compiled = fs.existsSync(path.join(packageDir, 'build', 'Release', 'obj.target'));
  if (result.status === 0 && works()) {
    fs.rmSync(log, { force: true });
    process.stdout.write(`imagine: better-sqlite3 ready (${compiled ? 'compiled from source' : 'prebuilt binary from GitHub'})\n`);
    return 0;
  }
  process.stderr.write(
    `imagine: better-sqlite3 could not be installed: no prebuilt binary could be fetched from GitHub for Node ${process.versions.node} ` +
      `on ${process.platform}-${process.arch}, and compiling it needs Python 3, make and a C++ compiler ` +
      `(Debian/Ubuntu: apt install python3 make g++; macOS: xcode-select --install); then run \`npm run install\`. Full output: ${log}\n`,
  );
  return 1;
}

process.exitCode = main();
