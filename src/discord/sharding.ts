/**
 * DISCORD_SHARDS above 1 (or `auto`): discord.js's ShardingManager forks one process per gateway shard over the
 * bot's own entry. Each shard process runs the normal scaled bot (REDIS_URL: one queue for all of them); discord.js's
 * Client reads its shard ids from SHARDS and SHARD_COUNT, which the manager sets. The manager itself talks to
 * neither Discord's gateway nor Redis: it starts the shards, logs them, starts an exited one again (shard-restarts.ts
 * decides when, and when to give up on it), and stops them on a signal.
 */
import type { ChildProcess } from 'node:child_process';
import { DefaultRestOptions, REST, Routes, ShardingManager, type RESTGetAPIGatewayBotResult, type Shard } from 'discord.js';
import type { Logger } from '../log.js';
import { SHARD_RESTARTS, ShardExits, type ShardRestartPolicy } from './shard-restarts.js';

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
  /** When an exited shard is started again, and when it is given up on. Default SHARD_RESTARTS. */
  restarts?: ShardRestartPolicy;
  /**
   * A shard given up on while others run is started once more after this long (SHARD_RETRY_SECONDS), and again
   * after each further give-up; with the default 10 minutes its earlier exits have left the restart window by then,
   * so it gets the whole restart policy again. 0 or unset: never.
   */
  retryAfterGiveUpMs?: number;
  /**
   * Called once every shard has been given up on (none runs, none will be started again): the manager has nothing
   * left to do and should exit non-zero, so its supervisor sees the failure.
   */
  onNoShardLeft?: () => void;
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
    // discord.js would fork an exited shard again at once, forever; the 'death' listener below does it instead,
    // after shard-restarts.ts's pause, and gives up on a shard that keeps dying.
    respawn: false,
    execArgv: [...(options.execArgv ?? [])],
  });
  const policy = options.restarts ?? SHARD_RESTARTS;
  let stopping = false;
  const restartTimers = new Set<NodeJS.Timeout>();
  const givenUp = new Set<number>();
  manager.on('shardCreate', (shard: Shard) => {
    const exits = new ShardExits(policy);
    // Mode `process`: the shard's child is a ChildProcess (`shard.process`), never a Worker.
    shard.on('spawn', () => logger.info('shard started', { shard: shard.id, totalShards, shardPid: shard.process?.pid }));
    shard.on('error', (error: unknown) => logger.error('shard error', { shard: shard.id, error }));
    shard.on('ready', () => logger.info('shard ready', { shard: shard.id }));
    shard.on('death', () => {
      if (stopping) return;
      // Emitted before discord.js clears `shard.process`: the child that exited.
      const child = shard.process;
      const exit = { shard: shard.id, code: child?.exitCode, signal: child?.signalCode };
      const decision = exits.record(Date.now());
      const startAgain = (delayMs: number): void => {
        const timer = setTimeout(() => {
          restartTimers.delete(timer);
          if (stopping) return;
          givenUp.delete(shard.id);
          // timeout -1: as at the first start, do not wait for READY.
          shard.spawn(-1).catch((error: unknown) => logger.error('shard could not be started again', { shard: shard.id, error }));
        }, delayMs);
        restartTimers.add(timer);
      };
      if (decision.action === 'give-up') {
        givenUp.add(shard.id);
        const retryMs = options.retryAfterGiveUpMs ?? 0;
        logger.error(
          retryMs > 0
            ? 'shard keeps exiting; giving up on it for now (its servers get no answers until it is tried again)'
            : 'shard keeps exiting; giving up on it (its servers get no answers until the bot is restarted)',
          { ...exit, exits: decision.exitsInWindow, withinMs: policy.windowMs, ...(retryMs > 0 ? { retryInMs: retryMs } : {}) },
        );
        if (givenUp.size === totalShards) {
          options.onNoShardLeft?.();
          return;
        }
        // The others serve on; a cause that goes away (a port freed, a disk remounted) brings this one back.
        if (retryMs > 0) startAgain(retryMs);
        return;
      }
      logger.warn('shard exited; starting it again', { ...exit, inMs: decision.delayMs, exitsInWindow: decision.exitsInWindow });
      startAgain(decision.delayMs);
    });
  });
  logger.info('starting gateway shards', { totalShards, requested: options.totalShards });
  // timeout -1: spawn does not wait for each shard's READY (a scaled bot may wait for its first image worker).
  await manager.spawn({ amount: totalShards, delay: options.spawnDelayMs ?? SHARD_SPAWN_DELAY_MS, timeout: -1 });

  const children = () => [...manager.shards.values()].map((shard) => shard.process).filter(alive);
  const noMoreRestarts = () => {
    stopping = true;
    for (const timer of restartTimers) clearTimeout(timer);
    restartTimers.clear();
  };
  return {
    totalShards,
    async stop() {
      noMoreRestarts();
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
      noMoreRestarts();
      for (const child of children()) child.kill('SIGTERM');
    },
  };
}
