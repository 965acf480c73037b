/**
 * Make the grid of real samples shown in the model card and the README:
 *
 *   npx tsx src/cli/samples-grid.ts [--model DIR] [--out docs/samples.png] [--steps 20] [--guidance 7.5]
 *
 * Fixed prompts and seeds, the normal pipeline, no cherry-picking: the first seed of each prompt is what is shown.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { loadModel } from '../diffusion/model.js';
import { resolveModelDir } from '../diffusion/model-path.js';
import { generate } from '../diffusion/pipeline.js';
import { contactSheet, type SheetTile } from '../eval/run-eval.js';

const PROMPTS = [
  'a red circle on a white background',
  'a big yellow square on a blue background',
  'a small green triangle on the left, black background',
  'a purple circle at the top on an orange background',
  'blue square, yellow background',
  'a red circle and a blue square on a white background',
  'a tiny purple square in the center on a white background',
  'a gorgeous red circle on a white background, trending on artstation',
  'a red circle to the left of a blue square on a white background',
  'a yellow triangle above a green circle on a black background',
  'a white square below an orange circle, blue background',
  'a purple triangle to the right of a yellow square on a green background',
  'one red square on a black background',
  'two green triangles on a white background',
  'three yellow circles on a purple background',
  'two blue squares, orange background',
];

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { model: { type: 'string' }, out: { type: 'string' }, steps: { type: 'string' }, guidance: { type: 'string' } },
    strict: true,
  });
  const steps = Number(values.steps ?? 20);
  const guidanceScale = Number(values.guidance ?? 7.5);
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`Expected \`--steps\` to be a positive integer, got \`${values.steps}\``);
  if (!Number.isFinite(guidanceScale)) throw new Error(`Expected \`--guidance\` to be a number, got \`${values.guidance}\``);
  const model = await loadModel(resolveModelDir(values.model));
  try {
    const tiles: SheetTile[] = [];
    for (const [i, prompt] of PROMPTS.entries()) {
      // docs/samples.png was made with xoshiro noise, before torch's became the default: pinned, so it reproduces.
      const out = await generate(model, { prompt, seed: 42 + i, steps, guidanceScale, noise: 'xoshiro' }, { previewEvery: 0 });
      const { data, info } = await sharp(out.images[0]).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      tiles.push({ image: { width: info.width, height: info.height, rgb: new Uint8Array(data) }, caption: prompt });
    }
    const file = resolve(values.out ?? 'docs/samples.png');
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, await contactSheet(tiles, { columns: 8 }));
    console.log(`wrote ${file} (${PROMPTS.length} prompts, ${steps} steps, guidance ${guidanceScale}, seeds 42..${42 + PROMPTS.length - 1})`);
  } finally {
    await model.release();
  }
}

await main();
