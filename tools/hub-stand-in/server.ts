/**
 * A stand-in for the Hugging Face Hub on 127.0.0.1, for tests: it answers exactly the endpoints that
 * `npm run models -- pull` reaches through `@huggingface/hub` and its own ranged downloads, with the Hub's
 * status codes, `X-Error-Code` headers and JSON error bodies:
 *
 *   GET /api/models/{ns}/{name}/revision/{rev}        modelInfo (sha, gated, private)
 *   GET /api/models/{ns}/{name}/tree/{rev}[/{path}]   listFiles (?recursive, paginated with a Link header)
 *   GET /{ns}/{name}/resolve/{rev}/{path}             downloads, with Range; LFS files redirect to /cdn/…
 *
 * Switches for what the real Hub does on a bad day: a gated repo (401 without a token, 403 with one that was not
 * granted access), a missing repo, a connection cut after N bytes, a file served corrupted. It never reaches the
 * network. Headers follow what huggingface.co sends (`X-Repo-Commit`, `ETag`, `X-Linked-Size`, `X-Linked-Etag`).
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative, sep } from 'node:path';

export interface StandInRepo {
  /** Repository path (forward slashes) → content. */
  files: Map<string, Buffer>;
  /** Downloads need a token that was granted access (see `HubStandInOptions.grantedTokens`). Default false. */
  gated?: boolean;
}

export interface HubStandInOptions {
  /** `namespace/name` → repository. */
  repos: Record<string, StandInRepo>;
  /** Tokens granted access to gated repos. Default `['hf_standin']`. */
  grantedTokens?: readonly string[];
  /** Tokens the Hub no longer accepts (expired, revoked): 401 on every endpoint, as huggingface.co answers. */
  invalidTokens?: readonly string[];
  /** LFS files answer `resolve` with a 302 to a CDN path, as huggingface.co does. Default true. */
  redirectLfs?: boolean;
  /** Tree listing entries per page (the Hub paginates with a `Link: <…>; rel="next"` header). Default 1000. */
  treePageSize?: number;
}

export interface HubStandIn {
  /** `http://127.0.0.1:PORT`, for `hubUrl` / HF_ENDPOINT. */
  url: string;
  /** Body bytes sent per `repo/path` (all requests together, probes included). */
  bytesServed: Map<string, number>;
  /** One line per request: `METHOD path [auth]`. */
  requests: string[];
  /** The next download of `path` in `repo` that would send more than `bytes` bytes is cut after `bytes`. */
  cutAfter(repo: string, path: string, bytes: number): void;
  /**
   * Every download of `path` in `repo` is served with one byte flipped (its listed size and sha256 unchanged) until
   * the returned function is called.
   */
  corrupt(repo: string, path: string): () => void;
  /** Requests for `path` in `repo` that resume (a Range not starting at 0) get the whole file with 200, as some proxies do. */
  ignoreResumeRanges(repo: string, path: string): void;
  /** The next `resolve` of `path` in `repo` answers `status` (e.g. 503) with the Hub's JSON error body. */
  failNext(repo: string, path: string, status: number): void;
  /** Sum of `bytesServed` for a repo. */
  servedFor(repo: string): number;
  close(): Promise<void>;
}

/** A repository made from a folder on disk (e.g. test/fixtures/models/sd-tiny), its files under `prefix`. */
export function repoFromFolder(dir: string, prefix = ''): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const full = join(entry.parentPath, entry.name);
    files.set(prefix + relative(dir, full).split(sep).join('/'), readFileSync(full));
  }
  return files;
}

/** What huggingface.co stores through LFS (its default .gitattributes): weights and other large binaries. */
function isLfs(path: string): boolean {
  return /\.(onnx|onnx_data|pb|safetensors|bin|ckpt|msgpack|h5)$/.test(path);
}

/** Hashes of served content, computed once per buffer (so a timing measures the client, not the stand-in). */
const hashes = new WeakMap<Buffer, { sha256?: string; git?: string }>();
function sha256(data: Buffer): string {
  const known = hashes.get(data) ?? {};
  known.sha256 ??= createHash('sha256').update(data).digest('hex');
  hashes.set(data, known);
  return known.sha256;
}
/** Git's blob id, which the Hub lists as `oid` for files kept in git itself. */
function gitOid(data: Buffer): string {
  const known = hashes.get(data) ?? {};
  known.git ??= createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
  hashes.set(data, known);
  return known.git;
}

interface RepoState extends StandInRepo {
  commit: string;
}

