/**
 * One file from the Hub into place: downloaded into `<dest>.part`, resumed with an HTTP Range request when a
 * `.part` is already there, its size and hash checked, then renamed to `dest`. A file is never at `dest` unless it
 * is whole and checked.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, statSync } from 'node:fs';
import { once } from 'node:events';
import { mkdir, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { PlannedFile } from './file-plan.js';
import { ModelsError } from './models-error.js';

export interface DownloadOptions {
  /** The file's URL (the Hub's `resolve` URL, or where it redirects). */
  url: string;
  /** Sent only to the Hub's own origin: a redirect to a CDN carries a signed URL, and fetch drops it across origins. */
  headers: Record<string, string>;
  fetch?: typeof fetch;
  /** Called with each chunk's length as it is written (also with the length of a `.part` already there). */
  onBytes?: (bytes: number) => void;
  signal?: AbortSignal;
}

/** The check's hasher, fed from the first byte (git blob ids hash a header first). */
function hasherFor(file: PlannedFile): Hash | undefined {
  if (!file.check) return undefined;
  if (file.check.algorithm === 'sha256') return createHash('sha256');
  return createHash('sha1').update(`blob ${file.size}\0`);
}

async function hashExisting(path: string, hash: Hash | undefined): Promise<void> {
  if (!hash) return;
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

/** A short, one-line description of a failed HTTP answer (the Hub's JSON `error`, else the status). */
async function describeFailure(response: Response): Promise<string> {
  let detail = '';
  try {
    const text = await response.text();
    detail = (JSON.parse(text) as { error?: string }).error ?? '';
  } catch {
    detail = '';
  }
  return `HTTP ${response.status}${detail ? `: ${detail.split('\n')[0]}` : ''}`;
}

/**
 * Downloads `file` to `dest`, resuming `<dest>.part`. Returns the bytes fetched over the network by this call.
 * @throws ModelsError on a size or checksum mismatch (the `.part` is deleted) or an HTTP error; a network error
 *   (connection cut) is thrown as it is, leaving the `.part` to resume from.
 */
export async function downloadToFile(file: PlannedFile, dest: string, options: DownloadOptions): Promise<number> {
  const part = `${dest}.part`;
  await mkdir(dirname(dest), { recursive: true });
  let have = existsSync(part) ? statSync(part).size : 0;
  if (have > file.size) {
    await rm(part);
    have = 0;
  }
  let hash = hasherFor(file);
  if (have > 0) {
    await hashExisting(part, hash);
    options.onBytes?.(have);
  }

  let fetched = 0;
  if (have < file.size) {
    const headers: Record<string, string> = { ...options.headers };
    if (have > 0) headers.Range = `bytes=${have}-`;
    const response = await (options.fetch ?? fetch)(options.url, { headers, redirect: 'follow', signal: options.signal });
    if (response.status === 200 && have > 0) {
      // The server ignored the range: start again from the first byte.
      options.onBytes?.(-have);
      have = 0;
      hash = hasherFor(file);
    } else if (response.status >= 500 || response.status === 429) {
      // The Hub or its CDN is having a bad moment: like a cut connection, worth resuming later.
      await response.body?.cancel();
      throw new Error(`HTTP ${response.status}`);
    } else if (response.status !== 200 && response.status !== 206) {
      throw new ModelsError(`could not download ${file.repoPath}: ${await describeFailure(response)}`);
    }
    if (!response.body) throw new ModelsError(`could not download ${file.repoPath}: the answer had no body`);
    // A write stream, waiting only when its buffer is full: writing chunk by chunk with an await each halves the
    // speed on a fast link.
    const out = createWriteStream(part, { flags: have > 0 ? 'a' : 'w' });
    const failed = new Promise<never>((_, reject) => out.once('error', reject));
    failed.catch(() => {});
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        hash?.update(chunk);
        fetched += chunk.length;
        have += chunk.length;
        options.onBytes?.(chunk.length);
        if (!out.write(chunk)) await Promise.race([once(out, 'drain'), failed]);
        if (have > file.size) break;
      }
    } finally {
      await Promise.race([new Promise<void>((resolve) => out.end(resolve)), failed]);
    }
  }

  if (have !== file.size) {
    if (have < file.size) throw new Error(`the connection ended after ${have} of ${file.size} bytes`);
    await rm(part, { force: true });
    throw new ModelsError(`${file.repoPath}: expected ${file.size} bytes, the Hub sent more; nothing was kept`);
  }
  if (file.check && hash) {
    const got = hash.digest('hex');
    if (got !== file.check.hex) {
      await rm(part, { force: true });
      const name = file.check.algorithm === 'sha256' ? 'sha256' : 'git blob id';
      throw new ModelsError(`${file.repoPath}: checksum mismatch (expected ${name} ${file.check.hex.slice(0, 12)}…, got ${got.slice(0, 12)}…): the download was corrupted`);
    }
  }
  await rename(part, dest);
  return fetched;
}
