/**
 * A cache of onnxruntime's optimised graphs, so that a second start skips graph optimisation. The first load of a
 * part writes the graph onnxruntime made (`optimizedModelFilePath`); later loads open that file with optimisation
 * off. The file's name carries a hash of everything the optimised graph depends on: the model file's bytes (size
 * and mtime of an external `model.onnx_data`), the onnxruntime version, the session options, the provider and the
 * CPU (level 'all' writes layouts for this CPU's vector width), so a changed model gets a new entry, never a stale one.
 * Kept because it paid: the embedded model's loadModel 116–153 → 67–91 ms on the 2-core bench box, 145 → 103 ms as
 * the first load of a fresh process (tools/bench/README.md, issue 17). Old entries are pruned by one rule: when a part
 * is opened, the other entries of the same model and part (another hash: an older model file, other options or
 * provider, a leftover temporary file) that were written more than {@link PRUNE_AFTER_DAYS} days ago are removed.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { basename, dirname, join } from 'node:path';
import { threadId } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';

/** Where a part's optimised graph is (or will be) cached, and under which options to open it. */
export interface CachedGraph {
  /** `<cacheDir>/<model>-<part>-<hash>.onnx`. */
  file: string;
  /** True when the file is there: open it instead of the model file. */
  hit: boolean;
}

/**
 * Days after which another entry of the same model and part goes, when that part is opened. Counted from when the
 * entry was written (a hit does not touch it): a second configuration still in use for the part past this age has
 * its graph made again on its next load, once, which costs what the cache saves once.
 */
export const PRUNE_AFTER_DAYS = 30;

/**
 * Removes `current`'s siblings (same `<model>-<part>-` prefix, not `current` or its `.data`) written more than
 * `maxAgeDays` ago; returns the names removed. A file that cannot be removed is left for next time.
 */
export function pruneCache(current: string, maxAgeDays = PRUNE_AFTER_DAYS, now = Date.now()): string[] {
  const dir = dirname(current);
  const name = basename(current);
  // `<model>-<part>-<16 hex>.onnx`: the prefix is everything up to the hash.
  const prefix = name.slice(0, name.length - '0123456789abcdef.onnx'.length);
  const keep = new Set([name, `${name}.data`]);
  const removed: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return removed;
  }
  for (const entry of entries) {
    if (!entry.startsWith(prefix) || keep.has(entry)) continue;
    const rest = entry.slice(prefix.length);
    // Only this part's own entries: the hash right after the prefix (another part's name would go on with letters).
    if (!/^[0-9a-f]{16}\.onnx/.test(rest)) continue;
    try {
      if (now - statSync(join(dir, entry)).mtimeMs > maxAgeDays * 86_400_000) {
        rmSync(join(dir, entry), { force: true });
        removed.push(entry);
      }
    } catch {
      // Gone already (another worker pruned it), or not ours to remove: next time.
    }
  }
  return removed;
}

/** The CPU model (read once: os.cpus() reads /proc/cpuinfo on every call). */
let cpuModel: string | undefined;

async function hashFile(file: string, hash: ReturnType<typeof createHash>): Promise<void> {
  // One read for a model of ordinary size; 4 MiB pieces for a large one.
  if (statSync(file).size <= 64 * 2 ** 20) {
    hash.update(await readFile(file));
    return;
  }
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 22 })) hash.update(chunk as Buffer);
}

/** The cache entry for `modelFile` opened with `options` (without executionProviders) on `provider`. */
export async function cachedGraphFor(
  cacheDir: string,
  modelFile: string,
  provider: string,
  options: ort.InferenceSession.SessionOptions,
): Promise<CachedGraph> {
  const hash = createHash('sha256');
  await hashFile(modelFile, hash);
  const external = `${modelFile}_data`;
  if (existsSync(external)) {
    // Hashing gigabytes of weights would cost more than the optimisation it saves: size and mtime stand for them.
    const stat = statSync(external, { bigint: true });
    hash.update(`external ${stat.size} ${stat.mtimeNs}`);
  }
  const { executionProviders: _providers, optimizedModelFilePath: _path, ...rest } = options;
  hash.update(JSON.stringify({ ort: ort.env.versions.node ?? ort.env.versions.common, provider, options: rest, cpu: (cpuModel ??= os.cpus()[0]?.model ?? ''), arch: process.arch }));
  const part = basename(dirname(modelFile));
  const model = basename(dirname(dirname(modelFile))).replace(/[^\w.-]/g, '_');
  const file = join(cacheDir, `${model}-${part}-${hash.digest('hex').slice(0, 16)}.onnx`);
  return { file, hit: existsSync(file) };
}

/**
 * Open `modelFile` through the cache: from the cached graph when there is one (optimisation off: it is done), else
 * from the model file with onnxruntime writing its optimised graph to a temporary name that is then renamed into
 * place (two workers loading at once never read a half-written file). A cache that cannot be written or read is
 * reported through `log` and the model is opened as without a cache.
 */
export async function createCachedSession(
  cacheDir: string,
  modelFile: string,
  provider: string,
  options: ort.InferenceSession.SessionOptions,
  log: (line: string) => void,
): Promise<ort.InferenceSession> {
  const entry = await cachedGraphFor(cacheDir, modelFile, provider, options);
  const pruned = pruneCache(entry.file);
  if (pruned.length > 0) log(`${cacheDir}: removed ${pruned.length} optimised graph(s) of ${basename(entry.file).slice(0, -22)} written over ${PRUNE_AFTER_DAYS} days ago: ${pruned.join(', ')}`);
  if (entry.hit) {
    try {
      return await ort.InferenceSession.create(entry.file, { ...options, graphOptimizationLevel: 'disabled' });
    } catch (error) {
      log(`${entry.file}: the cached optimised graph did not load (${(error as Error).message}); removed, optimising ${modelFile} again`);
      rmSync(entry.file, { force: true });
    }
  }
  let temporary: string | undefined;
  try {
    mkdirSync(cacheDir, { recursive: true });
    temporary = `${entry.file}.${process.pid}-${threadId}.tmp`;
  } catch (error) {
    log(`${cacheDir}: cannot write the optimised-graph cache (${(error as Error).message}); loading without it`);
  }
  if (!temporary) return ort.InferenceSession.create(modelFile, options);
  const writeOptions: ort.InferenceSession.SessionOptions = { ...options, optimizedModelFilePath: temporary };
  if (existsSync(`${modelFile}_data`)) {
    // A graph over protobuf's 2 GiB limit must keep its weights outside; the data file is named after the entry
    // (the .onnx names it, so it is written under its final name).
    const extra = (options.extra ?? {}) as { session?: Record<string, unknown> };
    writeOptions.extra = {
      ...extra,
      session: {
        ...extra.session,
        optimized_model_external_initializers_file_name: `${basename(entry.file)}.data`,
        optimized_model_external_initializers_min_size_in_bytes: '1024',
      },
    };
  }
  const session = await ort.InferenceSession.create(modelFile, writeOptions);
  try {
    renameSync(temporary, entry.file);
  } catch (error) {
    rmSync(temporary, { force: true });
    log(`${entry.file}: cannot keep the optimised graph (${(error as Error).message})`);
  }
  return session;
}
