import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel, ModelLoadError } from '../../src/diffusion/model.js';

const MODELS = join(import.meta.dirname, '..', 'fixtures', 'models');
const scratch = mkdtempSync(join(tmpdir(), 'imagine-model-settings-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function copyOfPixelTiny(name: string, imagineJson?: string): string {
  const dir = join(scratch, name);
  cpSync(join(MODELS, 'pixel-tiny'), dir, { recursive: true });
  if (imagineJson !== undefined) writeFileSync(join(dir, 'imagine.json'), imagineJson);
  return dir;
}

describe('model settings beside the weights (imagine.json)', () => {
  it('GIVEN no imagine.json THEN the model names no guidance of its own', async () => {
    const model = await loadModel(copyOfPixelTiny('plain'));
    try {
      expect(model.info.defaultGuidance).toBeUndefined();
    } finally {
      await model.release();
    }
  });

  it('GIVEN guidance_scale 3 THEN ModelInfo carries it (0 too is a value)', async () => {
    for (const [name, value] of [['three', 3], ['zero', 0]] as const) {
      const model = await loadModel(copyOfPixelTiny(name, JSON.stringify({ guidance_scale: value })));
      try {
        expect(model.info.defaultGuidance).toBe(value);
      } finally {
        await model.release();
      }
    }
  });

  it('GIVEN a guidance_scale that is not a number THEN loading fails naming the file', async () => {
    const dir = copyOfPixelTiny('bad', JSON.stringify({ guidance_scale: 'high' }));
    const error = await loadModel(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelLoadError);
    expect((error as Error).message).toContain(join(dir, 'imagine.json'));
    expect((error as Error).message).toContain('guidance_scale');
  });
});
