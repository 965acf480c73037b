/**
 * The one reader of `process.env`. Everything the bot's owner can set lives here, is parsed and validated once
 * (zod), and is handed around frozen. `.env.example` lists every key with a comment.
 */
import path from 'node:path';
import { config as loadDotenv } from 'dotenv';
import { z } from 'zod';

/** pino's levels, most severe first. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Hosts for which plain http is accepted (WHATWG URL gives IPv6 hosts in brackets). */
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** A URL as it may be shown in an error: any `user:password@` removed. */
function withoutCredentials(raw: string): string {
  return raw.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/i, '$1');
}

/** `raw` as a URL with one of these protocols (`'https:'`), or undefined. */
function parsedUrl(raw: string, protocols: readonly string[]): URL | undefined {
  try {
    const url = new URL(raw);
    return protocols.includes(url.protocol) ? url : undefined;
  } catch {
    return undefined;
  }
}

/** A configuration problem the owner must fix: one line, shown before anything starts. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/**
 * Discord bot tokens are three base64url parts joined by dots: the bot's id, a timestamp, an HMAC.
 * Checked by shape only; whether Discord accepts it is the gateway's business.
 */
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{18,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}$/;

const EXECUTION_PROVIDERS = ['cpu', 'cuda', 'webgpu'] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

/** An integer from an env string, with a range; empty or unset means "use the default". */
function intKey(name: string, min: number, max: number, fallback: number) {
  return z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') return fallback;
      const value = Number(raw.trim());
      if (!Number.isInteger(value) || value < min || value > max) {
        ctx.addIssue({
          code: 'custom',
          message: `Expected \`${name}\` to be an integer from ${min} to ${max}, got \`${raw}\``,
        });
        return z.NEVER;
      }
      return value;
    });
}

function optionalString() {
  return z
    .string()
    .optional()
    .transform((raw) => (raw === undefined || raw.trim() === '' ? undefined : raw.trim()));
}

