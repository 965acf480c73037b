import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type DiffusionModel } from '../../src/diffusion/model.js';
import { EMBEDDED_MODEL_DIR } from '../../src/diffusion/model-path.js';
import { drawScene } from '../../src/eval/draw.js';
import { contactSheet, formatReport, loadHeldout, runEval } from '../../src/eval/run-eval.js';

describe('held-out set', () => {
  it('GIVEN src/eval/heldout.json THEN every item has a prompt, a seed and what the prompt states', () => {
    const items = loadHeldout();
    expect(items.length).toBeGreaterThanOrEqual(64);
    for (const item of items) {
      expect(item.prompt.length).toBeGreaterThan(0);
      expect(Number.isInteger(item.seed)).toBe(true);
      // A counting prompt ("two green triangles") states one kind of object and how many; others state each object.
      expect(item.expect.objects.length).toBe(item.expect.counted ? 1 : item.expect.count);
    }
    // v2's relation and counting prompts are there, every relation and every number from one to three.
    expect(new Set(items.map((i) => i.expect.relation).filter(Boolean))).toEqual(new Set(['left', 'right', 'above', 'below']));
    expect(new Set(items.filter((i) => i.expect.counted).map((i) => i.expect.count))).toEqual(new Set([1, 2, 3]));
    // Distinct prompts and seeds: the set is not one prompt repeated.
    expect(new Set(items.map((i) => i.prompt)).size).toBeGreaterThan(items.length * 0.9);
    expect(new Set(items.map((i) => i.seed)).size).toBe(items.length);
  });
});

describe('runEval', () => {
  let model: DiffusionModel;
  beforeAll(async () => {
    model = await loadModel(EMBEDDED_MODEL_DIR, { intraOpNumThreads: 1 });
  });
  afterAll(async () => {
    await model?.release();
  });

  it('GIVEN three held-out prompts THEN each is generated, scored and counted once per stated attribute', async () => {
    const items = loadHeldout().slice(0, 3);
    const seen: number[] = [];
    const report = await runEval(model, items, { steps: 4, onItem: (done) => seen.push(done) });
    expect(seen).toEqual([1, 2, 3]);
    expect(report.results.map((r) => r.item.prompt)).toEqual(items.map((i) => i.prompt));
    expect(report.results[0].image).toMatchObject({ width: 64, height: 64 });
    const stated = (attr: 'background' | 'color') => report.results.filter((r) => r.score[attr] !== undefined).length;
    expect(report.tally.color?.total).toBe(stated('color'));
    expect(report.tally.background?.total).toBe(stated('background'));
    const correct = report.results.filter((r) => r.score.color === true).length;
    expect(report.tally.color?.correct ?? 0).toBe(correct);
    expect(formatReport(report)).toMatch(/^3 held-out prompts, 4 steps, ddim, guidance 7\.5, torch noise\ncolor +\d+\/3 /);
  });
});

describe('contactSheet', () => {
  it('GIVEN five tiles in rows of two THEN a PNG three tiles high with the pictures enlarged in it', async () => {
    const image = drawScene({ width: 32, height: 32, background: 'blue', objects: [{ color: 'yellow', shape: 'square', cx: 16, cy: 16, diameter: 16 }] });
    const tiles = Array.from({ length: 5 }, (_, i) => ({ image, caption: `tile ${i}`, pass: i % 2 === 0 }));
    const png = await contactSheet(tiles, { columns: 2, scale: 4 });
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    const tileW = 32 * 4 + 12;
    expect(info.width).toBe(2 * tileW);
    expect(info.height % 3).toBe(0);
    // The centre of the first tile's picture is the square's yellow, enlarged 4×.
    const x = 6 + 64;
    const y = 6 + 64;
    const p = (y * info.width + x) * info.channels;
    expect([data[p], data[p + 1], data[p + 2]]).toEqual([245, 215, 30]);
  });
});
