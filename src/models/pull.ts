/**
 * `pull`: a diffusers-layout ONNX model from the Hugging Face Hub into the model library.
 *
 * 1. Ask the Hub about the repo (does it exist, is it gated, which commit `revision` is) and list its files at that
 *    commit, so every file comes from one commit.
 * 2. Choose the files the pipeline uses (file-plan.ts); a repo without ONNX weights is refused here, before any
 *    download.
 * 3. Download each into `<MODELS_DIR>/.<name>.partial/`, resuming what an earlier, cut run left there, checking
 *    each file's size and hash.
 * 4. Write `source.json` (repo, revision, commit, when) and rename the folder to `<MODELS_DIR>/<name>`: a folder
 *    without the leading dot is always a whole model.
 *
 * A cut connection leaves the `.partial` folder for the next run to resume; anything else that fails (a checksum
 * mismatch, a refusal from the Hub) removes it.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, rename, rm, statfs, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileDownloadInfo, HubApiError, listFiles, modelInfo } from '@huggingface/hub';
import { downloadToFile } from './download.js';
import { formatBytes } from './progress.js';
import { planFiles, type PlannedFile, type RepoFile } from './file-plan.js';
import { ModelsError } from './models-error.js';
import type { PullProgress } from './progress.js';
import { MODEL_NAME, SOURCE_FILE, type ModelSource } from './library.js';

export interface PullOptions {
  /** `namespace/name` on the Hub. */
  repo: string;
  /** Branch, tag or commit. Default `main`. */
  revision?: string;
  /** Folder of the repo that holds model_index.json. Default: the root. */
  subfolder?: string;
  /** The model's folder name in the library. Default: the repo's name. */
  name?: string;
  /** The model library (MODELS_DIR). */
  modelsDir: string;
  /** The Hub (HF_ENDPOINT). Default `https://huggingface.co`. */
  hubUrl?: string;
  /** HF_TOKEN, for gated and private repos. */
  accessToken?: string;
  onProgress?: (progress: PullProgress) => void;
  /** For tests: the clock used for the speed. */
  now?: () => number;
  /** For tests: bytes free for `dir` (default: the file system's, from statfs). */
  freeBytes?: (dir: string) => Promise<number>;
}

export interface PullResult {
  name: string;
  dir: string;
  commit: string;
  files: number;
  /** Bytes of the model's files. */
  bytes: number;
  /** Bytes fetched over the network by this run (less than `bytes` when it resumed). */
  bytesFetched: number;
  seconds: number;
}

const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

/** Written in the `.partial` folder so that a later run resumes only the same repo, commit and subfolder. */
const PARTIAL_MARKER = '.pull.json';

/** One line for a network failure: the cause's code (ECONNREFUSED, ENOTFOUND…) when there is one. */
function networkReason(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message;
}

/**
 * Failures worth resuming from: the connection (cut, reset, refused), and the Hub or its CDN busy or failing for a
 * moment (429, 5xx). Everything else (a refusal, a checksum mismatch) starts again from nothing.
 */
function isResumable(error: unknown): boolean {
  if (error instanceof HubApiError) return error.statusCode === 429 || error.statusCode >= 500;
  return !(error instanceof ModelsError);
}

function failureReason(error: unknown): string {
  return error instanceof HubApiError ? `HTTP ${error.statusCode}` : networkReason(error);
}

async function statfsFree(dir: string): Promise<number> {
  const stats = await statfs(dir);
  return Number(stats.bavail) * Number(stats.bsize);
}

/** Bytes of the planned files already checked and in place, or in `.part` files, in an earlier run's folder. */
function bytesAlreadyThere(partialDir: string, files: readonly PlannedFile[]): number {
  let total = 0;
  for (const file of files) {
    const dest = join(partialDir, file.localPath);
    if (existsSync(dest)) total += file.size;
    else if (existsSync(`${dest}.part`)) total += Math.min(statSync(`${dest}.part`).size, file.size);
  }
  return total;
}

