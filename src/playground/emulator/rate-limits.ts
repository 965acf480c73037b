import { createHash } from 'node:crypto';

/** What a rate-limit rule or an injected fault sees of a request. */
export interface RouteRequest {
  method: string;
  /** Route template, e.g. `/channels/:channelId/messages/:messageId`. */
  route: string;
  /** Concrete path below `/api/v10`, e.g. `/channels/1234/messages/5678`. */
  path: string;
  params: Readonly<Record<string, string>>;
  /** The channel the request acts in: from the path, or from the interaction behind a webhook token. */
  channelId?: string;
}

/**
 * Picks requests: a function, a RegExp tested on `"METHOD /path"` and `"METHOD /route/:template"`,
 * or a string glob (`*` matches anything) tested the same way, e.g. `"PATCH /webhooks/*"`.
 */
export type RequestMatcher = string | RegExp | ((request: RouteRequest) => boolean);

/** One rate-limit bucket, with Discord's semantics: `limit` requests per `windowMs`, per key. */
export interface RateLimitRule {
  /** Names the bucket; its hash is sent as `X-RateLimit-Bucket`. */
  bucket: string;
  /** Requests that count against this bucket. */
  match: RequestMatcher;
  limit: number;
  windowMs: number;
  /** Splits the bucket, e.g. per channel or per message. Default: one counter per route and major parameter. */
  key?: (request: RouteRequest) => string;
}

/** Options for {@link RateLimiter.inject}. */
export interface InjectedFault {
  match: RequestMatcher;
  /** How many matching requests get the fault. Default 1. */
  count?: number;
  /** 429 only: seconds sent in `Retry-After` and `retry_after`. Default 1. */
  retryAfter?: number;
  /** 429 only: a global limit (`X-RateLimit-Global`, scope `global`). Default false. */
  global?: boolean;
  /** 429 only: `X-RateLimit-Scope`. Default `user` (or `global`). */
  scope?: 'user' | 'shared' | 'global';
  /** 5xx only: the status. Default 500. */
  status?: number;
}

/**
 * Discord's default buckets for what an image bot does. Webhook-message edits are not published by
 * Discord; 5 per 5 s per message follows what bots observe (reference/discord-protocol.md).
 */