const schema = z.object({
  // Unset or empty: no Discord, the local playground (src/index.ts says so in the log).
  DISCORD_TOKEN: z
    .string()
    .optional()
    .transform((raw) => {
      const token = (raw ?? '').trim().replace(/^Bot\s+/i, '');
      return token.length > 0 ? token : undefined;
    })
    .refine(
      (token) => token === undefined || TOKEN_PATTERN.test(token),
      'DISCORD_TOKEN does not look like a bot token (three dot-separated parts, from the Developer Portal → Bot → Reset Token)',
    ),
  PLAYGROUND_PORT: intKey('PLAYGROUND_PORT', 0, 65_535, 3210),
  DISCORD_API_URL: optionalString().superRefine((raw, ctx) => {
    if (raw === undefined) return;
    const url = parsedUrl(raw, ['http:', 'https:']);
    if (!url) {
      ctx.addIssue({ code: 'custom', message: `Expected \`DISCORD_API_URL\` to be an http(s) URL, got \`${withoutCredentials(raw)}\`` });
      return;
    }
    // The bot token travels in every request: plain http is only acceptable to this machine (a local proxy).
    if (url.protocol === 'http:' && !LOOPBACK_HOSTS.has(url.hostname)) {
      ctx.addIssue({
        code: 'custom',
        message: `Expected \`DISCORD_API_URL\` to use https unless it points at this machine (127.0.0.1, ::1, localhost), got \`${withoutCredentials(raw)}\``,
      });
    }
  }),
  MODEL_DIR: optionalString(),
  MODELS_DIR: optionalString().transform((raw) => raw ?? 'models/'),
  // A Hub access token for gated or private repos (`npm run models -- pull`); the Hub's tokens start with hf_.
  HF_TOKEN: optionalString().refine(
    (token) => token === undefined || /^hf_[A-Za-z0-9]+$/.test(token),
    'HF_TOKEN does not look like a Hugging Face token (hf_… from https://huggingface.co/settings/tokens)',
  ),
  HF_ENDPOINT: optionalString().transform((raw, ctx) => {
    const value = (raw ?? 'https://huggingface.co').replace(/\/+$/, '');
    if (!parsedUrl(value, ['http:', 'https:'])) {
      ctx.addIssue({ code: 'custom', message: `Expected \`HF_ENDPOINT\` to be an http(s) URL, got \`${withoutCredentials(raw ?? '')}\`` });
      return z.NEVER;
    }
    return value;
  }),
  DATA_DIR: optionalString().transform((raw) => raw ?? './data'),
  EXECUTION_PROVIDERS: optionalString().transform((raw, ctx) => {
    const list = (raw ?? 'cpu')
      .split(',')
      .map((name) => name.trim().toLowerCase())
      .filter((name) => name.length > 0);
    for (const name of list) {
      if (!(EXECUTION_PROVIDERS as readonly string[]).includes(name)) {
        ctx.addIssue({
          code: 'custom',
          message: `Expected \`EXECUTION_PROVIDERS\` to be a comma-separated list of ${EXECUTION_PROVIDERS.join(', ')}, got \`${raw}\``,
        });
        return z.NEVER;
      }
    }
    return list as ExecutionProvider[];
  }),
  SAMPLER: optionalString().transform((raw, ctx) => {
    const value = raw ?? 'workers';
    if (value !== 'workers' && value !== 'stand-in') {
      ctx.addIssue({ code: 'custom', message: `Expected \`SAMPLER\` to be \`workers\` or \`stand-in\`, got \`${raw}\`` });
      return z.NEVER;
    }
    return value;
  }),
  SAMPLER_WORKERS: intKey('SAMPLER_WORKERS', 1, 16, 1),
  MODEL_MEMORY_MB: intKey('MODEL_MEMORY_MB', 1, 1_048_576, 4096),
  BATCH_IMAGES: intKey('BATCH_IMAGES', 1, 8, 4),
  STAND_IN_STEP_MS: intKey('STAND_IN_STEP_MS', 0, 60_000, 50),
  QUEUE_MAX_PER_MEMBER: intKey('QUEUE_MAX_PER_MEMBER', 1, 100, 2),
  QUEUE_MAX_TOTAL: intKey('QUEUE_MAX_TOTAL', 1, 100_000, 100),
  JOB_TIMEOUT_SECONDS: intKey('JOB_TIMEOUT_SECONDS', 1, 86_400, 600),
  STEPS_HARD_CAP: intKey('STEPS_HARD_CAP', 1, 1000, 150),
  STEPS_DEFAULT: intKey('STEPS_DEFAULT', 1, 1000, 20),
  STEPS_MAX: intKey('STEPS_MAX', 1, 1000, 50),
  GUIDANCE_DEFAULT: z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') return undefined;
      const value = Number(raw.trim());
      if (!Number.isFinite(value) || value < 0 || value > 30) {
        ctx.addIssue({ code: 'custom', message: `Expected \`GUIDANCE_DEFAULT\` to be a number from 0 to 30, got \`${raw}\`` });
        return z.NEVER;
      }
      return value;
    }),
  EDIT_INTERVAL_MS: intKey('EDIT_INTERVAL_MS', 0, 60_000, 1500),
  JOB_RETENTION_DAYS: intKey('JOB_RETENTION_DAYS', 1, 3650, 30),
  EDITS_PER_CHANNEL_PER_MINUTE: intKey('EDITS_PER_CHANNEL_PER_MINUTE', 0, 10_000, 30),
  METRICS_PORT: z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') return undefined;
      const value = Number(raw.trim());
      if (!Number.isInteger(value) || value < 0 || value > 65_535) {
        ctx.addIssue({ code: 'custom', message: `Expected \`METRICS_PORT\` to be a port from 0 to 65535 (empty: off), got \`${raw}\`` });
        return z.NEVER;
      }
      return value;
    }),
  METRICS_HOST: optionalString().transform((raw, ctx) => {
    const value = raw ?? '127.0.0.1';
    // An address or a host name to listen on, not a URL: `0.0.0.0`, `::`, `192.168.1.5`, `localhost`.
    if (!/^(?:[A-Za-z0-9.-]+|[0-9A-Fa-f:.]+)$/.test(value)) {
      ctx.addIssue({ code: 'custom', message: `Expected \`METRICS_HOST\` to be an address to listen on, such as 127.0.0.1 or 0.0.0.0, got \`${raw}\`` });
      return z.NEVER;
    }
    return value;
  }),
  // Scaled mode (issue 11): a redis:// or rediss:// URL; unset: the embedded queue in this process.
  REDIS_URL: optionalString().superRefine((raw, ctx) => {
    if (raw === undefined) return;
    if (!parsedUrl(raw, ['redis:', 'rediss:'])) {
      ctx.addIssue({ code: 'custom', message: `Expected \`REDIS_URL\` to be a redis:// or rediss:// URL, got \`${withoutCredentials(raw)}\`` });
    }
  }),
  // Gateway shards: unset or 1: one connection in this process; `auto` (Discord's recommendation) or a number: a
  // discord.js ShardingManager with one child process per shard (needs REDIS_URL: the shards share one queue).
  DISCORD_SHARDS: optionalString().transform((raw, ctx) => {
    if (raw === undefined) return 1 as number | 'auto';
    if (raw.toLowerCase() === 'auto') return 'auto' as const;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < 1 || value > 1000) {
      ctx.addIssue({ code: 'custom', message: `Expected \`DISCORD_SHARDS\` to be \`auto\` or a number of shards from 1 to 1000, got \`${raw}\`` });
      return z.NEVER;
    }
    return value;
  }),
  // `npm run worker`: the models this worker serves, by folder name, comma-separated; unset: every installed model.
  WORKER_MODELS: optionalString().transform((raw) =>
    raw === undefined ? undefined : raw.split(',').map((name) => name.trim()).filter((name) => name.length > 0),
  ),
  // This bot process's name in the scaled mode (it delivers the jobs it submitted). discord.js's ShardingManager sets
  // SHARDS (the shard ids) in each shard process; BOT_INSTANCE names a process by hand.
  BOT_INSTANCE: optionalString().refine(
    (name) => name === undefined || /^[A-Za-z0-9._-]{1,64}$/.test(name),
    'Expected `BOT_INSTANCE` to be 1–64 letters, digits, dots, dashes or underscores',
  ),
  SHARDS: optionalString(),
  // Set to `true` by discord.js's ShardingManager in each shard process it forks (with SHARDS and SHARD_COUNT).
  SHARDING_MANAGER: optionalString(),
  WORKER_LOCK_SECONDS: intKey('WORKER_LOCK_SECONDS', 1, 600, 30),
  // A gateway shard given up on (it kept dying at start) is tried once more after this many seconds; 0: never.
  SHARD_RETRY_SECONDS: intKey('SHARD_RETRY_SECONDS', 0, 86_400, 600),
  LOG_LEVEL: z
    .string()
    .optional()
    .transform((raw, ctx) => {
      const value = (raw ?? '').trim().toLowerCase() || 'info';
      if (!(LOG_LEVELS as readonly string[]).includes(value)) {
        ctx.addIssue({ code: 'custom', message: `Expected \`LOG_LEVEL\` to be one of ${LOG_LEVELS.join(', ')}, got \`${raw}\`` });
        return z.NEVER;
      }
      return value as LogLevel;
    }),
});

