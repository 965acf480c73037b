/**
 * Runs once before any test file: compile dist/ if it is stale, as `npm start` does. Several test files run the
 * compiled bot, worker and CLIs as real processes; building here, once, keeps two files that run side by side from
 * rebuilding dist/ under each other (a build starts by removing it). Their own `--if-stale` builds then find it current.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  execFileSync(process.execPath, [path.join(root, 'scripts', 'build.mjs'), '--if-stale'], { cwd: root, stdio: 'inherit' });
}