export async function startHubStandIn(options: HubStandInOptions): Promise<HubStandIn> {
  const granted = new Set(options.grantedTokens ?? ['hf_standin']);
  const invalid = new Set(options.invalidTokens ?? []);
  const redirectLfs = options.redirectLfs ?? true;
  const pageSize = options.treePageSize ?? 1000;
  const repos = new Map<string, RepoState>();
  for (const [id, repo] of Object.entries(options.repos)) {
    const commit = createHash('sha1').update(id).update([...repo.files.keys()].sort().join('\n')).digest('hex');
    repos.set(id, { ...repo, commit });
  }
  const bytesServed = new Map<string, number>();
  const requests: string[] = [];
  const cuts = new Map<string, number>();
  const corrupted = new Set<string>();
  const failures = new Map<string, number>();
  const rangeless = new Set<string>();
  let base = '';
  let cdnBase = '';

  const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', ...headers });
    res.end(JSON.stringify(body));
  };
  const tokenOf = (req: IncomingMessage) => /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
  // As huggingface.co: a repo that does not exist (or is private to someone else) is 401 to anonymous callers and
  // 404 to signed-in ones, both with X-Error-Code: RepoNotFound.
  const repoNotFound = (req: IncomingMessage, res: ServerResponse) =>
    json(res, tokenOf(req) ? 404 : 401, { error: 'Repository not found' }, { 'X-Error-Code': 'RepoNotFound' });
  const revisionOk = (repo: RepoState, rev: string) => rev === 'main' || rev === 'HEAD' || rev === repo.commit;
  const revisionNotFound = (res: ServerResponse, rev: string) =>
    json(res, 404, { error: `Invalid rev id: ${rev}` }, { 'X-Error-Code': 'RevisionNotFound' });

  const send = (req: IncomingMessage, res: ServerResponse, repoId: string, repo: RepoState, path: string, extra: Record<string, string>) => {
    const original = repo.files.get(path)!;
    const key = `${repoId}/${path}`;
    let data = original;
    if (corrupted.has(key)) {
      data = Buffer.from(original);
      data[data.length >> 1]! ^= 0xff;
    }
    const size = data.length;
    const etag = `"${isLfs(path) ? sha256(original) : gitOid(original)}"`;
    const headers: Record<string, string | number> = {
      ...extra,
      'Content-Type': 'application/octet-stream',
      'Accept-Ranges': 'bytes',
      ETag: etag,
    };
    let start = 0;
    let end = size - 1;
    let status = 200;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range && !(rangeless.has(key) && range[1] !== '0')) {
      start = Number(range[1]);
      end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
      if (start >= size || start > end) {
        res.writeHead(416, { ...headers, 'Content-Range': `bytes */${size}` });
        res.end();
        return;
      }
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    }
    const body = data.subarray(start, end + 1);
    headers['Content-Length'] = body.length;
    res.writeHead(status, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const cut = cuts.get(key);
    if (cut !== undefined && body.length > cut) {
      cuts.delete(key);
      bytesServed.set(key, (bytesServed.get(key) ?? 0) + cut);
      // Flush what was promised so far, then drop the connection as a proxy or a flaky link would.
      res.write(body.subarray(0, cut), () => res.socket?.destroy());
      return;
    }
    bytesServed.set(key, (bytesServed.get(key) ?? 0) + body.length);
    res.end(body);
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', base);
    const path = decodeURIComponent(url.pathname);
    requests.push(`${req.method} ${path}${req.headers.authorization ? ' [auth]' : ''}`);
    if (path.startsWith('/cdn/') !== (req.socket.localPort !== Number(new URL(base).port))) return json(res, 404, { error: 'Not found' });
    const token = tokenOf(req);
    if (token !== undefined && invalid.has(token)) return json(res, 401, { error: 'Invalid credentials in Authorization header' });

    let match = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(path);
    if (match) {
      const [, id, rev] = match as unknown as [string, string, string];
      const repo = repos.get(id);
      if (!repo) return repoNotFound(req, res);
      if (!revisionOk(repo, rev)) return revisionNotFound(res, rev);
      return json(res, 200, {
        _id: repo.commit.slice(0, 24),
        id,
        private: false,
        gated: repo.gated ? 'manual' : false,
        sha: repo.commit,
        downloads: 0,
        likes: 0,
        lastModified: '2026-01-01T00:00:00.000Z',
      });
    }

    match = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)(?:\/(.*))?$/.exec(path);
    if (match) {
      const [, id, rev, folder = ''] = match as unknown as [string, string, string, string | undefined];
      const repo = repos.get(id);
      if (!repo) return repoNotFound(req, res);
      if (!revisionOk(repo, rev)) return revisionNotFound(res, rev);
      const recursive = url.searchParams.get('recursive') === 'true';
      const prefix = folder ? `${folder.replace(/\/$/, '')}/` : '';
      const entries: object[] = [];
      const dirs = new Set<string>();
      for (const [file, data] of [...repo.files].sort(([a], [b]) => a.localeCompare(b))) {
        if (!file.startsWith(prefix)) continue;
        const rest = file.slice(prefix.length).split('/');
        for (let depth = 1; depth < rest.length; depth++) {
          if (!recursive && depth > 1) break;
          const dir = prefix + rest.slice(0, depth).join('/');
          if (!dirs.has(dir)) {
            dirs.add(dir);
            entries.push({ type: 'directory', oid: gitOid(Buffer.from(dir)), size: 0, path: dir });
          }
        }
        if (!recursive && rest.length > 1) continue;
        entries.push({
          type: 'file',
          oid: gitOid(data),
          size: data.length,
          path: file,
          ...(isLfs(file) ? { lfs: { oid: sha256(data), size: data.length, pointerSize: 134 } } : {}),
        });
      }
      if (prefix && entries.length === 0) return json(res, 404, { error: `Entry not found` }, { 'X-Error-Code': 'EntryNotFound' });
      const cursor = Number(url.searchParams.get('cursor') ?? 0);
      const page = entries.slice(cursor, cursor + pageSize);
      const headers: Record<string, string> = {};
      if (cursor + pageSize < entries.length) {
        const next = new URL(url);
        next.searchParams.set('cursor', String(cursor + pageSize));
        headers.Link = `<${next.href}>; rel="next"`;
      }
      return json(res, 200, page, headers);
    }

    match = /^\/cdn\/([^/]+\/[^/]+)\/([0-9a-f]{40})\/(.+)$/.exec(path);
    if (match) {
      // The signed CDN URL a redirect points to: no token needed (the Hub's own check happened at `resolve`).
      const [, id, commit, file] = match as unknown as [string, string, string, string];
      const repo = repos.get(id);
      if (!repo || repo.commit !== commit || !repo.files.has(file)) return json(res, 404, { error: 'Not found' });
      return send(req, res, id, repo, file, {});
    }

    match = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (match && (req.method === 'GET' || req.method === 'HEAD')) {
      const [, id, rev, file] = match as unknown as [string, string, string, string];
      const repo = repos.get(id);
      if (!repo) return repoNotFound(req, res);
      if (!revisionOk(repo, rev)) return revisionNotFound(res, rev);
      const failure = failures.get(`${id}/${file}`);
      if (failure !== undefined) {
        failures.delete(`${id}/${file}`);
        return json(res, failure, { error: 'The server is temporarily unavailable' });
      }
      if (repo.gated) {
        const token = tokenOf(req);
        if (!token) {
          return json(
            res,
            401,
            { error: `Access to model ${id} is restricted. You must have access to it and be authenticated to access it. Please log in.` },
            { 'X-Error-Code': 'GatedRepo' },
          );
        }
        if (!granted.has(token)) {
          return json(
            res,
            403,
            { error: `Access to model ${id} is restricted and you are not in the authorized list. Visit ${base}/${id} to ask for access.` },
            { 'X-Error-Code': 'GatedRepo' },
          );
        }
      }
      const data = repo.files.get(file);
      if (!data) return json(res, 404, { error: 'Entry not found' }, { 'X-Error-Code': 'EntryNotFound', 'X-Repo-Commit': repo.commit });
      const common = { 'X-Repo-Commit': repo.commit };
      if (isLfs(file)) {
        const linked = { ...common, 'X-Linked-Size': String(data.length), 'X-Linked-Etag': `"${sha256(data)}"` };
        if (redirectLfs) {
          res.writeHead(302, { ...linked, Location: `${cdnBase}/cdn/${id}/${repo.commit}/${file}`, 'Content-Length': 0 });
          res.end();
          return;
        }
        return send(req, res, id, repo, file, linked);
      }
      return send(req, res, id, repo, file, common);
    }

    json(res, 404, { error: 'Not found' });
  };

  const server = createServer((req, res) => {
    try {
      handle(req, res);
    } catch (error) {
      json(res, 500, { error: (error as Error).message });
    }
  });
  // The CDN is another origin, as cdn-lfs.hf.co is to huggingface.co: fetch must not carry the token there.
  const cdn = createServer((req, res) => {
    try {
      handle(req, res);
    } catch (error) {
      json(res, 500, { error: (error as Error).message });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => cdn.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  cdnBase = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;

  return {
    url: base,
    bytesServed,
    requests,
    cutAfter: (repo, path, bytes) => void cuts.set(`${repo}/${path}`, bytes),
    ignoreResumeRanges: (repo, path) => void rangeless.add(`${repo}/${path}`),
    failNext: (repo, path, status) => void failures.set(`${repo}/${path}`, status),
    corrupt: (repo, path) => {
      corrupted.add(`${repo}/${path}`);
      return () => void corrupted.delete(`${repo}/${path}`);
    },
    servedFor: (repo) => [...bytesServed].filter(([key]) => key.startsWith(`${repo}/`)).reduce((sum, [, n]) => sum + n, 0),
    close: async () => {
      for (const each of [server, cdn]) {
        each.closeAllConnections();
        await new Promise<void>((resolve) => each.close(() => resolve()));
      }
    },
  };
}