export function defaultRateLimitRules(): RateLimitRule[] {
  return [
    {
      bucket: 'webhook-message-edit',
      match: 'PATCH /webhooks/:applicationId/:token/messages/:messageId',
      limit: 5,
      windowMs: 5_000,
      key: (r) => `${r.params.token}:${r.params.messageId}`,
    },
    { bucket: 'webhook-execute', match: 'POST /webhooks/:applicationId/:token', limit: 5, windowMs: 2_000, key: (r) => r.params.token },
    { bucket: 'channel-message-create', match: 'POST /channels/:channelId/messages', limit: 5, windowMs: 5_000, key: (r) => r.params.channelId },
    {
      bucket: 'channel-message-edit',
      match: 'PATCH /channels/:channelId/messages/:messageId',
      limit: 5,
      windowMs: 5_000,
      key: (r) => r.params.channelId,
    },
    // Reactions: 1 per 250 ms per channel, the long-observed Discord value.
    { bucket: 'reactions', match: /^(PUT|DELETE) \/channels\/:channelId\/messages\/:messageId\/reactions\//, limit: 1, windowMs: 250, key: (r) => r.params.channelId },
  ];
}

/** Default for routes no rule names: generous, but headers are still sent like Discord does. */
const FALLBACK: Omit<RateLimitRule, 'match'> = { bucket: 'default', limit: 50, windowMs: 1_000 };

export interface RateLimitDecision {
  headers: Record<string, string>;
  /** Present when the request must be answered 429 with this body. */
  limited?: { retryAfter: number; global: boolean };
  /** Present when an injected 5xx must be answered. */
  serverError?: number;
}

interface Window {
  count: number;
  resetAt: number;
}

/** Counts requests into buckets on the real clock and serves injected 429s and 5xx. */
export class RateLimiter {
  rules: RateLimitRule[];
  #windows = new Map<string, Window>();
  #faults: { fault: InjectedFault; left: number; kind: '429' | '5xx' }[] = [];

  constructor(rules: RateLimitRule[]) {
    this.rules = rules;
  }

  /** Replaces the buckets and forgets their counters. */
  setRules(rules: RateLimitRule[]): void {
    this.rules = rules;
    this.#windows.clear();
  }

  /** Queues a fault for the next matching requests; injected faults are served before buckets are counted. */
  inject(kind: '429' | '5xx', fault: InjectedFault): void {
    const count = fault.count ?? 1;
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`Expected \`count\` to be an integer >= 1, got \`${count}\``);
    this.#faults.push({ fault, left: count, kind });
  }

  /** Faults still waiting to be served. */
  pendingFaults(): number {
    return this.#faults.reduce((n, f) => n + f.left, 0);
  }

  /**
   * Counts the request against every rule that matches it (or the fallback bucket), as Discord
   * counts a request against each bucket it belongs to; the tightest bucket's numbers are sent.
   */
  decide(request: RouteRequest): RateLimitDecision {
    const now = Date.now();
    const matching = this.rules.filter((r) => matches(r.match, request));
    const rules = matching.length > 0 ? matching : [{ ...FALLBACK, match: '' }];
    const buckets = rules.map((rule) => {
      const key = `${rule.bucket}:${rule.key ? rule.key(request) : `${request.method} ${request.route}:${majorParameter(request)}`}`;
      let window = this.#windows.get(key);
      if (!window || window.resetAt <= now) {
        window = { count: 0, resetAt: now + rule.windowMs };
        this.#windows.set(key, window);
      }
      return { rule, window, hash: createHash('sha1').update(rule.bucket).digest('hex').slice(0, 32) };
    });
    const headersOf = (b: (typeof buckets)[number], remaining: number): Record<string, string> => {
      const resetAfter = Math.max(0, b.window.resetAt - now) / 1000;
      return {
        'X-RateLimit-Limit': String(b.rule.limit),
        'X-RateLimit-Remaining': String(remaining),
        'X-RateLimit-Reset': (b.window.resetAt / 1000).toFixed(3),
        'X-RateLimit-Reset-After': resetAfter.toFixed(3),
        'X-RateLimit-Bucket': b.hash,
      };
    };

    const faultIndex = this.#faults.findIndex((f) => matches(f.fault.match, request));
    if (faultIndex !== -1) {
      const entry = this.#faults[faultIndex];
      if (--entry.left === 0) this.#faults.splice(faultIndex, 1);
      if (entry.kind === '5xx') return { headers: {}, serverError: entry.fault.status ?? 500 };
      const retryAfter = entry.fault.retryAfter ?? 1;
      const global = entry.fault.global ?? false;
      const headers: Record<string, string> = {
        'Retry-After': String(retryAfter),
        'X-RateLimit-Scope': entry.fault.scope ?? (global ? 'global' : 'user'),
      };
      if (global) {
        headers['X-RateLimit-Global'] = 'true';
      } else {
        Object.assign(headers, headersOf(buckets[0], 0), {
          'X-RateLimit-Reset': ((now + retryAfter * 1000) / 1000).toFixed(3),
          'X-RateLimit-Reset-After': retryAfter.toFixed(3),
        });
      }
      return { headers, limited: { retryAfter, global } };
    }

    const exhausted = buckets.filter((b) => b.window.count >= b.rule.limit).sort((a, b) => b.window.resetAt - a.window.resetAt)[0];
    if (exhausted) {
      const headers = headersOf(exhausted, 0);
      headers['Retry-After'] = headers['X-RateLimit-Reset-After'];
      headers['X-RateLimit-Scope'] = 'user';
      return { headers, limited: { retryAfter: Number(headers['Retry-After']), global: false } };
    }
    for (const b of buckets) b.window.count++;
    const tightest = buckets.reduce((a, b) => (b.rule.limit - b.window.count < a.rule.limit - a.window.count ? b : a));
    return { headers: headersOf(tightest, tightest.rule.limit - tightest.window.count) };
  }
}

/**
 * Discord's unpublished cap on interaction-webhook edits per channel (about 30 a minute, see
 * reference/discord-protocol.md). Not in the defaults; add it with `setRateLimits([...defaultRateLimitRules(), channelWebhookEditRule()])`.
 */
export function channelWebhookEditRule(limit = 30, windowMs = 60_000): RateLimitRule {
  return {
    bucket: 'webhook-edits-per-channel',
    match: (r) => r.method === 'PATCH' && r.route.startsWith('/webhooks/') && r.channelId !== undefined,
    limit,
    windowMs,
    key: (r) => r.channelId!,
  };
}

/** discord.js and Discord key buckets on the first id after channels/guilds/webhooks. */
function majorParameter(request: RouteRequest): string {
  return /^\/(?:channels|guilds|webhooks)\/(\d+)/.exec(request.path)?.[1] ?? 'global';
}

export function matches(matcher: RequestMatcher, request: RouteRequest): boolean {
  if (typeof matcher === 'function') return matcher(request);
  const subjects = [`${request.method} ${request.path}`, `${request.method} ${request.route}`];
  if (matcher instanceof RegExp) return subjects.some((s) => matcher.test(s));
  if (matcher === '') return false;
  const pattern = new RegExp(`^${matcher.split('*').map(escapeRegExp).join('.*')}$`);
  return subjects.some((s) => pattern.test(s));
}

function escapeRegExp(text: string): string {
  return text.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
}