export interface Config {
  /** Bot token, without a leading "Bot ". Undefined (unset or empty): the bot runs in the local playground. */
  readonly discordToken: string | undefined;
  /** The local playground's port on 127.0.0.1 (0: any free port). Default 3210. */
  readonly playgroundPort: number;
  /** REST base such as `http://127.0.0.1:8080/api`; undefined: discord.com. Gateway discovery goes through it. */
  readonly discordApiUrl: string | undefined;
  /** Model folder; undefined: the embedded model (models/imagine-shapes) or the test model. */
  readonly modelDir: string | undefined;
  /**
   * The model library: the folder `npm run models -- pull` writes into and `list` reads; every model folder in it
   * is a model named after its folder. Default `models/`. (The bot's own model is still MODEL_DIR.)
   */
  readonly modelsDir: string;
  /** Hugging Face access token for gated or private repos; undefined: anonymous. */
  readonly hfToken: string | undefined;
  /** The Hub's base URL, without a trailing slash (a mirror, or the test stand-in). Default `https://huggingface.co`. */
  readonly hfEndpoint: string;
  /** Where the SQLite journal and saved results live. Default `./data`. */
  readonly dataDir: string;
  /**
   * onnxruntime's optimised graphs, so a restart skips graph optimisation (src/diffusion/optimized-cache.ts):
   * DATA_DIR/ort-cache. Its own field so that the playground, which empties its own data folder at every start,
   * keeps the cache of the DATA_DIR it was started with.
   */
  readonly ortCacheDir: string;
  /** onnxruntime execution providers in order of preference. Default `['cpu']`. */
  readonly executionProviders: readonly ExecutionProvider[];
  /** `workers` (the ONNX worker pool) or `stand-in` (a fast fake for tests and load runs). Default `workers`. */
  readonly engine: 'workers' | 'stand-in';
  /** ImageEngine worker threads = jobs run at once. Default 1. */
  readonly engineWorkers: number;
  /**
   * MiB each worker may give the models it holds loaded (estimated as their files' size × 1.2); the least recently
   * used is released for another. One model is always held. Default 4096.
   */
  readonly modelMemoryMb: number;
  /**
   * Most images that waiting jobs from different members may share in one UNet call (same size, steps and
   * scheduler). 1 turns batching off. Default 4.
   */
  readonly batchImages: number;
  /** Milliseconds per step of the stand-in engine. Default 50. */
  readonly standInStepMs: number;
  /** Waiting jobs one member may have (guilds may lower or raise it with /settings). Default 2. */
  readonly queueMaxPerMember: number;
  /** Waiting jobs overall. Default 100. */
  readonly queueMaxTotal: number;
  /** A job running longer is stopped and reported failed. Default 600 s. */
  readonly jobTimeoutMs: number;
  /** No guild may set a step maximum above this. Default 150. */
  readonly stepsHardCap: number;
  /** Steps when /imagine gives none, for guilds that set nothing. Default 20. */
  readonly stepsDefault: number;
  /** Most steps a member may ask for, for guilds that set nothing. Default 50 (never above the hard cap). */
  readonly stepsMax: number;
  /**
   * Guidance when /imagine gives none. Unset: the model's own (`guidance_scale` in its imagine.json), else 7.5,
   * Stable Diffusion's usual value.
   */
  readonly guidanceDefault: number | undefined;
  /** Minimum milliseconds between two edits of one message. Default 1500 (Discord allows about 5 per 5 s). */
  readonly editIntervalMs: number;
  /** Progress edits per channel per minute, all jobs together; 0: no limit. Default 30. */
  readonly editsPerChannelPerMinute: number;
  /** Finished jobs are kept this many days (🔁 on a picture needs its job), then deleted. Default 30. */
  readonly jobRetentionDays: number;
  /** Lowest log level written (pino's levels). Default `info`. */
  readonly logLevel: LogLevel;
  /**
   * Port of the Prometheus metrics and `/healthz` endpoint; undefined (the default): no endpoint. 0: any free
   * port (the address is logged). In shard process N of DISCORD_SHARDS: METRICS_PORT + N.
   */
  readonly metricsPort: number | undefined;
  /** Address the metrics endpoint listens on. Default `127.0.0.1` (this machine only). */
  readonly metricsHost: string;
  /** Redis for scaled mode (bot processes + `npm run worker` processes); undefined: the embedded queue. */
  readonly redisUrl: string | undefined;
  /** Gateway shards: 1 (one connection in this process), a number, or `auto` (Discord's recommended count). */
  readonly shards: number | 'auto';
  /** A shard given up on is started once more after this long (shard-restarts.ts); 0: never. */
  readonly shardRetryMs: number;
  /** The models an image worker serves (`npm run worker`); undefined: every installed model. */
  readonly workerModels: readonly string[] | undefined;
  /**
   * A worker's hold on its current job: a worker that dies is noticed, and its job taken over by another, after
   * about this long (BullMQ's lock duration). Default 30 s.
   */
  readonly workerLockMs: number;
  /**
   * This bot process's name in the scaled mode, stable across its restarts: it delivers the jobs it submitted.
   * BOT_INSTANCE, else `shard-<ids>` in a shard process of the ShardingManager, else `bot`.
   */
  readonly botInstance: string;
  /**
   * True in a shard process forked by discord.js's ShardingManager (it sets SHARDING_MANAGER and SHARDS): this
   * process runs one bot on the shards it was given and never starts a manager of its own.
   */
  readonly shardProcess: boolean;
}