/** The Hub's refusals, as one line each. */
function hubError(error: unknown, repo: string, hubUrl: string, hasToken: boolean, revision: string | undefined): ModelsError {
  if (error instanceof HubApiError) {
    const detail = String((error.data as { error?: string } | undefined)?.error ?? '');
    if (error.statusCode === 404 && /rev/i.test(detail) && revision !== undefined) {
      return new ModelsError(`no revision \`${revision}\` in \`${repo}\` on the Hub`);
    }
    if (error.statusCode === 404 || (error.statusCode === 401 && !hasToken && !/restricted|gated/i.test(detail))) {
      return new ModelsError(`no model repo \`${repo}\` on the Hub (or it is private: set HF_TOKEN)`);
    }
    if (error.statusCode === 401 && hasToken && /credentials|token/i.test(detail)) {
      return new ModelsError('the Hub refused HF_TOKEN (invalid, expired or revoked): make a new one at https://huggingface.co/settings/tokens');
    }
    if (error.statusCode === 401 || error.statusCode === 403) {
      return gatedError(repo, hubUrl, hasToken);
    }
    return new ModelsError(`the Hub answered HTTP ${error.statusCode} for \`${repo}\`${detail ? `: ${detail.split('\n')[0]}` : ''}`);
  }
  if (error instanceof ModelsError) return error;
  return new ModelsError(`could not reach the Hub at ${hubUrl}: ${networkReason(error)}`);
}

function gatedError(repo: string, hubUrl: string, hasToken: boolean): ModelsError {
  return hasToken
    ? new ModelsError(`HF_TOKEN has no access to the gated repo \`${repo}\`: accept its licence at ${hubUrl}/${repo} with that account, then run this again`)
    : new ModelsError(`\`${repo}\` is gated: accept its licence at ${hubUrl}/${repo}, then set HF_TOKEN to a token of that account (https://huggingface.co/settings/tokens)`);
}

/** Checks `pull`'s arguments before anything is asked of the Hub. */
export function checkPullArgs(options: Pick<PullOptions, 'repo' | 'name' | 'subfolder'>): string {
  if (!REPO_ID.test(options.repo)) {
    throw new ModelsError(`Expected a Hub repo as \`namespace/name\` (e.g. stabilityai/sd-turbo), got \`${options.repo.slice(0, 80)}\``, 2);
  }
  if (options.subfolder !== undefined && (options.subfolder.split('/').includes('..') || options.subfolder.trim() === '')) {
    throw new ModelsError(`Expected \`--subfolder\` to be a folder of the repo, got \`${options.subfolder.slice(0, 80)}\``, 2);
  }
  const name = options.name ?? options.repo.split('/')[1]!;
  if (!MODEL_NAME.test(name)) {
    throw new ModelsError(`Expected \`--name\` to be letters, digits, '.', '_' or '-' (not starting with '.'), got \`${name.slice(0, 80)}\``, 2);
  }
  return name;
}

/** Pulls a model; see the file's comment for the steps. @throws ModelsError with one line. */
export async function pullModel(options: PullOptions): Promise<PullResult> {
  const name = checkPullArgs(options);
  const hubUrl = (options.hubUrl ?? 'https://huggingface.co').replace(/\/+$/, '');
  const token = options.accessToken;
  const credentials = token ? { accessToken: token } : {};
  const modelsDir = resolve(options.modelsDir);
  const finalDir = join(modelsDir, name);
  const partialDir = join(modelsDir, `.${name}.partial`);
  if (existsSync(finalDir)) {
    throw new ModelsError(`a model named \`${name}\` is already in ${options.modelsDir} (remove it with \`npm run models -- remove ${name}\`, or pick another --name)`);
  }
  const now = options.now ?? (() => performance.now());
  const started = now();

  // 1. The repo, its commit and its files.
  let commit: string;
  let entries: RepoFile[] = [];
  try {
    const info = await modelInfo({ name: options.repo, revision: options.revision, hubUrl, additionalFields: ['sha'], ...credentials });
    commit = info.sha ?? options.revision ?? 'main';
    if (info.gated && !token) throw gatedError(options.repo, hubUrl, false);
    for await (const entry of listFiles({ repo: options.repo, revision: commit, recursive: true, hubUrl, ...credentials })) {
      entries.push(entry as RepoFile);
    }
  } catch (error) {
    throw hubError(error, options.repo, hubUrl, token !== undefined, options.revision);
  }

  // 2. What to fetch (refuses a repo without ONNX weights before any download).
  const files = planFiles(options.repo, entries, options.subfolder);
  entries = [];

  // 3. Into the .partial folder, resuming only a pull of the same commit, one pull per name at a time.
  await mkdir(modelsDir, { recursive: true });
  const releaseLock = await lockName(modelsDir, name);
  try {
    return await download(options, { name, finalDir, partialDir, commit, files, hubUrl, token, credentials, now, started });
  } finally {
    await releaseLock();
  }
}

