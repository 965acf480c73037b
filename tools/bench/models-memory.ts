/**
 * `npx tsx tools/bench/models-memory.ts`: the memory of a worker as it loads more models (issue 12). One worker
 * thread starts with the embedded model; each further test model is loaded by a job that names it. Prints the
 * process's resident memory (the worker thread lives in it) after each, and the growth per model. Each makes a
 * 64×64 picture, so the growth is the model's, not the working memory of a large picture.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { createWorkerPool } from '../../src/diffusion/engine/worker-pool.js';
import { describeModel } from '../../src/models/library.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const NAMES = ['sd-tiny', 'lcm-tiny', 'sdxl-tiny'];

function rssMiB(): number {
  return process.memoryUsage().rss / 2 ** 20;
}

const models = NAMES.map((name) => {
  const dir = path.join(ROOT, 'test/fixtures/models', name);
  const entry = describeModel(dir, name);
  return { name, dir, bytes: entry.bytes };
});
const pool = await createWorkerPool({ modelDir: path.join(ROOT, 'models/imagine-shapes'), models, workers: 1, log: () => undefined });
const rows: [string, number][] = [];
await pool.generate({ prompt: 'a red circle', steps: 2, seed: 1, guidanceScale: 7.5 });
await sleep(200);
rows.push(['embedded model only (imagine-shapes)', rssMiB()]);
for (const [i, name] of NAMES.entries()) {
  await pool.generate({ prompt: 'a red circle', steps: 2, seed: 1, guidanceScale: 1, model: name, width: 64, height: 64, ...(name === 'lcm-tiny' ? { scheduler: 'lcm' as const } : {}) });
  await sleep(200);
  rows.push([`+ ${name} (${i + 1} test model${i === 0 ? '' : 's'} loaded beside it)`, rssMiB()]);
}
await pool.close();
console.log(`${new Date().toISOString()}  node ${process.version}`);
for (const [i, [what, rss]] of rows.entries()) {
  console.log(`${what.padEnd(52)} ${rss.toFixed(0).padStart(5)} MiB${i > 0 ? `  (+${(rss - rows[i - 1][1]).toFixed(0)} MiB)` : ''}`);
}
