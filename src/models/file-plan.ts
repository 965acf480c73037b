/**
 * Which files of a Hub repository a pull fetches: the diffusers ONNX layout the pipeline loads, and nothing else.
 * Pure: works on the repository's file listing, before any byte is downloaded.
 */
import { ModelsError } from './models-error.js';

/** A file as the Hub's tree listing gives it (the fields of `@huggingface/hub`'s ListFileEntry used here). */
export interface RepoFile {
  type: 'file' | 'directory' | 'unknown';
  path: string;
  size: number;
  /** Git's blob id (sha1 over `blob <size>\0` + content) for files kept in git. */
  oid?: string;
  /** Files kept through LFS (weights): their sha256 and size. */
  lfs?: { oid: string; size: number };
  /** Files kept in Xet storage; the Hub lists them with `lfs` too, which is what is checked. */
  xetHash?: string;
}

export interface PlannedFile {
  /** Path in the repository. */
  repoPath: string;
  /** Path inside the model folder (the subfolder prefix removed). */
  localPath: string;
  size: number;
  /** What the content must hash to; undefined (size only) for a Xet file listed without its sha256. */
  check: { algorithm: 'sha256'; hex: string } | { algorithm: 'git-sha1'; hex: string } | undefined;
}

/**
 * Parts the pipeline uses (src/diffusion/model.ts; vae_encoder for img2img, upscaler for U), plus SDXL's second
 * text encoder and tokenizer so that such a folder is complete.
 */
export const USED_PARTS = [
  'text_encoder',
  'text_encoder_2',
  'unet',
  'vae_decoder',
  'vae_encoder',
  'tokenizer',
  'tokenizer_2',
  'scheduler',
  'safety_checker',
  'feature_extractor',
  'upscaler',
] as const;

/** Files at the model's top level: the layout's index, imagine's own defaults, the model card and its licence. */
const TOP_FILES = /^(model_index\.json|imagine\.json|README\.md|LICEN[CS]E(\.md|\.txt)?)$/i;

/** Inside a part: configs, tokenizer files (vocab.json, merges.txt, tokenizer.json), ONNX graphs and external data. */
const PART_FILES = /\.(json|txt|onnx|onnx_data|onnx\.data)$|^weights\.pb$/;

/** Weights of other frameworks that sit beside ONNX exports on the Hub and are never fetched. */
const OTHER_WEIGHTS = /\.(safetensors|bin|ckpt|pt|pth|msgpack|h5)$/;

/** The command that turns a PyTorch diffusers repo into the ONNX layout. */
export function convertCommand(repo: string): string {
  return `optimum-cli export onnx --model ${repo} <dir>`;
}

/**
 * The files to fetch for the model at `subfolder` of `repo` (empty: the repository's root).
 * @throws ModelsError, before anything is downloaded, when there is no diffusers layout there or no ONNX weights.
 */
export function planFiles(repo: string, entries: readonly RepoFile[], subfolder = ''): PlannedFile[] {
  const prefix = subfolder ? `${subfolder.replace(/^\/+|\/+$/g, '')}/` : '';
  const files = entries.filter((entry) => entry.type === 'file' && entry.path.startsWith(prefix));
  const where = prefix ? `\`${repo}\` (subfolder \`${prefix.slice(0, -1)}\`)` : `\`${repo}\``;
  const local = (entry: RepoFile) => entry.path.slice(prefix.length);

  if (!files.some((entry) => local(entry) === 'model_index.json')) {
    const elsewhere = entries.find((entry) => entry.type === 'file' && entry.path.endsWith('/model_index.json'));
    const hint = elsewhere ? `: it has one in \`${elsewhere.path.slice(0, -'/model_index.json'.length)}\`, pull with --subfolder ${elsewhere.path.slice(0, -'/model_index.json'.length)}` : '';
    throw new ModelsError(`${where} is not a diffusers model (no model_index.json)${hint}`);
  }

  const hasOnnx = (part: string) => files.some((entry) => local(entry) === `${part}/model.onnx`);
  if (!hasOnnx('unet')) {
    const pytorch = files.some((entry) => OTHER_WEIGHTS.test(entry.path));
    const what = pytorch ? 'has PyTorch/safetensors weights only' : 'has no ONNX weights';
    throw new ModelsError(
      `${where} ${what} (no unet/model.onnx); nothing was downloaded. Convert it first with \`${convertCommand(repo)}\` and put <dir> in the models folder`,
    );
  }
  if (!hasOnnx('text_encoder')) {
    throw new ModelsError(`${where} has a unet/model.onnx but no text_encoder/model.onnx; nothing was downloaded (imagine needs both)`);
  }

  const planned: PlannedFile[] = [];
  for (const entry of files) {
    const path = local(entry);
    const parts = path.split('/');
    const wanted =
      parts.length === 1
        ? TOP_FILES.test(path)
        : parts.length === 2 && (USED_PARTS as readonly string[]).includes(parts[0]!) && PART_FILES.test(parts[1]!);
    if (!wanted) continue;
    planned.push({
      repoPath: entry.path,
      localPath: path,
      size: entry.lfs?.size ?? entry.size,
      check: entry.lfs
        ? { algorithm: 'sha256', hex: entry.lfs.oid }
        : entry.oid && !entry.xetHash
          ? { algorithm: 'git-sha1', hex: entry.oid }
          : undefined,
    });
  }
  return planned;
}
