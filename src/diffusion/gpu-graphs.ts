/**
 * The small ONNX graphs the WebGPU loop (gpu-loop.ts) runs beside the UNet, so that the latents and the UNet's
 * prediction stay in GPU buffers between steps: guidance with the scheduler's linear step, the preview's latent →
 * RGB map, and copies to and from the GPU. onnxruntime-node hands a `gpu-buffer` tensor from one session's run to
 * another's (every webgpu session of the process shares one device), but cannot read one back itself (its
 * `download` throws "not implemented" in 1.30, and the throw ends the process): a read goes through a session whose
 * output is located on the cpu.
 */
import * as ort from 'onnxruntime-node';
import { onnxModel, type GraphNode, type OnnxTypeName } from './onnx-graph.js';
import { SD_LATENT_RGB } from './preview.js';

/** The UNet's float types, as the loop feeds and reads them. */
export interface UnetTypes {
  /** Its `sample` input. */
  sample: 'float32' | 'float16';
  /** Its `encoder_hidden_states` input. */
  hidden: 'float32' | 'float16';
  /** Its output. */
  output: 'float32' | 'float16';
}

/** Sessions on webgpu, made once per UNet and kept while it is alive. */
export interface GpuGraphs {
  /**
   * Guidance and one linear step (see {@link stepGraph}). Outputs on the GPU: `latents_out`, `sample_out` (the next
   * UNet input) and `denoised` (x0, for a preview).
   */
  step: ort.InferenceSession;
  /** Rows of x0 mapped to RGB planes, output on the cpu; undefined for latents of other than 3 or 4 channels. */
  preview?: ort.InferenceSession;
  /** Identity with its output on the GPU: a host array made a GPU buffer once (the prompts' embeddings). */
  upload: ort.InferenceSession;
  /** Identity with its output on the cpu: a GPU buffer read back (the last latents, a guided prediction). */
  download: ort.InferenceSession;
}

const graphs = new WeakMap<ort.InferenceSession, Promise<GpuGraphs>>();

/**
 * The graphs for `unet` (a webgpu session), made on its first run and shared by later ones. They hold a few
 * kernels' worth of GPU state; they go when the UNet session is collected.
 */
export function gpuGraphsFor(unet: ort.InferenceSession, types: UnetTypes, channels: number): Promise<GpuGraphs> {
  let made = graphs.get(unet);
  if (!made) {
    made = makeGraphs(types, channels);
    // A failure is not kept: the next run tries again (and fails the same way, with the same message).
    made.catch(() => graphs.delete(unet));
    graphs.set(unet, made);
  }
  return made;
}

async function makeGraphs(types: UnetTypes, channels: number): Promise<GpuGraphs> {
  const options = (location: ort.InferenceSession.SessionOptions['preferredOutputLocation']): ort.InferenceSession.SessionOptions => ({
    executionProviders: ['webgpu'],
    preferredOutputLocation: location,
    logSeverityLevel: 3,
  });
  const [step, preview, upload, download] = await Promise.all([
    ort.InferenceSession.create(stepGraph(types), options('gpu-buffer')),
    channels === 3 || channels === 4 ? ort.InferenceSession.create(previewGraph(channels), options('cpu')) : undefined,
    ort.InferenceSession.create(identityGraph(types.hidden), options('gpu-buffer')),
    ort.InferenceSession.create(identityGraph('float32'), options('cpu')),
  ]);
  return { step, preview, upload, download };
}

const LATENT = ['images', 'channels', 'height', 'width'];
const ROWS = ['rows', 'channels', 'height', 'width'];
const SCALARS = ['x0_sample', 'x0_output', 'clip_min', 'clip_max', 'prev_sample', 'prev_output', 'prev_x0', 'next_scale'] as const;
/** The step graph's scalar inputs, in the order {@link stepScalars} fills them. */
export type StepScalar = (typeof SCALARS)[number];

/**
 * One denoising step on the GPU, for every image of the batch:
 *   guided = u + g·(c − u), u and c the rows `uncond_index` and `cond_index` of the UNet's prediction (a job without
 *     guidance: u = c, g = 1), as pipeline.ts's guide();
 *   x0 = clip(x0_sample·x + x0_output·guided, clip_min, clip_max);
 *   latents_out = prev_sample·x + prev_output·guided + prev_x0·x0 (a scheduler's LinearStep);
 *   sample_out = latents_out·next_scale, row r taken from image `expand_index[r]` (CFG rows twice), in the UNet's
 *     sample type: the next UNet call's input, scaled for the next timestep.
 * With x0 and prev coefficients (0, 0 | 0, 1, 0), latents_out is the guided prediction itself: the loop's way to
 * guide on the GPU for a scheduler whose step runs in JS.
 */
