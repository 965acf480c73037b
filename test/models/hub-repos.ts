/**
 * The repositories the Hub stand-in (tools/hub-stand-in) serves to the model-library tests, made from the test
 * models in test/fixtures/models plus what real repos carry beside an ONNX export (PyTorch weights).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { TEST_MODEL_DIR } from '../../src/diffusion/model-path.js';
import { repoFromFolder, type StandInRepo } from '../../tools/hub-stand-in/server.js';

export const SD_TINY = 'imagine-test/sd-tiny';
export const LCM_TINY = 'imagine-test/lcm-tiny';
/** sd-tiny with an 8 MB external-data file, for cutting and resuming. */
export const BIG = 'imagine-test/sd-tiny-big';
export const BIG_FILE = 'unet/model.onnx_data';
export const BIG_BYTES = 8_000_000;
export const GATED = 'imagine-test/sd-tiny-gated';
export const PYTORCH_ONLY = 'imagine-test/pytorch-only';
/** sd-tiny under onnx/, as some repos keep the export beside the PyTorch weights. */
export const NESTED = 'imagine-test/nested';
/**
 * sdxl-tiny laid out as stabilityai/sdxl-turbo keeps its ONNX export: each part's model.onnx beside the PyTorch
 * weights, and a PyTorch-only vae/ folder the ONNX pipeline does not use.
 */
export const SDXL_TINY = 'imagine-test/sdxl-tiny';
/** The token the stand-in has granted access to gated repos. */
export const GRANTED_TOKEN = 'hf_standin';
/** A token the stand-in treats as revoked. */
export const REVOKED_TOKEN = 'hf_revoked';

const FIXTURES = join(TEST_MODEL_DIR, '..');

/** Files real repos carry beside the ONNX export that a pull must never fetch. */
function withNeighbours(files: Map<string, Buffer>, prefix = ''): Map<string, Buffer> {
  files.set(`${prefix}unet/diffusion_pytorch_model.safetensors`, randomBytes(4096));
  files.set('.gitattributes', Buffer.from('*.onnx filter=lfs diff=lfs merge=lfs -text\n'));
  return files;
}

export function testRepos(): Record<string, StandInRepo> {
  const lcm = repoFromFolder(join(FIXTURES, 'lcm-tiny'));
  lcm.set('imagine.json', Buffer.from(JSON.stringify({ num_inference_steps: 4, guidance_scale: 1 })));
  const big = withNeighbours(repoFromFolder(TEST_MODEL_DIR));
  big.set(BIG_FILE, randomBytes(BIG_BYTES));
  return {
    [SD_TINY]: { files: withNeighbours(repoFromFolder(TEST_MODEL_DIR)) },
    [LCM_TINY]: { files: lcm },
    [BIG]: { files: big },
    [GATED]: { files: repoFromFolder(TEST_MODEL_DIR), gated: true },
    [PYTORCH_ONLY]: {
      files: new Map([
        ['model_index.json', Buffer.from('{"_class_name": "StableDiffusionPipeline"}')],
        ['unet/config.json', Buffer.from('{}')],
        ['unet/diffusion_pytorch_model.safetensors', randomBytes(4096)],
        ['text_encoder/model.safetensors', randomBytes(4096)],
      ]),
    },
    [SDXL_TINY]: { files: sdxlRepo() },
    [NESTED]: { files: withNeighbours(repoFromFolder(TEST_MODEL_DIR, 'onnx/'), 'onnx/') },
  };
}

function sdxlRepo(): Map<string, Buffer> {
  const files = withNeighbours(repoFromFolder(join(FIXTURES, 'sdxl-tiny')));
  files.set('text_encoder/model.fp16.safetensors', randomBytes(4096));
  files.set('text_encoder_2/model.fp16.safetensors', randomBytes(4096));
  files.set('vae/config.json', Buffer.from('{"_class_name": "AutoencoderKL", "scaling_factor": 0.13025}'));
  files.set('vae/diffusion_pytorch_model.fp16.safetensors', randomBytes(4096));
  return files;
}
