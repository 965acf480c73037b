/**
 * Which generator a job's noise comes from (GenerateParams.noise), and the one place that turns a name and a seed
 * into a {@link NoiseSource}.
 *
 * - `torch`: torch.Generator("cpu").manual_seed(seed) + torch.randn (./torch-generator.ts). diffusers' pipelines
 *   with `generator=[torch.Generator("cpu").manual_seed(seed + i) for i …]` draw the same initial latents and
 *   ancestral step noise, and ComfyUI the same initial latents for a single picture, so a seed means the same
 *   picture there and here (same model, scheduler and settings).
 * - `xoshiro`: imagine's own xoshiro128** stream (./rng.ts), what every job used before `torch`; a job recorded
 *   without a `noise` field was made with it.
 */
import { Rng } from './rng.js';
import type { NoiseSource } from './schedulers/types.js';
import { TorchCpuGenerator } from './torch-generator.js';
import type { NoiseName } from './types.js';

/** A fresh generator of kind `name` seeded with `seed` (uint32). */
export function noiseSource(name: NoiseName, seed: number): NoiseSource {
  return name === 'torch' ? new TorchCpuGenerator(seed) : new Rng(seed);
}
