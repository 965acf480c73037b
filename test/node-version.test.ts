import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MIN_NODE_VERSION, nodeVersionProblem } from '../src/node-version.js';

describe('the minimum Node version at start', () => {
  it('GIVEN this Node THEN the bot starts', () => {
    expect(nodeVersionProblem(process.version)).toBeUndefined();
  });

  it.each(['20.9.0', '20.20.2', '22.0.0', '24.0.0-pre'])('GIVEN %s THEN it is new enough', (version) => {
    expect(nodeVersionProblem(version)).toBeUndefined();
  });

  it.each(['20.8.1', '18.19.0', 'v16.20.2'])('GIVEN %s THEN one line names the minimum and the version found', (version) => {
    expect(nodeVersionProblem(version)).toBe(
      `imagine needs Node.js 20.9.0 or newer, and this is ${version.replace(/^v/, '')}: install a current LTS release (https://nodejs.org)`,
    );
  });

  it("GIVEN package.json THEN its engines.node states the same minimum (npm refuses an older Node at install: .npmrc's engine-strict)", () => {
    const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { engines: { node: string } };
    expect(pkg.engines.node).toBe(`>=${MIN_NODE_VERSION}`);
  });
});
