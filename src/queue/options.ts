import type { Logger } from '../log.js';
import type { GenerateParams, ImageEngine } from '../diffusion/types.js';
import type { Db } from '../store/database.js';
import type { DeliverFn } from './types.js';

export interface FairQueueOptions {
  /** The journal (see ../store/database.ts `openDatabase`). The queue never closes it. */
  db: Db;
  /** Runs the jobs: the worker pool, or the stand-in engine in tests. */
  engine: ImageEngine;
  /** Posts a finished image (the bot's delivery). */
  deliver: DeliverFn;
  /** Where finished PNGs wait for delivery: DATA_DIR/results. */
  resultsDir: string;
  /** Jobs generated at once; set it to the number of engine workers. Default 1. */
  concurrency?: number;
  /**
   * Images one engine run may make for several jobs together: waiting jobs that share steps, scheduler and size
   * (`batchKey`) join the job whose turn it is, in fair order, when that delays no one they jump over by more
   * than one step (see batch-plan.ts). Needs an engine with `generateBatch` (the worker pool, the stand-in).
   * Default 1: one job per run.
   */
  maxBatchImages?: number;
  /** Waiting jobs one member may have in a guild: a number, or a function reading the guild's settings. Default 2. */
  memberCap?: number | ((guildId: string) => number);
  /** Waiting jobs in all guilds together. Default 100. */
  globalCap?: number;
  /**
   * A running job is stopped and failed after this long. The queue is the one owner of this limit: the engine
   * enforces none. Default 600 000 (10 minutes).
   */
  jobTimeoutMs?: number;
  /** Times a job may start running: a job interrupted by a crash runs once more, then fails. Default 2. */
  maxAttempts?: number;
  /** Delivery tries per job before it fails (each process start begins a new count). Default 4. */
  deliveryTries?: number;
  /** Wait before the second delivery try; doubled for each further try. Default 2000. */
  deliveryRetryDelayMs?: number;
  /** Guess for ms per step before anything was measured (then the measured moving average is kept). Default 1000. */
  initialMsPerStep?: number;
  /** Pixels of the reference image a "step" is measured on; other sizes scale by area. Default 512 × 512. */
  referencePixels?: number;
  /** How long an aborted engine call may take to stop before its slot is given up. Default 30 000. */
  abortGraceMs?: number;
  /**
   * While the journal cannot be written (disk full, read-only), the wait before starting a waiting job is tried
   * again; doubled after each failed try, up to a minute. Default 1000.
   */
  journalRetryDelayMs?: number;
  /** Keep PNGs in resultsDir after delivery (for debugging). Default false. */
  keepResults?: boolean;
  /** Default: console. */
  logger?: Logger;
  /** Clock, for tests. Default Date.now. */
  now?: () => number;
}

/** The numeric and boolean options with their defaults filled in. */
export type QueueSettings = Required<
  Omit<FairQueueOptions, 'db' | 'engine' | 'deliver' | 'resultsDir' | 'memberCap' | 'logger' | 'now'>
>;

/** Fill in the defaults and refuse values that would break the queue, naming the option. */
export function resolveSettings(config: FairQueueOptions): QueueSettings {
  const settings: QueueSettings = {
    concurrency: config.concurrency ?? 1,
    maxBatchImages: config.maxBatchImages ?? 1,
    globalCap: config.globalCap ?? 100,
    jobTimeoutMs: config.jobTimeoutMs ?? 600_000,
    maxAttempts: config.maxAttempts ?? 2,
    deliveryTries: config.deliveryTries ?? 4,
    deliveryRetryDelayMs: config.deliveryRetryDelayMs ?? 2000,
    initialMsPerStep: config.initialMsPerStep ?? 1000,
    referencePixels: config.referencePixels ?? 512 * 512,
    abortGraceMs: config.abortGraceMs ?? 30_000,
    journalRetryDelayMs: config.journalRetryDelayMs ?? 1000,
    keepResults: config.keepResults ?? false,
  };
  checkPositiveInteger('concurrency', settings.concurrency);
  checkPositiveInteger('maxBatchImages', settings.maxBatchImages);
  checkPositiveInteger('globalCap', settings.globalCap);
  checkPositiveInteger('jobTimeoutMs', settings.jobTimeoutMs);
  checkPositiveInteger('maxAttempts', settings.maxAttempts);
  checkPositiveInteger('deliveryTries', settings.deliveryTries);
  checkPositiveInteger('journalRetryDelayMs', settings.journalRetryDelayMs);
  return settings;
}

function checkPositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`Expected \`${name}\` to be a positive integer, got \`${value}\``);
  }
}

/** The command validated the params for the member; this only refuses what would break the queue's arithmetic. */
export function checkParams(params: GenerateParams): void {
  if (!Number.isInteger(params.steps) || params.steps < 1) {
    throw new TypeError(`Expected \`params.steps\` to be a positive integer, got \`${params.steps}\``);
  }
  if (params.count !== undefined && (!Number.isInteger(params.count) || params.count < 1)) {
    throw new TypeError(`Expected \`params.count\` to be a positive integer, got \`${params.count}\``);
  }
}
