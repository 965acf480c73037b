/**
 * The one logger: JSON lines through pino (pretty when stderr is a terminal), at `LOG_LEVEL`.
 *
 * Every value in a log context goes through `serializeValue`: an `Error` is logged as name, message, stack, code,
 * status, method and path (never `{}`), a path's tokens are redacted (interaction and webhook tokens are
 * credentials), and request bodies are never logged (a failed upload once logged a 3 MB line of PNG bytes).
 */
import { Writable } from 'node:stream';
import pino, { type DestinationStream, type Level } from 'pino';
import pinoPretty from 'pino-pretty';
import type { LogLevel } from './config.js';

export interface Logger {
  debug(message: string, context?: Record<string, unknown>): void;
  info(message: string, context?: Record<string, unknown>): void;
  warn(message: string, context?: Record<string, unknown>): void;
  error(message: string, context?: Record<string, unknown>): void;
}


export interface LoggerOptions {
  /** Lowest level written. Default `info`. */
  level?: LogLevel;
  /**
   * Where lines go. Default stderr: pretty (pino-pretty) when it is a terminal, JSON lines otherwise. A function
   * receives each JSON line without its newline (tests).
   */
  destination?: DestinationStream | ((line: string) => void);
  /** Force pretty output on or off. Default: whether stderr is a terminal. */
  pretty?: boolean;
}

/** Longest string kept in a log line; beyond it the value is cut and its length said. */
const MAX_STRING = 2000;
const MAX_DEPTH = 4;

/**
 * Path segments that are secrets: `/webhooks/{application}/{token}` and `/interactions/{id}/{token}/callback`
 * (Discord's interaction routes), and `token=` / `access_token=` query parameters.
 */
const TOKEN_PATTERNS: Array<[RegExp, string]> = [
  [/(\/webhooks\/[^/?#]+\/)[^/?#]+/g, '$1[redacted]'],
  [/(\/interactions\/[^/?#]+\/)[^/?#]+/g, '$1[redacted]'],
  [/([?&](?:access_)?token=)[^&#]+/gi, '$1[redacted]'],
  [/(\/\/)[^/@\s]+:[^/@\s]+@/g, '$1[redacted]@'],
];

/** A URL or path with its credentials replaced by `[redacted]`. */
export function redactPath(value: string): string {
  let out = value;
  for (const [pattern, replacement] of TOKEN_PATTERNS) out = out.replace(pattern, replacement);
  return out;
}

/** Keys whose values are never logged, at any depth. */
const SECRET_KEYS = new Set(['token', 'authorization', 'requestbody', 'body', 'files', 'data', 'password']);

function cut(text: string): string {
  return text.length > MAX_STRING ? `${text.slice(0, MAX_STRING)}… (${text.length} characters)` : text;
}

/** An error as plain fields a log reader can use; works for discord.js's DiscordAPIError/HTTPError by shape. */
export function serializeError(error: Error, depth = 0): Record<string, unknown> {
  const fields: Record<string, unknown> = { name: error.name, message: cut(redactPath(error.message)) };
  if (error.stack) fields.stack = cut(redactPath(error.stack));
  const extra = error as Error & { code?: unknown; status?: unknown; method?: unknown; url?: unknown; cause?: unknown };
  if (extra.code !== undefined) fields.code = extra.code;
  if (typeof extra.status === 'number') fields.status = extra.status;
  if (typeof extra.method === 'string') fields.method = extra.method;
  if (typeof extra.url === 'string') {
    // The path only: the host adds nothing, and the whole URL of an interaction route holds its token.
    let path = extra.url;
    try {
      path = new URL(extra.url).pathname;
    } catch {
      // Not a URL: redact it as it is.
    }
    fields.path = redactPath(path);
  }
  if (extra.cause !== undefined && depth < MAX_DEPTH) fields.cause = serializeValue(extra.cause, depth + 1);
  return fields;
}

/** Any context value made safe to log: errors expanded, secrets dropped, long strings and buffers cut. */
export function serializeValue(value: unknown, depth = 0): unknown {
  if (value instanceof Error) return serializeError(value, depth);
  if (typeof value === 'string') return cut(redactPath(value));
  if (typeof value === 'bigint') return value.toString();
  if (value === null || typeof value !== 'object') return value;
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return `[${value.byteLength} bytes]`;
  if (depth >= MAX_DEPTH) return '[…]';
  if (Array.isArray(value)) {
    const items = value.slice(0, 20).map((item) => serializeValue(item, depth + 1));
    if (value.length > 20) items.push(`… and ${value.length - 20} more`);
    return items;
  }
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    out[key] = SECRET_KEYS.has(key.toLowerCase()) ? '[redacted]' : serializeValue(item, depth + 1);
  }
  return out;
}

function destinationOf(options: LoggerOptions): DestinationStream {
  const { destination } = options;
  if (typeof destination === 'function') {
    return new Writable({
      write(chunk: Buffer, _encoding, callback) {
        for (const line of chunk.toString('utf8').split('\n')) if (line) destination(line);
        callback();
      },
    });
  }
  if (destination) return destination;
  const pretty = options.pretty ?? process.stderr.isTTY === true;
  if (pretty) return pinoPretty({ destination: 2, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' });
  return pino.destination({ fd: 2, sync: true });
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const base = pino(
    { level: options.level ?? 'info', base: undefined, timestamp: pino.stdTimeFunctions.isoTime },
    destinationOf(options),
  );
  const at = (level: Level) => (message: string, context?: Record<string, unknown>) => {
    if (!base.isLevelEnabled(level)) return;
    if (context && Object.keys(context).length > 0) base[level](serializeValue(context) as object, message);
    else base[level](message);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** A logger that writes nothing (tests that do not look at logs). */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