/**
 * A shard process of the ShardingManager serves its metrics on METRICS_PORT + its (first) shard id, so the shards of
 * one machine do not fight for one port; 0 (any free port) and unset stay as they are.
 */
function shardMetricsPort(port: number | undefined, shards: string | undefined): number | undefined {
  const firstShard = shards === undefined ? undefined : /\d+/.exec(shards)?.[0];
  if (port === undefined || port === 0 || firstShard === undefined) return port;
  const shifted = port + Number(firstShard);
  if (shifted > 65_535) throw new ConfigError(`\`METRICS_PORT\` + the shard id (${port} + ${firstShard}) is above 65535: pick a lower METRICS_PORT`);
  return shifted;
}

/**
 * Parses and validates configuration from an environment record. Pure: reads nothing else.
 * @throws ConfigError with one line naming the first problem.
 */
export function parseConfig(env: Record<string, string | undefined>): Config {
  const result = schema.safeParse(env);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new ConfigError(issue?.message ?? 'Invalid configuration');
  }
  const v = result.data;
  if (v.STEPS_MAX > v.STEPS_HARD_CAP) {
    throw new ConfigError(`Expected \`STEPS_MAX\` (${v.STEPS_MAX}) to be at most \`STEPS_HARD_CAP\` (${v.STEPS_HARD_CAP})`);
  }
  if (v.DISCORD_SHARDS !== 1 && v.REDIS_URL === undefined) {
    throw new ConfigError('`DISCORD_SHARDS` needs `REDIS_URL`: every shard submits to the one queue in Redis (see the README, "More than one GPU")');
  }
  if (v.STEPS_DEFAULT > v.STEPS_MAX) {
    throw new ConfigError(`Expected \`STEPS_DEFAULT\` (${v.STEPS_DEFAULT}) to be at most \`STEPS_MAX\` (${v.STEPS_MAX})`);
  }
  return Object.freeze({
    discordToken: v.DISCORD_TOKEN,
    playgroundPort: v.PLAYGROUND_PORT,
    discordApiUrl: v.DISCORD_API_URL,
    modelDir: v.MODEL_DIR,
    modelsDir: v.MODELS_DIR,
    hfToken: v.HF_TOKEN,
    hfEndpoint: v.HF_ENDPOINT,
    dataDir: v.DATA_DIR,
    ortCacheDir: path.join(v.DATA_DIR, 'ort-cache'),
    executionProviders: Object.freeze([...v.EXECUTION_PROVIDERS]),
    engine: v.SAMPLER,
    engineWorkers: v.SAMPLER_WORKERS,
    modelMemoryMb: v.MODEL_MEMORY_MB,
    batchImages: v.BATCH_IMAGES,
    standInStepMs: v.STAND_IN_STEP_MS,
    queueMaxPerMember: v.QUEUE_MAX_PER_MEMBER,
    queueMaxTotal: v.QUEUE_MAX_TOTAL,
    jobTimeoutMs: v.JOB_TIMEOUT_SECONDS * 1000,
    stepsHardCap: v.STEPS_HARD_CAP,
    stepsDefault: v.STEPS_DEFAULT,
    stepsMax: v.STEPS_MAX,
    guidanceDefault: v.GUIDANCE_DEFAULT,
    editIntervalMs: v.EDIT_INTERVAL_MS,
    editsPerChannelPerMinute: v.EDITS_PER_CHANNEL_PER_MINUTE,
    jobRetentionDays: v.JOB_RETENTION_DAYS,
    logLevel: v.LOG_LEVEL,
    metricsPort: shardMetricsPort(v.METRICS_PORT, v.SHARDS),
    metricsHost: v.METRICS_HOST,
    redisUrl: v.REDIS_URL,
    shards: v.DISCORD_SHARDS,
    shardRetryMs: v.SHARD_RETRY_SECONDS * 1000,
    workerLockMs: v.WORKER_LOCK_SECONDS * 1000,
    botInstance: v.BOT_INSTANCE ?? (v.SHARDS !== undefined ? `shard-${v.SHARDS.replace(/[^0-9]+/g, '-')}` : 'bot'),
    shardProcess: v.SHARDING_MANAGER !== undefined || v.SHARDS !== undefined,
    workerModels: v.WORKER_MODELS === undefined ? undefined : Object.freeze([...v.WORKER_MODELS]),
  });
}

/**
 * Loads `.env` (if present; real environment variables win) and parses `process.env`.
 * @throws ConfigError with one line naming the first problem.
 */
export function loadConfig(options: { envFile?: string } = {}): Config {
  loadDotenv({ path: options.envFile ?? '.env', quiet: true });
  return parseConfig(process.env);
}
