/**
 * Pull speed on loopback: the Hub stand-in serves sd-tiny with a large random external-data file, and `pullModel`
 * fetches it (redirect to the CDN origin, sha256 checked, written to disk, renamed into place).
 *
 *   npx tsx tools/hub-stand-in/measure-pull.ts [--mb 64] [--runs 3]
 *
 * Prints the bytes, seconds and MB/s of each run, and the median. Nothing leaves 127.0.0.1.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { TEST_MODEL_DIR } from '../../src/diffusion/model-path.js';
import { pullModel } from '../../src/models/pull.js';
import { repoFromFolder, startHubStandIn } from './server.js';

const { values } = parseArgs({ options: { mb: { type: 'string', default: '64' }, runs: { type: 'string', default: '3' } } });
const megabytes = Number(values.mb);
const runs = Number(values.runs);

const files = repoFromFolder(TEST_MODEL_DIR);
files.set('unet/model.onnx_data', randomBytes(megabytes * 1_000_000));
const hub = await startHubStandIn({ repos: { 'bench/sd-big': { files } } });
const speeds: number[] = [];
try {
  for (let run = 1; run <= runs; run++) {
    const modelsDir = mkdtempSync(join(tmpdir(), 'imagine-pull-speed-'));
    try {
      const result = await pullModel({ repo: 'bench/sd-big', modelsDir, hubUrl: hub.url });
      const speed = result.bytesFetched / 1e6 / result.seconds;
      speeds.push(speed);
      console.log(`run ${run}: ${(result.bytesFetched / 1e6).toFixed(1)} MB in ${result.seconds.toFixed(2)} s: ${speed.toFixed(0)} MB/s`);
    } finally {
      rmSync(modelsDir, { recursive: true, force: true });
    }
  }
} finally {
  await hub.close();
}
speeds.sort((a, b) => a - b);
console.log(`median: ${speeds[Math.floor(speeds.length / 2)]!.toFixed(0)} MB/s (${megabytes} MB file, ${runs} runs, loopback)`);
