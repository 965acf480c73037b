import type { Logger } from '../../log.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError, errors } from './api-error.js';
import type { CallLog, RecordedCall } from './call-log.js';
import type { MessageStore } from './message-store.js';
import { parseBody, type ParsedBody } from './multipart.js';
import type { RateLimiter } from './rate-limits.js';
import type { Router } from './router.js';

/**
 * Answers an HTTP request outside `/api/`, `/attachments/` and the gateway (the playground's page); resolves
 * false to leave it to the emulator (404).
 */
export type PageHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => boolean | Promise<boolean>;

/** Counts of what the emulator served. */
export interface EmulatorStats {
  requests: number;
  rateLimited: number;
  serverErrors: number;
}

/** What the HTTP front needs from the emulator. */
export interface HttpDeps {
  router: Router;
  /** The bot token that routes with `auth` require. */
  token: string;
  /** Whole-request body cap before the answer is 413. */
  maxRequestBytes: number;
  rateLimiter: RateLimiter;
  stats: EmulatorStats;
  log: CallLog;
  store: MessageStore;
  /** Files attached to slash command options, served at /attachments/uploads/<id>/<name>. */
  uploads: ReadonlyMap<string, { bytes: Buffer; contentType: string; delayMs: number }>;
  logger: Logger;
  /** `http://127.0.0.1:PORT`. */
  baseUrl(): string;
  /** The page handler set by `servePages`, if any. */
  pages(): PageHandler | undefined;
  /** The channel of the interaction a webhook token belongs to, for per-channel rate limits. */
  channelOfToken(token: string): string | undefined;
}

/**
 * The emulator's HTTP side: request → route → recorded call → response (rate limits, injected faults,
 * Discord-shaped errors), attachment downloads, and the playground's pages.
 */
export class EmulatorHttp {
  readonly #deps: HttpDeps;
  readonly #warned = new Set<string>();

  constructor(deps: HttpDeps) {
    this.#deps = deps;
  }

  /** Answers one HTTP request (the server's request listener). */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.#deps.baseUrl());
    const method = (req.method ?? 'GET').toUpperCase();
    if (method === 'GET' && url.pathname.startsWith('/attachments/')) return this.#serveAttachment(url, res);
    const pages = this.#deps.pages();
    if (pages && !url.pathname.startsWith('/api/')) {
      try {
        if (await pages(req, res, url)) return;
      } catch (error) {
        this.#deps.logger.error('discord emulator: page handler crashed', { method, path: url.pathname, error });
        if (!res.headersSent) res.statusCode = 500;
        res.end();
        return;
      }
    }

    let raw: Buffer;
    try {
      raw = await readBody(req, this.#deps.maxRequestBytes);
    } catch {
      return this.#finish(res, this.#blankCall(method, url), { status: 413, json: errors.tooLarge().body }, {});
    }

    const apiMatch = /^\/api\/v(\d+)(\/.*)?$/.exec(url.pathname);
    const segments = (apiMatch?.[2] ?? '').split('/').filter(Boolean).map(safeDecode);
    const path = `/${segments.join('/')}`;
    const matched = apiMatch?.[1] === '10' ? this.#deps.router.match(method, segments) : undefined;
    const route = matched && 'route' in matched ? matched.route : undefined;
    const params = matched && 'params' in matched ? matched.params : {};
    const call: RecordedCall = {
      ...this.#blankCall(method, url),
      route: route?.template ?? '(unknown)',
      path,
      params,
      headers: req.headers,
    };
    let headers: Record<string, string> = {};
    try {
      let body: ParsedBody = { json: undefined, files: [], multipart: false };
      try {
        body = await parseBody(req.headers['content-type'], raw);
      } finally {
        call.body = body.json;
        call.files = body.files;
        call.multipart = body.multipart;
      }
      if (!apiMatch) throw errors.notFound();
      if (apiMatch[1] !== '10') throw new ApiError(400, 50041, 'Invalid API version');
      if (!matched) {
        this.#warnUnknown(`${method} ${path}`);
        throw errors.notFound();
      }
      if (!route) throw new ApiError(405, 0, '405: Method Not Allowed');
      if (route.auth && req.headers.authorization !== `Bot ${this.#deps.token}`) throw errors.unauthorized();
      const channelId = params.channelId ?? this.#deps.channelOfToken(params.token ?? '');
      const decision = this.#deps.rateLimiter.decide({ method, route: route.template, path, params, channelId });
      headers = decision.headers;
      if (decision.serverError !== undefined) {
        this.#deps.stats.serverErrors++;
        throw errors.serverError(decision.serverError);
      }
      if (decision.limited) {
        this.#deps.stats.rateLimited++;
        const json = { message: 'You are being rate limited.', retry_after: decision.limited.retryAfter, global: decision.limited.global };
        return this.#finish(res, call, { status: 429, json }, headers);
      }
      const result = await route.handler({ method, route: route.template, path, params, query: url.searchParams, headers: req.headers, body });
      return this.#finish(res, call, result, headers);
    } catch (error) {
      if (error instanceof ApiError) return this.#finish(res, call, { status: error.status, json: error.body }, headers);
      // A bug in the emulator: answer like Discord's 500 and say so loudly in the test output.
      this.#deps.logger.error('discord emulator: handler crashed', { method, path, error });
      return this.#finish(res, call, { status: 500, json: { message: '500: Internal Server Error', code: 0 } }, headers);
    }
  }

