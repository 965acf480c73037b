/**
 * Which onnxruntime execution provider a model's sessions run on: the requested ones in order, each tried with a
 * one-node model (a provider listed by the build may still lack its driver or device), always ending at cpu.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { ModelLoadError } from './model-error.js';
import { onnxModel } from './onnx-graph.js';

/** Execution providers imagine knows how to ask onnxruntime-node for. */
export const EXECUTION_PROVIDERS = ['cpu', 'cuda', 'webgpu'] as const;
export type ExecutionProviderName = (typeof EXECUTION_PROVIDERS)[number];

/** Try the requested providers in order; always ends at cpu. */
export async function pickProvider(
  requested: readonly ExecutionProviderName[],
  log: (line: string) => void,
): Promise<ExecutionProviderName> {
  for (const name of requested) {
    if (!(EXECUTION_PROVIDERS as readonly string[]).includes(name)) {
      throw new ModelLoadError(`Expected execution providers from ${EXECUTION_PROVIDERS.join(', ')}, got \`${name}\``);
    }
  }
  const supported = new Set(ort.listSupportedBackends().map((b) => b.name));
  const skipped: string[] = [];
  for (const name of requested) {
    if (name === 'cpu') break;
    if (!supported.has(name)) {
      skipped.push(`${name} (not in this onnxruntime-node build)`);
      continue;
    }
    if (name === 'cuda' && !cudaBinariesInstalled()) {
      // The project's .npmrc skips onnxruntime-node's CUDA download; say how to add it.
      skipped.push('cuda (its binaries are not installed: npm_config_onnxruntime_node_install=cuda12 npm rebuild onnxruntime-node)');
      continue;
    }
    if (await providerWorks(name)) {
      log(`imagine: running on ${name}`);
      return name;
    }
    skipped.push(`${name} (not available on this machine)`);
  }
  if (skipped.length > 0 || requested.length !== 1) {
    log(`imagine: running on cpu${skipped.length ? `; skipped ${skipped.join(', ')}` : ''}`);
  }
  return 'cpu';
}

/** Whether onnxruntime-node's CUDA provider library sits beside its binding (linux and windows builds). */
function cudaBinariesInstalled(): boolean {
  const file = process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';
  try {
    const entry = createRequire(import.meta.url).resolve('onnxruntime-node');
    return existsSync(join(dirname(entry), '..', 'bin', 'napi-v6', process.platform, process.arch, file));
  } catch {
    return true; // unknown layout: let the trial session decide
  }
}

/** A provider is listed by the build but may lack its driver or device: try a one-node model on it. */
async function providerWorks(name: ExecutionProviderName): Promise<boolean> {
  try {
    const session = await ort.InferenceSession.create(IDENTITY_MODEL, { executionProviders: [name], logSeverityLevel: 4 });
    await session.release();
    return true;
  } catch {
    return false;
  }
}

let float16OnWebgpu: Promise<boolean> | undefined;

/**
 * Whether the webgpu device runs float16 kernels (WebGPU's optional `shader-f16` feature): a one-node Cast to
 * float16, run once a process. Software Vulkan (SwiftShader) lacks it, and a float16 model then fails at its first
 * run with "requires f16 but the device does not support it".
 */
export function webgpuRunsFloat16(): Promise<boolean> {
  float16OnWebgpu ??= (async () => {
    try {
      const model = onnxModel({
        name: 'f16_probe',
        inputs: [{ name: 'x', type: 'float32', dims: [1] }],
        outputs: [{ name: 'y', type: 'float16', dims: [1] }],
        nodes: [{ op: 'Cast', inputs: ['x'], outputs: ['y'], attributes: [{ name: 'to', int: 10 }] }],
      });
      const session = await ort.InferenceSession.create(model, { executionProviders: ['webgpu'], logSeverityLevel: 4 });
      try {
        await session.run({ x: new ort.Tensor('float32', Float32Array.of(1), [1]) });
        return true;
      } finally {
        await session.release();
      }
    } catch {
      return false;
    }
  })();
  return float16OnWebgpu;
}

// An ONNX model with one Identity node (float [1] x → y, opset 13): enough to see a provider start.
const IDENTITY_MODEL = onnxModel({
  name: 'g',
  inputs: [{ name: 'x', type: 'float32', dims: [1] }],
  outputs: [{ name: 'y', type: 'float32', dims: [1] }],
  nodes: [{ op: 'Identity', inputs: ['x'], outputs: ['y'] }],
  opset: 13,
});
