import { mkdtempSync, rmSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { engineModels, modelDefaults } from '../../src/models/library.js';

const MODELS = join(import.meta.dirname, '..', 'fixtures', 'models');
const temp = mkdtempSync(join(tmpdir(), 'imagine-defaults-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

describe('per-model defaults', () => {
  it('GIVEN an SD model without imagine.json THEN it has no defaults of its own', () => {
    expect(modelDefaults('SD 1.x', {})).toEqual({});
  });

  it('GIVEN a Turbo or LCM model without imagine.json THEN 4 steps with guidance off, naming the source', () => {
    expect(modelDefaults('SD 2.x Turbo', {})).toEqual({ steps: 4, guidance: 0, source: 'the SD-Turbo model card: 1-4 steps, guidance 0' });
    expect(modelDefaults('LCM', {})).toMatchObject({ steps: 4, guidance: 0, source: expect.stringMatching(/LCM paper/) });
  });

  it('GIVEN imagine.json THEN its values win over the inferred ones, and the source says so', () => {
    expect(modelDefaults('LCM', { steps: 6 })).toEqual({ steps: 6, guidance: 0, source: 'imagine.json, then the LCM paper and model card: 4 steps' });
    expect(modelDefaults('SD 1.x', { steps: 30, guidance: 5 })).toEqual({ steps: 30, guidance: 5, source: 'imagine.json' });
  });

  it('GIVEN an SDXL or SDXL Turbo model without imagine.json THEN its native size (1024², 512² for Turbo), naming the model card', () => {
    expect(modelDefaults('SDXL', {})).toEqual({ width: 1024, height: 1024, source: 'the SDXL model card: 1024×1024' });
    expect(modelDefaults('SDXL Turbo', {})).toEqual({ steps: 4, guidance: 0, width: 512, height: 512, source: 'the SDXL-Turbo model card: 512×512, 1-4 steps, guidance 0' });
    expect(modelDefaults('SDXL', { width: 896, height: 1152 })).toEqual({ width: 896, height: 1152, source: 'imagine.json' });
  });

  it('GIVEN the test fixtures THEN sdxl-tiny is in the engine’s models as SDXL with its 1024² defaults', () => {
    const sdxl = engineModels(MODELS).find((m) => m.name === 'sdxl-tiny');
    expect(sdxl).toMatchObject({ kind: 'SDXL', defaults: { width: 1024, height: 1024, source: 'the SDXL model card: 1024×1024' }, safetyChecker: false });
  });

  it('GIVEN the library THEN engineModels lists each model with its kind and defaults, imagine.json read', () => {
    cpSync(join(MODELS, 'sd-tiny'), join(temp, 'sd-tiny'), { recursive: true });
    cpSync(join(MODELS, 'lcm-tiny'), join(temp, 'lcm-tiny'), { recursive: true });
    writeFileSync(join(temp, 'sd-tiny', 'imagine.json'), JSON.stringify({ num_inference_steps: 12, steps_max: 30, guidance_scale: 6, scheduler: 'dpmpp_2m' }));
    const models = engineModels(temp);
    expect(models.map((m) => [m.name, m.kind])).toEqual([['lcm-tiny', 'LCM'], ['sd-tiny', 'SD']]);
    expect(models[0].defaults).toMatchObject({ steps: 4, guidance: 0 });
    expect(models[1].defaults).toEqual({ steps: 12, stepsMax: 30, guidance: 6, scheduler: 'dpmpp_2m', source: 'imagine.json' });
  });
});
