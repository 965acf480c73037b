import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../src/diffusion/model.js';
import { cachedGraphFor, PRUNE_AFTER_DAYS } from '../../src/diffusion/optimized-cache.js';
import { generate } from '../../src/diffusion/pipeline.js';
import { DEFAULT_SESSION_OPTIONS } from '../../src/diffusion/session-options.js';
import type { GenerateParams } from '../../src/diffusion/types.js';

const ROOT = join(import.meta.dirname, '..', '..');
const MODELS = { 'sd-tiny': join(ROOT, 'test', 'fixtures', 'models', 'sd-tiny'), 'imagine-shapes (embedded)': join(ROOT, 'models', 'imagine-shapes') };
const params: GenerateParams = { prompt: 'a red circle on a white background', steps: 4, seed: 42, guidanceScale: 7.5, scheduler: 'euler' };
const scratch = mkdtempSync(join(tmpdir(), 'imagine-ort-cache-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** One picture from a fresh load of `dir`, and the lines the loader logged. */
async function picture(dir: string, cacheDir?: string) {
  const lines: string[] = [];
  const model = await loadModel(dir, { optimizedModelCacheDir: cacheDir, log: (line) => lines.push(line) });
  try {
    const result = await generate(model, params);
    return { png: Buffer.from(result.images[0]), lines };
  } finally {
    await model.release();
  }
}

const listing = (dir: string) => readdirSync(dir).sort().map((f) => `${f} ${statSync(join(dir, f)).mtimeMs}`);

describe.each(Object.entries(MODELS))('the optimised-graph cache on %s', (name, source) => {
  it('GIVEN a first load THEN it writes one graph per part outside the model folder; a second load reads them AND the pictures are byte-identical to loading without a cache', async () => {
    const cacheDir = join(scratch, name, 'ort-cache');
    const before = readdirSync(source, { recursive: true }).sort();
    const plain = await picture(source);
    const cold = await picture(source, cacheDir);
    const written = listing(cacheDir);
    const parts = readdirSync(source).filter((p) => existsSync(join(source, p, 'model.onnx')));
    expect(written).toHaveLength(parts.length);
    expect(written.every((f) => !f.includes('.tmp'))).toBe(true);
    expect(readdirSync(source, { recursive: true }).sort()).toEqual(before);

    const warm = await picture(source, cacheDir);
    expect(listing(cacheDir)).toEqual(written); // nothing written again
    const unet = await cachedGraphFor(cacheDir, join(source, 'unet', 'model.onnx'), 'cpu', { ...DEFAULT_SESSION_OPTIONS });
    expect(unet.hit).toBe(true);
    expect(cold.png.equals(plain.png)).toBe(true);
    expect(warm.png.equals(plain.png)).toBe(true);
    expect(warm.lines.filter((l) => l.includes('cache'))).toEqual([]);

    // The warm load really opened the cached file: a broken one is reported, replaced, and the picture is the same.
    writeFileSync(unet.file, 'not an onnx graph');
    const repaired = await picture(source, cacheDir);
    expect(repaired.lines.some((l) => l.includes(unet.file) && l.includes('did not load'))).toBe(true);
    expect(repaired.png.equals(plain.png)).toBe(true);
    expect(statSync(unet.file).size).toBeGreaterThan(1000);
  });
});

describe('GIVEN a model file that changes', () => {
  it('THEN its cached graph is not used: a new entry is written for the new file and the picture follows the new file', async () => {
    const dir = join(scratch, 'changing', 'sd-tiny');
    cpSync(MODELS['sd-tiny'], dir, { recursive: true });
    const cacheDir = join(scratch, 'changing', 'ort-cache');
    const unetFile = join(dir, 'unet', 'model.onnx');
    await picture(dir, cacheDir);
    const first = await cachedGraphFor(cacheDir, unetFile, 'cpu', { ...DEFAULT_SESSION_OPTIONS });
    expect(first.hit).toBe(true);

    // A doc_string appended to the ModelProto (field 6): still a valid model, other bytes, the same network.
    const doc = Buffer.from('changed after the cache was written');
    appendFileSync(unetFile, Buffer.concat([Buffer.from([0x32, doc.length]), doc]));
    const second = await cachedGraphFor(cacheDir, unetFile, 'cpu', { ...DEFAULT_SESSION_OPTIONS });
    expect(second.file).not.toBe(first.file);
    expect(second.hit).toBe(false);
    const after = await picture(dir, cacheDir);
    expect((await cachedGraphFor(cacheDir, unetFile, 'cpu', { ...DEFAULT_SESSION_OPTIONS })).hit).toBe(true);
    expect(readdirSync(cacheDir).filter((f) => f.includes('-unet-'))).toHaveLength(2);
    expect(after.png.equals((await picture(dir)).png)).toBe(true);
  });

  it('THEN other session options or another provider get another entry', async () => {
    const file = join(MODELS['sd-tiny'], 'unet', 'model.onnx');
    const a = await cachedGraphFor(scratch, file, 'cpu', { ...DEFAULT_SESSION_OPTIONS });
    const b = await cachedGraphFor(scratch, file, 'cpu', { ...DEFAULT_SESSION_OPTIONS, graphOptimizationLevel: 'basic' });
    const c = await cachedGraphFor(scratch, file, 'webgpu', { ...DEFAULT_SESSION_OPTIONS });
    expect(new Set([a.file, b.file, c.file]).size).toBe(3);
  });
});

describe('GIVEN old entries in the cache', () => {
  it(`THEN opening a part removes that part's other entries written over ${PRUNE_AFTER_DAYS} days ago, and nothing else`, async () => {
    const cacheDir = join(scratch, 'pruning', 'ort-cache');
    mkdirSync(cacheDir, { recursive: true });
    const unet = await cachedGraphFor(cacheDir, join(MODELS['sd-tiny'], 'unet', 'model.onnx'), 'cpu', { ...DEFAULT_SESSION_OPTIONS });
    const prefix = basename(unet.file).slice(0, -'0123456789abcdef.onnx'.length);
    expect(prefix).toBe('sd-tiny-unet-');
    const days = (n: number) => (Date.now() - n * 86_400_000) / 1000;
    const files: Record<string, number> = {
      [`${prefix}00000000000000aa.onnx`]: days(PRUNE_AFTER_DAYS + 10), // this part, another key, old: goes
      [`${prefix}00000000000000aa.onnx.data`]: days(PRUNE_AFTER_DAYS + 10), // its weights: go
      [`${prefix}00000000000000bb.onnx.123-0.tmp`]: days(PRUNE_AFTER_DAYS + 1), // a crashed write's leftover: goes
      [`${prefix}00000000000000cc.onnx`]: days(PRUNE_AFTER_DAYS - 1), // another key, recent: stays
      ['sd-tiny-vae_decoder-00000000000000dd.onnx']: days(PRUNE_AFTER_DAYS + 10), // the vae_decoder's own old entry: goes when that part opens (this load opens it too)
      ['other-unet-00000000000000ee.onnx']: days(PRUNE_AFTER_DAYS + 10), // another model: stays
    };
    for (const [name, time] of Object.entries(files)) {
      writeFileSync(join(cacheDir, name), 'x');
      utimesSync(join(cacheDir, name), time, time);
    }
    const lines: string[] = [];
    const model = await loadModel(MODELS['sd-tiny'], { optimizedModelCacheDir: cacheDir, log: (line) => lines.push(line) });
    await model.release();
    const left = readdirSync(cacheDir);
    for (const gone of [`${prefix}00000000000000aa.onnx`, `${prefix}00000000000000aa.onnx.data`, `${prefix}00000000000000bb.onnx.123-0.tmp`]) {
      expect(left, gone).not.toContain(gone);
    }
    for (const kept of [`${prefix}00000000000000cc.onnx`, 'other-unet-00000000000000ee.onnx', basename(unet.file)]) expect(left, kept).toContain(kept);
    // The vae_decoder part was opened too: its own old entry went by the same rule.
    expect(left).not.toContain('sd-tiny-vae_decoder-00000000000000dd.onnx');
    expect(lines.filter((l) => l.includes('removed')).join('\n')).toMatch(/removed 3 optimised graph\(s\) of sd-tiny-unet/);
  });
});
