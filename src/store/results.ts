import fs from 'node:fs';
import path from 'node:path';

/**
 * Finished PNGs on disk, DATA_DIR/results/<jobId>-<i>.png, so an image made before a crash is delivered after
 * the restart without being made again. Each file is written to a temporary name, fsynced, then renamed: a
 * reader sees a whole file or none.
 */
export class ResultFiles {
  constructor(readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(dir, 0o700);
  }

  fileFor(jobId: string, index: number): string {
    if (!/^[0-9A-Za-z_-]+$/.test(jobId)) throw new Error(`Expected a job id made of letters and digits, got \`${jobId}\``);
    return path.join(this.dir, `${jobId}-${index}.png`);
  }

  async save(jobId: string, images: readonly Uint8Array[]): Promise<void> {
    for (const [index, bytes] of images.entries()) {
      const final = this.fileFor(jobId, index);
      const temporary = `${final}.tmp`;
      const handle = await fs.promises.open(temporary, 'w', 0o600);
      try {
        await handle.writeFile(bytes);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fs.promises.rename(temporary, final);
    }
    await syncDirectory(this.dir);
  }

  /** The saved images, or undefined if any is missing. */
  async load(jobId: string, count: number): Promise<Uint8Array[] | undefined> {
    const images: Uint8Array[] = [];
    for (let index = 0; index < count; index++) {
      try {
        images.push(new Uint8Array(await fs.promises.readFile(this.fileFor(jobId, index))));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw error;
      }
    }
    return images;
  }

  async remove(jobId: string): Promise<void> {
    const prefix = `${jobId}-`;
    for (const name of await fs.promises.readdir(this.dir)) {
      if (name.startsWith(prefix)) await fs.promises.rm(path.join(this.dir, name), { force: true });
    }
  }

  /** Delete files of jobs not in `keep` (left by a crash between saving and journaling, or by a failed delivery). */
  async removeAllExcept(keep: ReadonlySet<string>): Promise<number> {
    let removed = 0;
    for (const name of await fs.promises.readdir(this.dir)) {
      const match = /^([0-9A-Za-z_]+)-\d+\.png(\.tmp)?$/.exec(name);
      if (match === null || keep.has(match[1])) continue;
      await fs.promises.rm(path.join(this.dir, name), { force: true });
      removed++;
    }
    return removed;
  }
}

/** Make a rename durable: fsync the folder's entry table (a no-op where the platform refuses it, e.g. Windows). */
async function syncDirectory(dir: string): Promise<void> {
  let handle: fs.promises.FileHandle | undefined;
  try {
    handle = await fs.promises.open(dir, 'r');
    await handle.sync();
  } catch {
    // Directory fsync is advisory on some platforms; the rename itself is still atomic.
  } finally {
    await handle?.close();
  }
}