/** Only one pull of a name at a time: `<MODELS_DIR>/.<name>.lock` holds the pulling process's id. */
async function lockName(modelsDir: string, name: string): Promise<() => Promise<void>> {
  const path = join(modelsDir, `.${name}.lock`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(path, String(process.pid), { flag: 'wx' });
      return () => rm(path, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const pid = Number(readFileSync(path, 'utf8'));
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
        throw new ModelsError(`another pull of \`${name}\` is running (process ${pid}); wait for it, or stop it and run this again`);
      }
      await rm(path, { force: true }); // left by a process that is gone
    }
  }
  throw new ModelsError(`could not take the lock ${path}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface DownloadPlan {
  name: string;
  finalDir: string;
  partialDir: string;
  commit: string;
  files: PlannedFile[];
  hubUrl: string;
  token: string | undefined;
  credentials: { accessToken?: string };
  now: () => number;
  started: number;
}

async function download(options: PullOptions, plan: DownloadPlan): Promise<PullResult> {
  const { name, finalDir, partialDir, commit, files, hubUrl, token, credentials, now, started } = plan;
  const bytesTotal = files.reduce((sum, file) => sum + file.size, 0);
  const marker = { repo: options.repo, commit, subfolder: options.subfolder ?? '' };
  const markerPath = join(partialDir, PARTIAL_MARKER);
  if (existsSync(partialDir)) {
    let same = false;
    try {
      same = JSON.stringify(JSON.parse(readFileSync(markerPath, 'utf8'))) === JSON.stringify(marker);
    } catch {
      same = false;
    }
    if (!same) await rm(partialDir, { recursive: true, force: true });
  }
  const needed = bytesTotal - bytesAlreadyThere(partialDir, files);
  const free = await (options.freeBytes ?? statfsFree)(dirname(partialDir));
  if (needed > free) {
    throw new ModelsError(`\`${options.repo}\` needs ${formatBytes(needed)} more and ${options.modelsDir} has ${formatBytes(free)} free; make room and run this again`);
  }
  await mkdir(partialDir, { recursive: true });
  await writeFile(markerPath, JSON.stringify(marker));

  let bytesDone = 0;
  let bytesFetched = 0;
  let current: PlannedFile = files[0]!;
  let index = 0;
  const report = () =>
    options.onProgress?.({
      file: current.repoPath,
      fileIndex: index + 1,
      fileCount: files.length,
      bytesDone,
      bytesTotal,
      bytesFetched,
      seconds: (now() - started) / 1000,
    });
  try {
    for (index = 0; index < files.length; index++) {
      current = files[index]!;
      const dest = join(partialDir, current.localPath);
      if (existsSync(dest)) {
        // Only a checked file is ever renamed to its own name (download.ts): it was whole in an earlier run.
        bytesDone += current.size;
        continue;
      }
      const info = await fileDownloadInfo({ repo: options.repo, path: current.repoPath, revision: commit, hubUrl, ...credentials });
      if (!info) throw new ModelsError(`\`${options.repo}\` lists ${current.repoPath} but the Hub has no such file at ${commit.slice(0, 12)}`);
      const sameOrigin = new URL(info.url).origin === new URL(hubUrl).origin;
      await downloadToFile(current, dest, {
        url: info.url,
        headers: token && sameOrigin ? { Authorization: `Bearer ${token}` } : {},
        onBytes: (n) => {
          bytesDone += n;
          report();
        },
      }).then((fetched) => {
        bytesFetched += fetched;
      });
      report();
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOSPC') {
      throw new ModelsError(
        `the disk filled up while writing ${current.repoPath}: make room and run the same command again to resume (${Math.round(bytesDone / 1e6)} MB kept in ${partialDir})`,
      );
    }
    if (isResumable(error)) {
      const kept = bytesDone;
      throw new ModelsError(
        `the download of ${current.repoPath} was cut (${failureReason(error)}); run the same command again to resume (${Math.round(kept / 1e6)} MB kept in ${partialDir})`,
      );
    }
    await rm(partialDir, { recursive: true, force: true });
    if (error instanceof HubApiError) throw hubError(error, options.repo, hubUrl, token !== undefined, options.revision);
    throw new ModelsError(`${(error as Error).message}; nothing was kept, run the command again to download it afresh`);
  }

  // 4. Where it came from, then the folder becomes a model in one rename.
  const source: ModelSource = {
    repo: options.repo,
    revision: options.revision ?? 'main',
    commit,
    ...(options.subfolder ? { subfolder: options.subfolder } : {}),
    pulledAt: new Date().toISOString(),
  };
  await writeFile(join(partialDir, SOURCE_FILE), `${JSON.stringify(source, null, 2)}\n`);
  await rm(markerPath);
  if (existsSync(finalDir)) throw new ModelsError(`a model named \`${name}\` appeared in ${options.modelsDir} during the pull; the download is kept in ${partialDir}`);
  await rename(partialDir, finalDir);
  return { name, dir: finalDir, commit, files: files.length, bytes: bytesTotal, bytesFetched, seconds: (now() - started) / 1000 };
}
