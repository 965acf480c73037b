/**
 * DISCORD_SHARDS above 1 (or `auto`): discord.js's ShardingManager forks one process per gateway shard over the
 * bot's own entry. Each shard process runs the normal scaled bot (REDIS_URL: one queue for all of them); discord.js's
 * Client reads its shard ids from SHARDS and SHARD_COUNT, which the manager sets. The manager itself talks to
 * neither Discord's gateway nor Redis: it starts the shards, logs them, and stops them on a signal.
 */
import type { ChildProcess } from 'node:child_process';
import { DefaultRestOptions, REST, Routes, ShardingManager, type RESTGetAPIGatewayBotResult, type Shard } from 'discord.js';
import type { Logger } from '../log.js';

/**
 * Discord's pause between two shards' IDENTIFYs with `max_concurrency` 1 is 5 s
 * (discord.com/developers/docs/events/gateway#session-start-limit-object); discord.js's own default spacing.
 */
export const SHARD_SPAWN_DELAY_MS = 5_500;

export interface ShardingOptions {
  /** The script each shard runs: the bot's entry (dist/src/index.js, or src/index.ts under tsx). */
  file: string;
  /** Node flags for the shard processes (the manager's own, so `tsx src/index.ts` shards load through tsx too). */
  execArgv?: readonly string[];
  token: string;
  /** REST base (DISCORD_API_URL); `auto` asks its `/gateway/bot`. Undefined: Discord. */
  apiUrl: string | undefined;
  totalShards: number | 'auto';
  logger: Logger;
  /** Pause between starting two shards. Default SHARD_SPAWN_DELAY_MS. */
  spawnDelayMs?: number;
}

export interface ShardedBot {
  readonly totalShards: number;
  /** SIGTERM to every shard process (each stops gracefully under its own lifecycle guard); resolves once all exited. */
  stop(): Promise<void>;
  /** Last resort: SIGTERM to every shard process without waiting (the manager is about to exit). */
  signalAll(): void;
}

/**
 * Discord's recommended shard count for this bot (`GET /gateway/bot`). discord.js's ShardingManager would ask
 * discord.com itself whatever DISCORD_API_URL says, so the count is fetched here, through the configured API.
 */
export async function recommendedShardCount(token: string, apiUrl: string | undefined): Promise<number> {
  const rest = new REST({ api: apiUrl ?? DefaultRestOptions.api }).setToken(token);
  const result = (await rest.get(Routes.gatewayBot())) as RESTGetAPIGatewayBotResult;
  return result.shards;
}

function alive(child: ChildProcess | null): child is ChildProcess {
  return child !== null && child.exitCode === null && child.signalCode === null;
}

/** Starts the manager and spawns every shard, `spawnDelayMs` apart; resolves once all are started (not yet ready). */
export async function startSharding(options: ShardingOptions): Promise<ShardedBot> {
  const { logger } = options;
  const totalShards = options.totalShards === 'auto' ? await recommendedShardCount(options.token, options.apiUrl) : options.totalShards;
  const manager = new ShardingManager(options.file, {
    totalShards,
    token: options.token,
    mode: 'process',
    // A shard that dies on its own is started again; on stop, respawn is switched off first.
    respawn: true,
    execArgv: [...(options.execArgv ?? [])],
  });
  manager.on('shardCreate', (shard: Shard) => {
    // Mode `process`: the shard's child is a ChildProcess (`shard.process`), never a Worker.
    shard.on('spawn', () => logger.info('shard started', { shard: shard.id, totalShards, shardPid: shard.process?.pid }));
    shard.on('error', (error: unknown) => logger.error('shard error', { shard: shard.id, error }));
    shard.on('ready', () => logger.info('shard ready', { shard: shard.id }));
    shard.on('death', () => {
      const child = shard.process;
      if (manager.respawn) logger.warn('shard exited; starting it again', { shard: shard.id, code: child?.exitCode, signal: child?.signalCode });
    });
  });
  logger.info('starting gateway shards', { totalShards, requested: options.totalShards });
  // timeout -1: spawn does not wait for each shard's READY (a scaled bot may wait for its first image worker).
  await manager.spawn({ amount: totalShards, delay: options.spawnDelayMs ?? SHARD_SPAWN_DELAY_MS, timeout: -1 });

  const children = () => [...manager.shards.values()].map((shard) => shard.process).filter(alive);
  return {
    totalShards,
    async stop() {
      manager.respawn = false;
      await Promise.all(
        children().map(
          (child) =>
            new Promise<void>((resolve) => {
              child.once('exit', () => resolve());
              child.kill('SIGTERM');
            }),
        ),
      );
      logger.info('every shard stopped', { totalShards });
    },
    signalAll() {
      manager.respawn = false;
      for (const child of children()) child.kill('SIGTERM');
    },
  };
}
