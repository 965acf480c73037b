/**
 * What the model's safety checker costs per picture: `npx tsx tools/bench/safety-cost.ts [--model DIR] [--images N]`.
 *
 * - With a model folder that has `safety_checker/`: N pictures through the normal pipeline (20 steps, guidance
 *   7.5), the checker's time per picture (`timings.safetyMs`: CLIP preprocessing and its call) against the
 *   picture's whole time.
 * - Without `--model`: the embedded model with the test fixture's checker (test/fixtures/models/safety-red, a
 *   one-node graph: what it measures is the plumbing, not a real checker), linked together in a temporary folder.
 * - `tools/bench/build_vit_checker.py` builds a checker of the real one's size (CLIP ViT-L/14, random weights) to
 *   put beside a model's parts and pass with `--model`: its time is what the real checker costs.
 * - Either way, the CLIP preprocessing a real Stable Diffusion checker needs (a 512×512 picture → resize to 224,
 *   crop 224, normalise, with SD 1.x's preprocessor config) on its own: the part of a real checker's cost that can
 *   be measured without its weights. Its CLIP ViT-L/14 call is not measured here.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModel } from '../../src/diffusion/model.js';
import { generate } from '../../src/diffusion/pipeline.js';
import { clipPreprocess, readClipPreprocessing } from '../../src/diffusion/safety-checker.js';

const ROOT = resolve(import.meta.dirname, '..', '..');

/** CompVis/stable-diffusion-v1-4, feature_extractor/preprocessor_config.json. */
const SD_PREPROCESSOR = {
  crop_size: 224,
  do_center_crop: true,
  do_convert_rgb: true,
  do_normalize: true,
  do_resize: true,
  image_mean: [0.48145466, 0.4578275, 0.40821073],
  image_std: [0.26862954, 0.26130258, 0.27577711],
  resample: 3,
  size: 224,
};

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The embedded model's parts and the fixture checker, linked into a temporary folder. */
function fixtureModel(): { dir: string; remove: () => void } {
  const parent = mkdtempSync(join(tmpdir(), 'imagine-safety-cost-'));
  const dir = join(parent, 'imagine-shapes+safety-red');
  mkdirSync(dir);
  const base = join(ROOT, 'models', 'imagine-shapes');
  for (const entry of readdirSync(base)) symlinkSync(join(base, entry), join(dir, entry));
  for (const part of ['safety_checker', 'feature_extractor']) symlinkSync(join(ROOT, 'test', 'fixtures', 'models', 'safety-red', part), join(dir, part));
  return { dir, remove: () => rmSync(parent, { recursive: true, force: true }) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { model: { type: 'string' }, images: { type: 'string', default: '40' } } });
  const images = Number(values.images);
  const fixture = values.model === undefined ? fixtureModel() : undefined;
  const dir = values.model ?? fixture!.dir;
  try {
    const model = await loadModel(dir, { log: () => {} });
    try {
      if (!model.info.safetyChecker) throw new Error(`${dir} has no safety_checker/model.onnx`);
      const prompts = ['a big yellow square on a red background', 'a small blue circle on a green background'];
      for (let i = 0; i < 2; i++) await generate(model, { prompt: prompts[i], steps: 20, seed: i, guidanceScale: 7.5 });
      const safety: number[] = [];
      const total: number[] = [];
      for (let i = 0; i < images; i++) {
        const result = await generate(model, { prompt: prompts[i % 2], steps: 20, seed: 100 + i, guidanceScale: 7.5 });
        safety.push(result.timings.safetyMs ?? 0);
        total.push(result.timings.totalMs);
      }
      const s = median(safety);
      const t = median(total);
      console.log(`${model.info.name} (${model.info.width}×${model.info.height}, 20 steps, ${images} pictures):`);
      console.log(`  safety checker per picture: median ${s.toFixed(2)} ms, fastest ${Math.min(...safety).toFixed(2)} ms`);
      console.log(`  whole picture: median ${t.toFixed(1)} ms; the checker is ${((100 * s) / t).toFixed(1)} % of it`);
      console.log(`  peak resident memory, model and checker loaded: ${Math.round(process.resourceUsage().maxRSS / 1024)} MiB`);
    } finally {
      await model.release();
    }

    const config = readClipPreprocessing(SD_PREPROCESSOR);
    const side = 512;
    const rgb = new Uint8Array(side * side * 3).map((_, i) => (i * 2654435761) >>> 24);
    for (let i = 0; i < 5; i++) await clipPreprocess(rgb, side, side, config);
    const prep: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t0 = performance.now();
      await clipPreprocess(rgb, side, side, config);
      prep.push(performance.now() - t0);
    }
    console.log(`SD 1.x CLIP preprocessing of a 512×512 picture (resize 224, crop 224, normalise): median ${median(prep).toFixed(2)} ms`);
  } finally {
    fixture?.remove();
  }
}

await main();