  /** Says once per path that the emulator has no such route, so a test author sees the gap at once. */
  #warnUnknown(what: string): void {
    if (this.#warned.has(what)) return;
    this.#warned.add(what);
    this.#deps.logger.warn(`discord emulator: no route for ${what}; answered 404 like an unknown Discord route`);
  }

  #blankCall(method: string, url: URL): RecordedCall {
    return {
      seq: 0,
      at: 0,
      method,
      route: '(unknown)',
      path: url.pathname,
      params: {},
      query: Object.fromEntries(url.searchParams),
      headers: {},
      body: undefined,
      files: [],
      multipart: false,
      status: 0,
      response: undefined,
      responseHeaders: {},
    };
  }

  #finish(res: ServerResponse, call: RecordedCall, result: { status: number; json?: unknown }, headers: Record<string, string>): void {
    this.#deps.stats.requests++;
    for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
    res.setHeader('Via', '1.1 google'); // Discord sits behind Google's front end; harmless, realistic.
    if (result.status === 204 || result.json === undefined) {
      // A 204 must carry no Content-Type: discord.js would try to parse the empty body as JSON.
      res.statusCode = result.status === 200 ? 204 : result.status;
      res.end();
    } else {
      const text = JSON.stringify(result.json);
      res.statusCode = result.status;
      res.setHeader('Content-Type', 'application/json');
      res.setHeader('Content-Length', Buffer.byteLength(text));
      res.end(text);
    }
    call.status = res.statusCode;
    call.response = result.json;
    call.responseHeaders = Object.fromEntries(Object.entries(res.getHeaders()).map(([k, v]) => [k.toLowerCase(), String(v)]));
    call.at = Date.now();
    call.seq = this.#deps.log.calls.length + 1;
    this.#deps.log.add(call);
  }

  #serveAttachment(url: URL, res: ServerResponse): void {
    const [, , , attachmentId] = url.pathname.split('/');
    const upload = this.#deps.uploads.get(attachmentId ?? '');
    if (upload) {
      const send = () => {
        res.statusCode = 200;
        res.setHeader('Content-Type', upload.contentType);
        res.setHeader('Content-Length', upload.bytes.length);
        res.end(upload.bytes);
      };
      if (upload.delayMs > 0) setTimeout(send, upload.delayMs).unref();
      else send();
      return;
    }
    for (const stored of this.#deps.store.list(undefined, true)) {
      const file = stored.files.get(attachmentId ?? '');
      if (file) {
        res.statusCode = 200;
        res.setHeader('Content-Type', file.contentType);
        res.setHeader('Content-Length', file.bytes.length);
        res.end(file.bytes);
        return;
      }
    }
    res.statusCode = 404;
    res.end();
  }
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Buffers a request body, refusing more than `limit` bytes. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new Error('too large'));
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
