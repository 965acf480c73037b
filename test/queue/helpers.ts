import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FairQueue, type FairQueueOptions } from '../../src/queue/fair-queue.js';
import type { Logger } from '../../src/log.js';
import { StandInEngine, type StandInEngineOptions } from '../../src/diffusion/engine/stand-in.js';
import type { DeliverFn, DeliveryContext, JobRecord, QueueEventMap, QueueEvents } from '../../src/queue/types.js';
import type { GenerateParams, GenerateResult } from '../../src/diffusion/types.js';
import { openDatabase, type Db } from '../../src/store/database.js';

export function tempDataDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'imagine-queue-'));
}

export function params(prompt: string, overrides: Partial<GenerateParams> = {}): GenerateParams {
  return { prompt, steps: 4, seed: 1, guidanceScale: 0, width: 32, height: 32, ...overrides };
}

export interface Delivery {
  job: JobRecord;
  result: GenerateResult;
  context: DeliveryContext;
}

export interface Harness {
  dataDir: string;
  db: Db;
  queue: FairQueue;
  engine: StandInEngine;
  /** Prompts in the order generation started. */
  ran: string[];
  delivered: Delivery[];
  logs: { level: 'warn' | 'error'; message: string; context?: Record<string, unknown> }[];
  close(): Promise<void>;
}

export interface HarnessOptions extends Partial<Omit<FairQueueOptions, 'db' | 'engine'>> {
  dataDir?: string;
  engine?: StandInEngineOptions;
}

/** A queue over a real SQLite file in a temp dir, the stand-in engine, and a delivery that records calls. */
export async function makeQueue(options: HarnessOptions = {}): Promise<Harness> {
  const dataDir = options.dataDir ?? tempDataDir();
  const db = openDatabase({ dataDir });
  const ran: string[] = [];
  const delivered: Delivery[] = [];
  const logs: Harness['logs'] = [];
  const logger: Logger = {
    debug: () => {},
    info: () => {},
    warn: (message, context) => logs.push({ level: 'warn', message, context }),
    error: (message, context) => logs.push({ level: 'error', message, context }),
  };
  const engine = new StandInEngine({ msPerStep: 2, onGenerate: (p) => ran.push(p.prompt), ...options.engine });
  let counter = 0;
  const deliver: DeliverFn =
    options.deliver ??
    (async (job, result, context) => {
      delivered.push({ job, result, context });
      return { messageId: `result-${++counter}` };
    });
  const { engine: _s, dataDir: _d, ...rest } = options;
  const queue = new FairQueue({
    resultsDir: path.join(dataDir, 'results'),
    deliveryRetryDelayMs: 10,
    logger,
    ...rest,
    db,
    engine,
    deliver,
  });
  return {
    dataDir,
    db,
    queue,
    engine,
    ran,
    delivered,
    logs,
    async close() {
      if (db.open) db.close();
    },
  };
}

/** The next event of this kind that matches. */
export function nextEvent<K extends keyof QueueEventMap>(
  events: QueueEvents,
  event: K,
  predicate: (payload: QueueEventMap[K]) => boolean = () => true,
): Promise<QueueEventMap[K]> {
  return new Promise((resolve) => {
    const off = events.on(event, (payload) => {
      if (!predicate(payload)) return;
      off();
      resolve(payload);
    });
  });
}

/** Record every event of one kind. */
export function record<K extends keyof QueueEventMap>(events: QueueEvents, event: K): QueueEventMap[K][] {
  const seen: QueueEventMap[K][] = [];
  events.on(event, (payload) => seen.push(payload));
  return seen;
}
