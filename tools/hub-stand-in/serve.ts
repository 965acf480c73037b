/**
 * The Hub stand-in as a process, to try `npm run models` by hand without the network: every folder of
 * test/fixtures/models with a model_index.json is served as `imagine-test/<folder>`.
 *
 *   npx tsx tools/hub-stand-in/serve.ts            # prints HF_ENDPOINT=http://127.0.0.1:PORT
 *   HF_ENDPOINT=http://127.0.0.1:PORT MODELS_DIR=/tmp/models npm run models -- pull imagine-test/sd-tiny
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../src/diffusion/model-path.js';
import { repoFromFolder, startHubStandIn, type StandInRepo } from './server.js';

const fixtures = join(REPO_ROOT, 'test', 'fixtures', 'models');
const repos: Record<string, StandInRepo> = {};
for (const name of readdirSync(fixtures)) {
  if (existsSync(join(fixtures, name, 'model_index.json'))) repos[`imagine-test/${name}`] = { files: repoFromFolder(join(fixtures, name)) };
}
const hub = await startHubStandIn({ repos });
console.log(`HF_ENDPOINT=${hub.url}`);
console.log(`repos: ${Object.keys(repos).join(', ')}`);
const stop = () => void hub.close().then(() => process.exit(0));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
