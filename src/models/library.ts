/**
 * The model library: every model folder in MODELS_DIR is a model, named after its folder. This reads what a
 * folder is (its kind, size, defaults, where it came from) without loading it, and removes one.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { SCHEDULER_NAMES, type EngineModel, type ModelDefaultsInfo, type SchedulerName } from '../diffusion/types.js';
import { ModelsError } from './models-error.js';

/** Folder names a model may have (a leading dot marks an unfinished pull). */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Where a pulled model came from, written by `pull` beside its files. */
export const SOURCE_FILE = 'source.json';

export interface ModelSource {
  repo: string;
  /** The revision asked for (branch, tag or commit). */
  revision: string;
  /** The commit it resolved to. */
  commit: string;
  subfolder?: string;
  /** ISO 8601. */
  pulledAt: string;
}

/**
 * The model's own defaults, from its `imagine.json` (keys as diffusers' pipeline arguments: `num_inference_steps`,
 * `guidance_scale`, `width`, `height`; and imagine's own `steps_max`, `scheduler`).
 */
export type ModelDefaults = Omit<ModelDefaultsInfo, 'source'>;

export interface ModelEntry {
  name: string;
  dir: string;
  /** `SD 1.x`, `SD 2.x`, `SDXL`, `LCM`, `pixel`, or `SD`, with ` Turbo` when the name says so. */
  kind: string;
  /** Bytes of all its files. */
  bytes: number;
  defaults: ModelDefaults;
  source: ModelSource | undefined;
  /** safety_checker/model.onnx is there (every picture is checked). */
  safetyChecker: boolean;
  /** Why the pipeline cannot run it yet, when it cannot. */
  unsupported?: string;
}

function readJsonOr(path: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

function folderBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) total += statSync(join(entry.parentPath, entry.name)).size;
  }
  return total;
}

/**
 * The model's family, from model_index.json's pipeline class, the scheduler, the UNet config (cross-attention width:
 * 768 for SD 1.x, 1024 for SD 2.x, 2048 or a `text_time` embedding for SDXL) and the folder's name (Turbo).
 */
export function inferKind(dir: string, name: string): string {
  const index = readJsonOr(join(dir, 'model_index.json')) ?? {};
  const unet = readJsonOr(join(dir, 'unet', 'config.json')) ?? {};
  const scheduler = readJsonOr(join(dir, 'scheduler', 'scheduler_config.json')) ?? {};
  const pipeline = String(index._class_name ?? '');
  const turbo = /turbo/i.test(name) ? ' Turbo' : '';
  if (!existsSync(join(dir, 'vae_decoder', 'model.onnx')) && !index.vae_decoder) return 'pixel';
  if (/XL/.test(pipeline) || unet.addition_embed_type === 'text_time' || unet.cross_attention_dim === 2048 || existsSync(join(dir, 'text_encoder_2'))) {
    return `SDXL${turbo}`;
  }
  if (/LatentConsistency/i.test(pipeline) || scheduler._class_name === 'LCMScheduler' || /(^|[^a-z])lcm([^a-z]|$)/i.test(name)) return 'LCM';
  if (unet.cross_attention_dim === 1024) return `SD 2.x${turbo}`;
  if (unet.cross_attention_dim === 768) return `SD 1.x${turbo}`;
  return `SD${turbo}`;
}

function readDefaults(dir: string): ModelDefaults {
  const config = readJsonOr(join(dir, 'imagine.json')) ?? {};
  const num = (value: unknown) => (typeof value === 'number' && Number.isFinite(value) ? value : undefined);
  const defaults: ModelDefaults = {};
  const steps = num(config.num_inference_steps) ?? num(config.steps);
  if (steps !== undefined) defaults.steps = steps;
  const stepsMax = num(config.steps_max);
  if (stepsMax !== undefined) defaults.stepsMax = stepsMax;
  const guidance = num(config.guidance_scale);
  if (guidance !== undefined) defaults.guidance = guidance;
  if ((SCHEDULER_NAMES as readonly unknown[]).includes(config.scheduler)) defaults.scheduler = config.scheduler as SchedulerName;
  const width = num(config.width);
  const height = num(config.height);
  if (width !== undefined) defaults.width = width;
  if (height !== undefined) defaults.height = height;
  return defaults;
}

function readSource(dir: string): ModelSource | undefined {
  const source = readJsonOr(join(dir, SOURCE_FILE));
  if (!source || typeof source.repo !== 'string') return undefined;
  return source as unknown as ModelSource;
}

/** Whether `dir` is a model folder: a model_index.json and a text encoder and UNet in ONNX. */
export function isModelFolder(dir: string): boolean {
  return (
    existsSync(join(dir, 'model_index.json')) &&
    existsSync(join(dir, 'unet', 'model.onnx')) &&
    existsSync(join(dir, 'text_encoder', 'model.onnx'))
  );
}

/** What the library knows of one model folder, without loading it. */
export function describeModel(dir: string, name: string): ModelEntry {
  const entry: ModelEntry = {
    name,
    dir,
    kind: inferKind(dir, name),
    bytes: folderBytes(dir),
    defaults: readDefaults(dir),
    source: readSource(dir),
    safetyChecker: existsSync(join(dir, 'safety_checker', 'model.onnx')),
  };
  if (readJsonOr(join(dir, 'model_index.json'))?.requires_aesthetics_score === true) {
    entry.unsupported = 'imagine cannot run an SDXL refiner (its UNet is conditioned on an aesthetic score); use an SDXL base model';
  }
  return entry;
}

