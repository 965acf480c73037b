/**
 * The layering rule, checked over the real import graph: data flows Discord event → command → queue → engine →
 * delivery, and nothing lower imports anything higher. Every relative import (static, `export … from`, and
 * dynamic `import('…')`) of every .ts file under src/, commands/ and tools/ is read and resolved to its layer.
 */
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The layer a repository path belongs to: `src/<folder>`, `src:<file>` for src's top files, or the top folder. */
export function layerOf(relative: string): string {
  const parts = relative.split('/');
  if (parts[0] === 'src') return parts.length > 2 ? `src/${parts[1]}` : `src:${parts[1]!.replace(/\.[jt]s$/, '')}`;
  return parts[0]!;
}

/** The base every layer may use: errors, the logger, the config reader. */
const BASE = ['src:errors', 'src:log', 'src:config'];

/**
 * What each layer may import besides itself and BASE. A layer missing from here may import only itself and BASE,
 * so a new folder is a decision, not an accident.
 */
const ALLOWED: Record<string, readonly string[]> = {
  'src/image': [],
  'src/diffusion': ['src/image'],
  'src/jobs': ['src/diffusion'],
  'src/store': ['src/jobs', 'src/diffusion'],
  'src/moderation': ['src/store', 'src/jobs', 'src/diffusion'],
  'src/queue': ['src/store', 'src/jobs', 'src/diffusion', 'src/moderation', 'src/image'],
  // Delivery asks the safety rules (moderation/safety-rules.ts, pure) whether a picture may be posted.
  'src/delivery': ['src/queue', 'src/jobs', 'src/diffusion', 'src/image', 'src/store', 'src/moderation'],
  'src/eval': ['src/diffusion', 'src/image'],
  // The model library (find, pull from the Hub, per-model defaults) reads model folders; it may use the loader.
  'src/models': ['src/diffusion'],
  // The local playground (a Discord-compatible server and its page) speaks Discord's protocol, not the bot's APIs:
  // it imports only itself and the base, so the bot has no second code path for it.
  'src/playground': [],
  // Metrics listen to the queue's events and read the engine's health: they watch, nothing calls into them.
  'src/metrics': ['src/queue', 'src/jobs', 'src/diffusion'],
  // The scaled mode (issue 11): the queue's other implementation (bot side) and the image worker, over Redis.
  // It reuses the queue's pure parts (fair order, caps, ETAs, delivery runner) and the engine's contract; it
  // knows nothing of Discord.
  'src/scale': ['src/queue', 'src/store', 'src/jobs', 'src/diffusion'],
  commands: ['src/delivery', 'src/queue', 'src/moderation', 'src/store', 'src/jobs', 'src/diffusion', 'src/image'],
  'src/discord': ['commands', 'src/delivery', 'src/queue', 'src/moderation', 'src/store', 'src/jobs', 'src/diffusion', 'src/image'],
  // The composition roots and command-line entries wire everything, but never tests or tools.
  // It hands the engine the model library's list of installed models (the engine itself does not scan folders).
  'src:app': ['src/playground', 'src/discord', 'commands', 'src/delivery', 'src/queue', 'src/moderation', 'src/store', 'src/jobs', 'src/diffusion', 'src/image', 'src/metrics', 'src/models', 'src/scale'],
  'src:index': ['src:node-version', 'src:app', 'src:lifecycle', 'src/discord'],
  'src:node-version': [],
  'src:lifecycle': [],
  'src:worker': ['src/queue', 'src/store', 'src/jobs', 'src/diffusion', 'src/image'],
  'src/cli': ['src:app', 'src/discord', 'commands', 'src/delivery', 'src/queue', 'src/moderation', 'src/store', 'src/jobs', 'src/diffusion', 'src/image', 'src/eval', 'src/models', 'src/scale', 'src:node-version', 'src:lifecycle'],
  'src:log': ['src:config'],
  'src:config': [],
  'src:errors': [],
  // Measuring code and test tools may use all of the product, never the tests.
  tools: ['src/*', 'src:*', 'commands'],
};

function allowed(from: string, to: string): boolean {
  if (from === to) return true;
  // The base files themselves use only what ALLOWED lists for them (the logger reads the config's types).
  const list = BASE.includes(from) ? (ALLOWED[from] ?? []) : [...BASE, ...(ALLOWED[from] ?? [])];
  return list.some((entry) =>
    entry.endsWith('*') ? to.startsWith(entry.slice(0, -1)) : entry === to,
  );
}

const IMPORT = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;

/** Relative import specifiers of a TypeScript source, comments removed first. */
export function importsOf(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const found: string[] = [];
  for (const match of code.matchAll(IMPORT)) {
    const specifier = match[1] ?? match[2] ?? match[3];
    if (specifier?.startsWith('.')) found.push(specifier);
  }
  return found;
}

function sourceFiles(folder: string): string[] {
  const absolute = path.join(ROOT, folder);
  if (!existsSync(absolute)) return [];
  return readdirSync(absolute, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => path.relative(ROOT, path.join(entry.parentPath, entry.name)));
}

/** Every import in the product and tools that breaks the rule, as `from → to (specifier)`. */
export function layerViolations(files: readonly string[], read: (file: string) => string): string[] {
  const problems: string[] = [];
  for (const file of files) {
    const from = layerOf(file);
    for (const specifier of importsOf(read(file))) {
      const target = path.relative(ROOT, path.resolve(ROOT, path.dirname(file), specifier)).split(path.sep).join('/');
      const to = target.startsWith('..') ? 'outside' : layerOf(target);
      if (!allowed(from, to)) problems.push(`${file}: ${from} → ${to} ('${specifier}')`);
    }
  }
  return problems;
}

describe('the import graph', () => {
  const files = [...sourceFiles('src'), ...sourceFiles('commands'), ...sourceFiles('tools')];
  const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

  it('GIVEN the product and tools THEN every import points down the layers (none into test/, none upward)', () => {
    expect(files.length).toBeGreaterThan(50);
    expect(layerViolations(files, read)).toEqual([]);
  });

  it('GIVEN an upward import (storage → queue, engine → discord.js side, product → test, playground → bot internals) THEN it is reported', () => {
    const fake: Record<string, string> = {
      'src/store/jobs.ts': "import type { JobRecord } from '../queue/types.js';",
      'src/diffusion/worker.ts': "const x = await import('../delivery/job-messenger.js');",
      'src/queue/fair-queue.ts': "export { a } from '../../test/queue/helpers.js';",
      'commands/imagine.ts': "import { x } from '../src/discord/bot.js';\n// import { y } from '../src/app.js';",
      'src/delivery/render.ts': "import '../discord/client.js';",
      'src/playground/page-server.ts': "import { FairQueue } from '../queue/fair-queue.js';",
    };
    expect(layerViolations(Object.keys(fake), (file) => fake[file]!)).toEqual([
      "src/store/jobs.ts: src/store → src/queue ('../queue/types.js')",
      "src/diffusion/worker.ts: src/diffusion → src/delivery ('../delivery/job-messenger.js')",
      "src/queue/fair-queue.ts: src/queue → test ('../../test/queue/helpers.js')",
      "commands/imagine.ts: commands → src/discord ('../src/discord/bot.js')",
      "src/delivery/render.ts: src/delivery → src/discord ('../discord/client.js')",
      "src/playground/page-server.ts: src/playground → src/queue ('../queue/fair-queue.js')",
    ]);
  });
});
