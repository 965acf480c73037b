/**
 * The img2img steps of the pipeline (diffusers' pipeline_onnx_stable_diffusion_img2img.py): each job's picture
 * read and scaled, the schedule started at `strength`, and the starting latents made by noising the encoded
 * pictures to the first timestep. pipeline.ts calls these where a txt2img run prepares pure noise.
 */
import { initImagePixels } from '../image/init-image.js';
import { img2imgSteps, invalid } from './check-inputs.js';
import type { DiffusionModel } from './model.js';
import type { BatchOutcome, Member } from './pipeline.js';
import { BatchNoise, encodeImages, type ImageShape, type RunClock } from './pipeline-steps.js';
import type { Scheduler } from './schedulers/index.js';

/**
 * Step 1b, diffusers' `image_processor.preprocess` for img2img jobs: each job's picture as planar [3, height,
 * width] in [-1, 1] (see image/init-image.ts). A job whose picture cannot be read is answered in `outcomes` and
 * left out. txt2img batches (no job has a picture) pass through with `pictures` undefined.
 */
export async function readPictures(checked: Member[], outcomes: (BatchOutcome | undefined)[]): Promise<{ members: Member[]; pictures?: Float32Array[] }> {
  if (checked.length === 0 || checked[0].checked.initImage === undefined) return { members: checked };
  const read = await Promise.all(
    checked.map((m) =>
      initImagePixels(m.checked.initImage!, m.checked.width, m.checked.height).then(
        (pixels) => ({ ok: true as const, pixels }),
        (error: Error) => ({ ok: false as const, error }),
      ),
    ),
  );
  const members: Member[] = [];
  const pictures: Float32Array[] = [];
  read.forEach((r, k) => {
    if (r.ok) {
      members.push(checked[k]);
      pictures.push(r.pixels);
    } else {
      outcomes[checked[k].index] = { ok: false, error: r.error };
    }
  });
  return { members, pictures };
}

/**
 * Step 4 for img2img, diffusers' `StableDiffusionImg2ImgPipeline.get_timesteps(num_inference_steps, strength)`:
 * init_timestep = min(floor(steps × strength), steps), t_start = steps − init_timestep, the schedule from
 * t_start × order on. diffusers also calls `set_begin_index(t_start × order)`; here every scheduler finds its index
 * by timestep lookup, which lands on the same index for each of our schedules (Heun's slice starts on the repeat of
 * a timestep, the match lookup picks): the img2img conformance cases (cli/conformance-img2img-cases.ts, recorded
 * from diffusers' own code) check both. Not the ONNX img2img pipeline's inline version, which ignores `order` and,
 * with steps_offset 1, noises to one timestep above the loop's first. `loopSteps`: the user-visible steps that run.
 */
export function startTimesteps(scheduler: Scheduler, steps: number, strength: number): { timesteps: Float64Array; loopSteps: number } {
  const initTimestep = img2imgSteps(steps, strength);
  const tStart = Math.max(steps - initTimestep, 0);
  return { timesteps: scheduler.timesteps.subarray(tStart * scheduler.order), loopSteps: initTimestep };
}

/**
 * Step 5 for img2img, OnnxStableDiffusionImg2ImgPipeline's: each job's picture encoded once (× scaling factor) and
 * repeated for its images, then `scheduler.add_noise(init_latents, noise, timesteps[:1])` with image i's noise from
 * its own generator (seed + i, of the job's `noise` kind), one draw of the whole latent per image as diffusers'
 * `randn_tensor(shape, generator)`. As in the ONNX pipeline, the VAE's sampling is inside vae_encoder, so the
 * generators' first draw is this noise (as in ComfyUI, whose VAE encode does not draw from the seed's generator; diffusers' torch
 * img2img pipeline draws the VAE's posterior sample from the generator first, so its img2img noise differs);
 * ancestral schedulers keep drawing from them in step().
 */
export async function prepareImg2imgLatents(
  model: DiffusionModel,
  members: readonly Member[],
  pictures: readonly Float32Array[],
  shape: ImageShape,
  scheduler: Scheduler,
  firstTimestep: number,
  clock: RunClock,
): Promise<{ latents: Float32Array; noise: BatchNoise }> {
  addNoiseOf(scheduler); // refused before the VAE runs
  const perPicture = 3 * shape.width * shape.height;
  const all = new Float32Array(pictures.length * perPicture);
  pictures.forEach((p, k) => all.set(p, k * perPicture));
  const encoded = await encodeImages(model, all, pictures.length, shape, clock);
  const noise = BatchNoise.of(members);
  const initLatents = new Float32Array(members.reduce((n, m) => n + m.checked.count, 0) * shape.perImage);
  members.forEach((m, k) => {
    const latent = encoded.subarray(k * shape.perImage, (k + 1) * shape.perImage);
    for (let i = 0; i < m.checked.count; i++) initLatents.set(latent, (m.firstImage + i) * shape.perImage);
  });
  const drawn = new Float32Array(initLatents.length);
  noise.fillNormal(drawn);
  return { latents: noiseInitLatents(scheduler, initLatents, drawn, firstTimestep), noise };
}

/**
 * The noising of step 5, diffusers' `scheduler.add_noise(init_latents, noise, latent_timestep)` with
 * latent_timestep = timesteps[:1]: the encoded pictures taken to the schedule's first timestep (the first of
 * {@link startTimesteps}). The conformance loop (cli/conformance-loop.ts) runs this same function.
 */
export function noiseInitLatents(scheduler: Scheduler, initLatents: Float32Array, noise: Float32Array, firstTimestep: number): Float32Array {
  return addNoiseOf(scheduler)(initLatents, noise, firstTimestep);
}

function addNoiseOf(scheduler: Scheduler): NonNullable<Scheduler['addNoise']> {
  if (scheduler.addNoise === undefined) throw invalid('Expected a scheduler that can start mid-schedule (addNoise) for img2img');
  return scheduler.addNoise.bind(scheduler);
}
