/**
 * What torch's CPU noise costs per image against xoshiro's (GenerateParams.noise): the time to draw one image's
 * noise (its initial latents plus one draw per step, what an ancestral scheduler takes: an upper bound), and the
 * whole image, the two interleaved round by round so that the machine's load falls on both alike.
 *
 *   npx tsx tools/bench/noise-cost.ts [--steps 20] [--rounds 5] [--draw-reps 200] <modelDir>...
 *
 * Prints one line per model and noise: median draw ms (the latents alone, what a deterministic scheduler takes, and
 * with the step draws), median image ms, and the draw's share of the image.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { loadModel } from '../../src/diffusion/model.js';
import { generate } from '../../src/diffusion/pipeline.js';
import { BatchNoise, imageShape } from '../../src/diffusion/pipeline-steps.js';
import { NOISE_NAMES, type NoiseName } from '../../src/diffusion/types.js';

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** One image's draws: the generator made, its latents, then `steps` more (an ancestral scheduler's). */
function drawMs(noise: NoiseName, perImage: number, steps: number, seed: number): number {
  const out = new Float32Array(perImage);
  const t0 = performance.now();
  const source = BatchNoise.of([{ checked: { seed, count: 1, noise } }]);
  for (let k = 0; k <= steps; k++) source.fillNormal(out);
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { steps: { type: 'string' }, rounds: { type: 'string' }, 'draw-reps': { type: 'string' } },
  });
  const steps = Number(values.steps ?? 20);
  const rounds = Number(values.rounds ?? 5);
  const drawReps = Number(values['draw-reps'] ?? 200);
  console.log(`load average before: ${os.loadavg().map((x) => x.toFixed(2)).join(', ')} (${os.cpus().length} CPUs)`);
  for (const dir of positionals) {
    const model = await loadModel(dir);
    try {
      const shape = imageShape(model, model.info.width, model.info.height);
      const draws: Record<NoiseName, number[]> = { torch: [], xoshiro: [] };
      const latentDraws: Record<NoiseName, number[]> = { torch: [], xoshiro: [] };
      const images: Record<NoiseName, number[]> = { torch: [], xoshiro: [] };
      // Warm both paths (JIT, the runtime's first call) before measuring.
      for (const noise of NOISE_NAMES) {
        drawMs(noise, shape.perImage, steps, 1);
        await generate(model, { prompt: 'a red circle', steps, seed: 1, guidanceScale: 7.5, noise });
      }
      for (let r = 0; r < drawReps; r++) {
        const order = r % 2 === 0 ? NOISE_NAMES : [...NOISE_NAMES].reverse();
        for (const noise of order) {
          draws[noise].push(drawMs(noise, shape.perImage, steps, r));
          latentDraws[noise].push(drawMs(noise, shape.perImage, 0, r));
        }
      }
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 === 0 ? NOISE_NAMES : [...NOISE_NAMES].reverse();
        for (const noise of order) {
          const result = await generate(model, { prompt: 'a red circle on a white background', steps, seed: 1000 + r, guidanceScale: 7.5, noise });
          images[noise].push(result.timings.totalMs);
        }
      }
      console.log(`${model.info.name}: ${model.info.width}×${model.info.height}, latent ${shape.perImage} values, ${model.info.defaultScheduler}, ${steps} steps`);
      for (const noise of NOISE_NAMES) {
        const d = median(draws[noise]);
        const i = median(images[noise]);
        console.log(`  ${noise.padEnd(7)} latents alone ${median(latentDraws[noise]).toFixed(3)} ms; latents + ${steps} step draws ${d.toFixed(3)} ms, image ${i.toFixed(1)} ms (${images[noise].map((x) => x.toFixed(0)).join(' ')}), draw/image ${((100 * d) / i).toFixed(3)} %`);
      }
      const extra = median(draws.torch) - median(draws.xoshiro);
      console.log(`  torch − xoshiro draw: ${extra.toFixed(3)} ms = ${((100 * extra) / median(images.xoshiro)).toFixed(3)} % of an image`);
    } finally {
      await model.release();
    }
  }
  console.log(`load average after: ${os.loadavg().map((x) => x.toFixed(2)).join(', ')}`);
}

await main();