export function stepGraph(types: UnetTypes): Uint8Array {
  const nodes: GraphNode[] = [];
  const node = (op: string, inputs: string[], output: string, attributes?: GraphNode['attributes']) => {
    nodes.push({ op, inputs, outputs: [output], attributes });
    return output;
  };
  const prediction = types.output === 'float16' ? node('Cast', ['noise_pred'], 'noise_pred_f32', [{ name: 'to', int: 1 }]) : 'noise_pred';
  const u = node('Gather', [prediction, 'uncond_index'], 'uncond', [{ name: 'axis', int: 0 }]);
  const c = node('Gather', [prediction, 'cond_index'], 'cond', [{ name: 'axis', int: 0 }]);
  const guided = node('Add', [u, node('Mul', [node('Sub', [c, u], 'difference'), 'guidance'], 'guidance_term')], 'guided');
  const x0Raw = node('Add', [node('Mul', ['latents', 'x0_sample'], 'x0_a'), node('Mul', [guided, 'x0_output'], 'x0_b')], 'x0_raw');
  const x0 = node('Clip', [x0Raw, 'clip_min', 'clip_max'], 'denoised');
  const ab = node('Add', [node('Mul', ['latents', 'prev_sample'], 'prev_a'), node('Mul', [guided, 'prev_output'], 'prev_b')], 'prev_ab');
  const prev = node('Add', [ab, node('Mul', [x0, 'prev_x0'], 'prev_c')], 'latents_out');
  const rows = node('Gather', [node('Mul', [prev, 'next_scale'], 'scaled'), 'expand_index'], 'rows_f32', [{ name: 'axis', int: 0 }]);
  if (types.sample === 'float16') node('Cast', [rows], 'sample_out', [{ name: 'to', int: 10 }]);
  else node('Identity', [rows], 'sample_out');
  return onnxModel({
    name: 'imagine_gpu_step',
    producer: 'imagine',
    inputs: [
      { name: 'noise_pred', type: types.output, dims: ROWS },
      { name: 'latents', type: 'float32', dims: LATENT },
      { name: 'uncond_index', type: 'int64', dims: ['images'] },
      { name: 'cond_index', type: 'int64', dims: ['images'] },
      { name: 'guidance', type: 'float32', dims: ['images', 1, 1, 1] },
      { name: 'expand_index', type: 'int64', dims: ['rows'] },
      ...SCALARS.map((name) => ({ name, type: 'float32' as const, dims: [] })),
    ],
    outputs: [
      { name: 'latents_out', type: 'float32', dims: LATENT },
      { name: 'sample_out', type: types.sample, dims: ROWS },
      { name: 'denoised', type: 'float32', dims: LATENT },
    ],
    nodes,
  });
}

/**
 * Rows `rows` of x0 as RGB planes in about [-1, 1]: 4 channels through preview.ts's SD 1.x latent → RGB factors
 * (a 1×1 convolution), 3 channels as they are. Only these planes are read back, not the whole batch's latents.
 */
export function previewGraph(channels: 3 | 4): Uint8Array {
  const nodes: GraphNode[] = [{ op: 'Gather', inputs: ['denoised', 'rows'], outputs: [channels === 4 ? 'picked' : 'rgb'], attributes: [{ name: 'axis', int: 0 }] }];
  const initializers = [];
  if (channels === 4) {
    // Conv weight [out 3, in 4, 1, 1]: output channel o sums latent channel i × SD_LATENT_RGB[i][o].
    const weight = [0, 1, 2].flatMap((o) => SD_LATENT_RGB.map((factors) => factors[o]));
    initializers.push({ name: 'latent_rgb', dims: [3, 4, 1, 1], values: weight });
    nodes.push({ op: 'Conv', inputs: ['picked', 'latent_rgb'], outputs: ['rgb'] });
  }
  return onnxModel({
    name: 'imagine_gpu_preview',
    inputs: [
      { name: 'denoised', type: 'float32', dims: ['images', channels, 'height', 'width'] },
      { name: 'rows', type: 'int64', dims: ['k'] },
    ],
    outputs: [{ name: 'rgb', type: 'float32', dims: ['k', 3, 'height', 'width'] }],
    nodes,
    initializers,
  });
}

/** `y = x` of one float type and any shape (no shape declared): where its output lives is the session's choice. */
export function identityGraph(type: OnnxTypeName): Uint8Array {
  return onnxModel({
    name: 'imagine_gpu_copy',
    inputs: [{ name: 'x', type }],
    outputs: [{ name: 'y', type }],
    nodes: [{ op: 'Identity', inputs: ['x'], outputs: ['y'] }],
  });
}
