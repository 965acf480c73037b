/**
 * The pool's stuck-worker watchdog and its bounded close, with a UNet that spends seconds inside one native
 * call (test/fixtures/build-slow-unet.py): an abort cannot reach the worker until that call returns.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.js';
import { silentLogger } from '../../src/log.js';
import { createEngine } from '../../src/diffusion/engine/create.js';
import type { GenerateParams, ImageEngine } from '../../src/diffusion/types.js';

const MODELS = join(import.meta.dirname, '..', 'fixtures', 'models');
const temp = mkdtempSync(join(tmpdir(), 'imagine-pool-watchdog-'));
// sd-tiny with the slow UNet: 64 px steps take milliseconds, one 256 px UNet call takes seconds.
const SLOW = join(temp, 'slow');
cpSync(join(MODELS, 'sd-tiny'), SLOW, { recursive: true });
cpSync(join(MODELS, 'slow-unet', 'unet', 'model.onnx'), join(SLOW, 'unet', 'model.onnx'));

// Shaped like a real token (id.timestamp.hmac) but not one: parseConfig wants one.
const TOKEN = 'MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB';
const quick: GenerateParams = { prompt: 'a green triangle', steps: 1, seed: 7, guidanceScale: 7.5, scheduler: 'euler' };
// Two UNet calls of seconds each: after step 1's progress the worker is inside step 2's call.
const slow: GenerateParams = { ...quick, steps: 2, width: 256, height: 256 };

const engines: ImageEngine[] = [];
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
  rmSync(temp, { recursive: true, force: true });
});

describe('WorkerPool with a UNet call of seconds', () => {
  it('GIVEN the engine built from a config with a 1 s job timeout THEN a 256 px job of several seconds still finishes: the queue owns the timeout', async () => {
    const config = parseConfig({ DISCORD_TOKEN: TOKEN, MODEL_DIR: SLOW, JOB_TIMEOUT_SECONDS: '1' });
    const engine = await createEngine(config, silentLogger);
    engines.push(engine);
    const t0 = performance.now();
    const result = await engine.generate({ ...slow, steps: 1 });
    expect(performance.now() - t0).toBeGreaterThan(1_000);
    expect(result.width).toBe(256);
  });
});
