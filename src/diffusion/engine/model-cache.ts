/**
 * The models one worker holds, least recently used first, bounded by a memory budget. A model's memory is an
 * estimate its caller gives (worker-pool.ts: its files × 1.2), not a measurement: onnxruntime allocates the
 * weights once per session plus working buffers, and a thread cannot read its own share of the process's RSS.
 * One model is always kept, however large, so a budget below the biggest model still lets every model run.
 */

/** What the cache knows of a model: its name, folder and estimated memory. */
export interface CachedModel {
  name: string;
  dir: string;
  estimatedBytes: number;
}

export interface ModelCacheOptions<M> {
  /** The loaded models' estimates may add up to this; a model that alone is larger is still loaded, alone. */
  budgetBytes: number;
  /** Free an evicted model (its sessions). */
  release: (model: M) => Promise<void>;
  /** The loaded set or its order changed: names, least recently used first, and the model just loaded if one was. */
  onChange?: (loaded: string[], added?: M) => void;
}

export class ModelCache<M> {
  /** By folder; Map order is use order, least recent first. */
  private readonly entries = new Map<string, { entry: CachedModel; model: M }>();

  constructor(private readonly options: ModelCacheOptions<M>) {}

  /** Names of the loaded models, least recently used first. */
  names(): string[] {
    return [...this.entries.values()].map(({ entry }) => entry.name);
  }

  /** Put a model loaded elsewhere (the default one, at start) in the cache, as the most recently used. */
  add(entry: CachedModel, model: M): void {
    this.entries.delete(entry.dir);
    this.entries.set(entry.dir, { entry, model });
  }

  /**
   * The model for `entry`: the loaded one (now the most recently used), or `load()`'s after evicting the least
   * recently used until it fits the budget. A failed load leaves the cache as the evictions left it.
   */
  async get(entry: CachedModel, load: () => Promise<M>): Promise<M> {
    const held = this.entries.get(entry.dir);
    if (held) {
      const wasLast = [...this.entries.keys()].at(-1) === entry.dir;
      this.add(held.entry, held.model);
      if (!wasLast) this.options.onChange?.(this.names());
      return held.model;
    }
    let evicted = false;
    for (const [dir, { model }] of this.entries) {
      if (this.usedBytes() + entry.estimatedBytes <= this.options.budgetBytes) break;
      this.entries.delete(dir);
      evicted = true;
      await this.options.release(model);
    }
    let model: M;
    try {
      model = await load();
    } catch (error) {
      if (evicted) this.options.onChange?.(this.names());
      throw error;
    }
    this.add(entry, model);
    this.options.onChange?.(this.names(), model);
    return model;
  }

  private usedBytes(): number {
    let total = 0;
    for (const { entry } of this.entries.values()) total += entry.estimatedBytes;
    return total;
  }
}
