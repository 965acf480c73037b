/**
 * The bot's view of the image workers in the scaled mode: what it needs of an `ImageEngine` (the default model's
 * facts, the installed models, health) without loading any model. Pictures are made by `npm run worker`
 * processes; this engine makes none.
 */
import type { Redis } from 'ioredis';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EngineHealth, EngineModelListing, GenerateResult, ImageEngine, ModelInfo } from '../diffusion/types.js';
import type { Logger } from '../log.js';
import { commandConnection, Keys, type RedisTarget } from './redis.js';
import { Registry } from './registry.js';

export interface WorkerFleet {
  /** The models the workers published, the default first. */
  models(): EngineModelListing[];
  /** Workers heard from lately. */
  workers(): { models: string[] }[];
}

export class RemoteEngine implements ImageEngine {
  constructor(
    private readonly model: ModelInfo,
    private readonly fleet: WorkerFleet,
  ) {}

  async info(): Promise<ModelInfo> {
    return this.model;
  }

  async models(): Promise<EngineModelListing[]> {
    return this.fleet.models();
  }

  health(): EngineHealth {
    return { alive: this.fleet.workers().length, restarts: 0 };
  }

  generate(): Promise<GenerateResult> {
    return Promise.reject(new Error('In the scaled mode pictures are made by `npm run worker` processes, not by the bot'));
  }

  async close(): Promise<void> {}
}

/**
 * The default model's facts as the workers published them, waiting (and saying so every 10 s) until a worker
 * has: a bot that loads no model cannot check a request's size and steps against a model it knows nothing of.
 * Once any worker has published, this answers at once, workers up or not.
 */
export async function publishedDefaultModel(target: RedisTarget, logger: Logger, signal?: AbortSignal): Promise<ModelInfo> {
  const redis: Redis = commandConnection(target, 'imagine-bot-models');
  const registry = new Registry(redis, new Keys(target.prefix));
  let said = 0;
  try {
    for (;;) {
      signal?.throwIfAborted();
      try {
        const models = await registry.models();
        const model = models.find((listing) => listing.isDefault) ?? models[0];
        if (model?.info !== undefined) return model.info;
      } catch {
        // Redis not reachable yet: keep trying, the message below says what is awaited.
      }
      if (Date.now() - said > 10_000) {
        logger.info('waiting for an image worker to publish its models (start one with `npm run worker`)');
        said = Date.now();
      }
      await sleep(500);
    }
  } finally {
    redis.disconnect();
  }
}
