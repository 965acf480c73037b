import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nodeVersionProblem, staleReason } from '../../scripts/build.mjs';

const temps: string[] = [];
afterEach(() => {
  for (const dir of temps.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** A fake checkout: sources, and a dist/ built `builtAgoMs` before the sources' time (or none). */
function checkout(builtAgoMs?: number): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'imagine-build-'));
  temps.push(root);
  fs.mkdirSync(path.join(root, 'src', 'queue'), { recursive: true });
  fs.mkdirSync(path.join(root, 'commands'));
  for (const file of ['src/index.ts', 'src/queue/fair-queue.ts', 'commands/imagine.ts', 'tsconfig.json', 'tsconfig.build.json']) {
    fs.writeFileSync(path.join(root, file), '');
  }
  const past = new Date(Date.now() - 60_000);
  for (const file of ['src/index.ts', 'src/queue/fair-queue.ts', 'src/queue', 'src', 'commands/imagine.ts', 'commands', 'tsconfig.json', 'tsconfig.build.json']) {
    fs.utimesSync(path.join(root, file), past, past);
  }
  if (builtAgoMs !== undefined) {
    fs.mkdirSync(path.join(root, 'dist'));
    fs.writeFileSync(path.join(root, 'dist', '.build-stamp'), '');
    const built = new Date(past.getTime() + 1000 - builtAgoMs);
    fs.utimesSync(path.join(root, 'dist', '.build-stamp'), built, built);
  }
  return root;
}

describe('npm start builds only when it must', () => {
  it('GIVEN no dist/ THEN it is missing', () => {
    expect(staleReason(checkout())).toBe('missing');
  });

  it('GIVEN dist/ built after every source THEN it is current', () => {
    expect(staleReason(checkout(0))).toBeUndefined();
  });

  it('GIVEN a source edited after the build THEN that file is named', () => {
    const root = checkout(0);
    fs.writeFileSync(path.join(root, 'src', 'queue', 'fair-queue.ts'), '// edited');
    expect(staleReason(root)).toBe('src/queue/fair-queue.ts');
  });

  it('GIVEN a source deleted or added after the build THEN its folder is named', () => {
    const root = checkout(0);
    fs.rmSync(path.join(root, 'commands', 'imagine.ts'));
    expect(staleReason(root)).toBe('commands');
  });

  it('GIVEN a build older than the sources (a checkout of newer files) THEN it is stale', () => {
    expect(staleReason(checkout(10_000))).toBe('src');
  });
});

describe('the minimum Node version', () => {
  it.each([
    ['v20.9.0', undefined],
    ['v20.20.2', undefined],
    ['v22.0.0', undefined],
    ['v24.1.0-pre', undefined],
  ])('GIVEN %s and >=20.9.0 THEN it runs', (version, expected) => {
    expect(nodeVersionProblem(version, '>=20.9.0')).toBe(expected);
  });

  it.each(['v20.8.1', 'v18.19.0', 'v16.20.2'])('GIVEN %s and >=20.9.0 THEN one line says what is needed', (version) => {
    expect(nodeVersionProblem(version, '>=20.9.0')).toBe(
      `imagine needs Node.js 20.9.0 or newer, and this is ${version.slice(1)}: install a current LTS release (https://nodejs.org)`,
    );
  });

  it("GIVEN package.json's engines THEN they are in the form the check reads", () => {
    const engines = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).engines.node as string;
    expect(nodeVersionProblem(process.version, engines)).toBeUndefined();
  });
});