/** Every model in the library, by name; unfinished pulls (`.<name>.partial`) and other folders are skipped. */
export function listModels(modelsDir: string): ModelEntry[] {
  const root = resolve(modelsDir);
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && MODEL_NAME.test(entry.name) && isModelFolder(join(root, entry.name)))
    .map((entry) => describeModel(join(root, entry.name), entry.name))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * What applies when a member gives no steps, guidance, scheduler or size: the model's `imagine.json`, and for the
 * kinds whose authors say otherwise than SD's defaults what they say, where imagine.json says nothing:
 * - Turbo: 4 steps, guidance off. SD-Turbo's model card (stabilityai/sd-turbo) says 1 to 4 steps with
 *   `guidance_scale=0.0` (it was trained without classifier-free guidance).
 * - LCM: 4 steps, guidance off. The LCM paper (Luo et al. 2023, arXiv:2310.04378) and its model card
 *   (SimianLuo/LCM_Dreamshaper_v7) use 4 steps; its guidance is embedded in the UNet (`w`), not classifier-free.
 * - SDXL: 1024×1024, the size its model card (stabilityai/stable-diffusion-xl-base-1.0) says it was trained for
 *   (diffusers' StableDiffusionXLPipeline falls back to 128 latent cells, 1024 px, too).
 * - SDXL Turbo: 512×512, 4 steps, guidance off: its model card (stabilityai/sdxl-turbo) generates 512×512 with
 *   1 to 4 steps and `guidance_scale=0.0`.
 */
export function modelDefaults(kind: string, own: ModelDefaults): ModelDefaultsInfo {
  const ownKeys = Object.keys(own).length > 0 ? 'imagine.json' : undefined;
  const { inferred, note } = inferredDefaults(kind);
  const missing = (Object.keys(inferred) as (keyof ModelDefaults)[]).some((key) => own[key] === undefined);
  if (note === undefined || !missing) {
    return ownKeys ? { ...own, source: ownKeys } : { ...own };
  }
  return { ...inferred, ...own, source: ownKeys ? `${ownKeys}, then the ${note}` : `the ${note}` };
}

function inferredDefaults(kind: string): { inferred: ModelDefaults; note?: string } {
  if (/^SDXL Turbo/.test(kind)) {
    return { inferred: { steps: 4, guidance: 0, width: 512, height: 512 }, note: 'SDXL-Turbo model card: 512×512, 1-4 steps, guidance 0' };
  }
  if (/^SDXL/.test(kind)) return { inferred: { width: 1024, height: 1024 }, note: 'SDXL model card: 1024×1024' };
  if (/Turbo/.test(kind)) return { inferred: { steps: 4, guidance: 0 }, note: 'SD-Turbo model card: 1-4 steps, guidance 0' };
  if (kind === 'LCM') return { inferred: { steps: 4, guidance: 0 }, note: 'LCM paper and model card: 4 steps' };
  return { inferred: {} };
}

/**
 * The library's models the engine can run (SDXL refiners left out), for `createEngine`.
 * Unreadable or missing MODELS_DIR: none.
 */
export function engineModels(modelsDir: string): EngineModel[] {
  return listModels(modelsDir)
    .filter((model) => model.unsupported === undefined)
    .map((model) => ({ name: model.name, dir: model.dir, bytes: model.bytes, kind: model.kind, defaults: modelDefaults(model.kind, model.defaults), safetyChecker: model.safetyChecker }));
}

/** Unfinished pulls in the library, by model name. */
export function listPartial(modelsDir: string): string[] {
  const root = resolve(modelsDir);
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true })
    .map((entry) => /^\.(.+)\.partial$/.exec(entry.name)?.[1])
    .filter((name): name is string => name !== undefined)
    .sort();
}

/** @throws ModelsError (usage) for a name that cannot be a model, (failure) for one that is not in the library. */
export function findModel(modelsDir: string, name: string): ModelEntry {
  if (!MODEL_NAME.test(name)) throw new ModelsError(`Expected a model name (a folder of ${modelsDir}), got \`${name.slice(0, 80)}\``, 2);
  const dir = join(resolve(modelsDir), name);
  if (!isModelFolder(dir)) {
    const known = listModels(modelsDir).map((model) => model.name);
    throw new ModelsError(`no model \`${name}\` in ${modelsDir} (${known.length ? `there are: ${known.join(', ')}` : 'it has none'})`);
  }
  return describeModel(dir, name);
}

export interface RemoveOptions {
  /** Folders that must not be removed, with the reason (the bot's MODEL_DIR, the embedded model). */
  protect?: ReadonlyMap<string, string>;
}

/**
 * Removes a model folder (and an unfinished pull of the same name). Returns what was removed.
 * @throws ModelsError for an unknown or protected model.
 */
export async function removeModel(modelsDir: string, name: string, options: RemoveOptions = {}): Promise<string[]> {
  if (!MODEL_NAME.test(name)) throw new ModelsError(`Expected a model name (a folder of ${modelsDir}), got \`${name.slice(0, 80)}\``, 2);
  const root = resolve(modelsDir);
  const dir = join(root, name);
  const partial = join(root, `.${name}.partial`);
  const removed: string[] = [];
  if (existsSync(partial)) {
    await rm(partial, { recursive: true, force: true });
    removed.push(relative(process.cwd(), partial) || partial);
  }
  if (!isModelFolder(dir)) {
    if (removed.length > 0) return removed;
    findModel(modelsDir, name); // throws with the list of models
  }
  for (const [protectedDir, reason] of options.protect ?? []) {
    const target = resolve(protectedDir);
    if (target === dir || target.startsWith(dir + sep)) throw new ModelsError(`not removing \`${name}\`: ${reason}`);
  }
  await rm(dir, { recursive: true, force: true });
  removed.push(relative(process.cwd(), dir) || dir);
  return removed;
}
