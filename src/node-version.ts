/**
 * The oldest Node.js the bot runs on, checked before anything else loads: src/index.ts imports this module first,
 * and ES modules run in import order, so an older Node gets one line and exit 1 instead of a stack trace from deep
 * inside a dependency. Node 20.9 is sharp's minimum (the highest of the dependencies'); package.json's `engines`
 * says the same (a test holds them equal), and scripts/build.mjs checks it before `npm start` compiles.
 */
export const MIN_NODE_VERSION = '20.9.0';

/** The problem with running on Node `version` (e.g. `18.19.0` or `v18.19.0`), or undefined when it is new enough. */
export function nodeVersionProblem(version: string, minimum: string = MIN_NODE_VERSION): string | undefined {
  const have = version.replace(/^v/, '').split('.').map((part) => Number.parseInt(part, 10));
  const want = minimum.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    if ((have[i] ?? 0) > want[i]!) return undefined;
    if ((have[i] ?? 0) < want[i]!) {
      return `imagine needs Node.js ${minimum} or newer, and this is ${version.replace(/^v/, '')}: install a current LTS release (https://nodejs.org)`;
    }
  }
  return undefined;
}

const problem = nodeVersionProblem(process.versions.node);
if (problem !== undefined) {
  process.stderr.write(`${problem}\n`);
  process.exit(1);
}
