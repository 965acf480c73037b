/**
 * Gateway sharding with real processes: the compiled bot (`node dist/src/index.js`, as `npm start` runs it) with
 * DISCORD_SHARDS=2 and REDIS_URL is discord.js's ShardingManager over two shard processes; the compiled image worker
 * (`npm run worker`, SAMPLER=stand-in) makes the pictures through a real redis-server; the emulator speaks the
 * sharded gateway (guild events only to shard `(guild_id >> 22) % 2`).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { REST, Routes } from 'discord.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS } from '../../commands/index.js';
import { SHARD_RESTARTS } from '../../src/discord/shard-restarts.js';
import { recommendedShardCount } from '../../src/discord/sharding.js';
import { DiscordEmulator, type InteractionHandle } from '../../src/playground/emulator/index.js';
import { openDatabase } from '../../src/store/database.js';
import { eventually } from '../../tools/discord-emulator/harness.js';
import { HAVE_REDIS, RedisServer } from '../../tools/redis-server.js';
import { processes, type Proc } from './processes.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ENTRY = path.join(ROOT, 'dist', 'src', 'index.js');
const WORKER = path.join(ROOT, 'dist', 'src', 'cli', 'worker.js');

const { run: spawnNode, tempDir, cleanups } = processes('imagine-shard-');

/** A compiled entry from a temp working directory (no developer .env is read). */
function run(script: string, env: Record<string, string>): Proc {
  return spawnNode([script], env);
}

/** pino's JSON lines with `msg`; other output (a shard's stack trace) is skipped. */
function logLines(output: string): Array<Record<string, unknown>> {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
}

/** Whether process `pid` still exists (a zombie counts as gone). */
function running(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** A listening server on 127.0.0.1:`port` (0: any), or undefined where the port is taken. */
async function hold(port: number): Promise<net.Server | undefined> {
  const server = net.createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(undefined));
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

/** Two neighbouring ports held by this test (METRICS_PORT and METRICS_PORT + 1), closed after the test. */
async function holdPortPair(): Promise<[net.Server, net.Server]> {
  for (;;) {
    const low = (await hold(0))!;
    const port = (low.address() as net.AddressInfo).port;
    const high = port < 65_535 ? await hold(port + 1) : undefined;
    if (high) {
      const pair: [net.Server, net.Server] = [low, high];
      cleanups.push(() => Promise.all(pair.map((server) => new Promise((resolve) => server.close(resolve)))));
      return pair;
    }
    low.close();
  }
}

/** The pids of every shard process the manager logged, SIGKILLed after the test if still there (they outlive a killed manager). */
function shardPidsOf(manager: Proc): number[] {
  return logLines(manager.output())
    .filter((line) => line.msg === 'shard started')
    .map((line) => Number(line.shardPid));
}

function killShardsAfter(manager: Proc): void {
  cleanups.push(() => {
    for (const pid of shardPidsOf(manager)) if (running(pid)) process.kill(pid, 'SIGKILL');
  });
}

beforeAll(() => {
  execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'build.mjs'), '--if-stale'], { cwd: ROOT, stdio: 'inherit' });
}, 180_000);

describe('DISCORD_SHARDS configuration', () => {
  it('GIVEN DISCORD_SHARDS=2 without REDIS_URL THEN one clear line and exit code 1', async () => {
    const token = 'MTAwMDAwMDAwMDAwMDAwMDAw.GEmUla.tor-token-for-tests-only-0000000000000';
    const bot = run(ENTRY, { DISCORD_TOKEN: token, DISCORD_SHARDS: '2' });
    expect((await bot.exited).code).toBe(1);
    const lines = bot.output().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^imagine: `DISCORD_SHARDS` needs `REDIS_URL`/);
  });

  it('GIVEN DISCORD_SHARDS=auto THEN the count is GET /gateway/bot through DISCORD_API_URL', async () => {
    const emulator = await DiscordEmulator.start({ shards: 3 });
    cleanups.push(() => emulator.close());
    expect(await recommendedShardCount(emulator.token, emulator.apiUrl)).toBe(3);
  });
});

describe.skipIf(!HAVE_REDIS)('DISCORD_SHARDS=2: the ShardingManager, two shard processes, an image worker, one redis-server', () => {
  it('GIVEN a guild on each shard THEN each shard identifies with its id, /imagine in each guild gets its picture from the shard that holds it, a killed shard comes back, and SIGTERM ends every process, the manager with 0', async () => {
    const server = await RedisServer.start();
    cleanups.push(() => server.close());
    const emulator = await DiscordEmulator.start({ shards: 2 });
    cleanups.push(() => emulator.close());
    const first = { guildId: emulator.defaults.guildId, channelId: emulator.defaults.channelId };
    const firstShard = emulator.shardOf(first.guildId);
    const second = emulator.createGuild({ name: 'Second Guild', shard: 1 - firstShard });
    expect(emulator.shardOf(second.guildId)).toBe(1 - firstShard);
    const guildOn = (shard: number) => (emulator.shardOf(first.guildId) === shard ? first : second);
    const rest = new REST({ api: emulator.apiUrl }).setToken(emulator.token);
    for (const guild of [first, second]) {
      await rest.put(Routes.applicationGuildCommands(emulator.defaults.applicationId, guild.guildId), {
        body: [...COMMANDS.values()].map((command) => command.data),
      });
    }

    const worker = run(WORKER, { REDIS_URL: server.url, SAMPLER: 'stand-in', STAND_IN_STEP_MS: '20', LOG_LEVEL: 'info' });
    const dataDir = tempDir();
    const manager = run(ENTRY, {
      DISCORD_TOKEN: emulator.token,
      DISCORD_API_URL: emulator.apiUrl,
      DISCORD_SHARDS: '2',
      REDIS_URL: server.url,
      DATA_DIR: dataDir,
      STEPS_DEFAULT: '4',
      EDIT_INTERVAL_MS: '300',
      LOG_LEVEL: 'info',
    });
    const said = () => `manager and shards said:\n${manager.output().slice(-4000)}\nworker said:\n${worker.output().slice(-1500)}`;

    // Both shards identify, each with its own id, the count 2.
    await eventually(() => emulator.gateway.allShardsLive || undefined, 90_000, () => `both shards to identify; ${said()}`);
    expect([...emulator.identifiedShards].map((shard) => [...shard]).sort()).toEqual([
      [0, 2],
      [1, 2],
    ]);
    const started = logLines(manager.output()).filter((line) => line.msg === 'shard started');
    expect(started.map((line) => line.shard).sort()).toEqual([0, 1]);
    const shardPids = started.map((line) => Number(line.shardPid));

    // /imagine in each guild: the event reaches only the shard that holds the guild, which answers with a picture.
    const handles: InteractionHandle[] = [first, second].map((guild, index) =>
      emulator.sendCommand({ name: 'imagine', guildId: guild.guildId, channelId: guild.channelId, options: { prompt: `a picture in guild ${index}`, seed: 7 } }),
    );
    for (const handle of handles) {
      expect((await handle.waitForResponse(30_000)).body.type).toBe(5);
      await eventually(
        () => handle.original()?.message.attachments.some((attachment) => attachment.filename.startsWith('imagine-')),
        90_000,
        () => `the picture; ${said()}`,
      );
    }

    // A shard process that dies is started again by the manager, and identifies again with its id.
    const victim = started.find((line) => line.shard === 1)!;
    process.kill(Number(victim.shardPid), 'SIGKILL');
    await eventually(
      () => logLines(manager.output()).filter((line) => line.msg === 'shard started' && line.shard === 1).length === 2 || undefined,
      60_000,
      () => `shard 1 to be started again; ${said()}`,
    );
    expect(logLines(manager.output()).some((line) => line.msg === 'shard exited; starting it again' && line.shard === 1)).toBe(true);
    await eventually(() => (emulator.identifiedShards.length === 3 && emulator.gateway.allShardsLive) || undefined, 60_000, () => `shard 1 to identify again; ${said()}`);
    expect([...emulator.identifiedShards[2]!]).toEqual([1, 2]);
    const again = emulator.sendCommand({ name: 'imagine', guildId: guildOn(1).guildId, channelId: guildOn(1).channelId, options: { prompt: 'after the restart' } });
    await eventually(
      () => again.original()?.message.attachments.some((attachment) => attachment.filename.startsWith('imagine-')),
      90_000,
      () => `the picture after shard 1 restarted; ${said()}`,
    );
    shardPids.push(...logLines(manager.output()).filter((line) => line.msg === 'shard started').slice(2).map((line) => Number(line.shardPid)));

    // SIGTERM to the manager: it passes SIGTERM on, every shard stops gracefully, the manager exits 0.
    manager.child.kill('SIGTERM');
    expect(await manager.exited).toEqual({ code: 0, signal: null });
    for (const pid of shardPids) expect(running(pid), `shard process ${pid} still running; ${said()}`).toBe(false);
    expect(logLines(manager.output()).some((line) => line.msg === 'every shard stopped')).toBe(true);
    worker.child.kill('SIGTERM');
    expect((await worker.exited).code).toBe(0);

    // One DATA_DIR for both shard processes: each journaled (and delivered) the job of its own guild.
    const db = openDatabase({ dataDir });
    try {
      const jobs = db.prepare('SELECT guild_id AS guildId, owner, state FROM jobs').all() as Array<{ guildId: string; owner: string; state: string }>;
      const row = (guildId: string) => `${guildId} shard-${emulator.shardOf(guildId)} done`;
      expect(jobs.map((job) => `${job.guildId} ${job.owner} ${job.state}`).sort()).toEqual(
        [row(first.guildId), row(second.guildId), row(guildOn(1).guildId)].sort(),
      );
    } finally {
      db.close();
    }
  }, 240_000);
});

describe.skipIf(!HAVE_REDIS)('DISCORD_SHARDS=2: shards that die, and a manager that dies', () => {
  /** A redis-server, the emulator with two shards, an image worker, and the manager with `env` on top. */
  async function shardedBot(env: Record<string, string> = {}) {
    const server = await RedisServer.start();
    cleanups.push(() => server.close());
    const emulator = await DiscordEmulator.start({ shards: 2 });
    cleanups.push(() => emulator.close());
    const worker = run(WORKER, { REDIS_URL: server.url, SAMPLER: 'stand-in', STAND_IN_STEP_MS: '20', LOG_LEVEL: 'info' });
    const manager = run(ENTRY, {
      DISCORD_TOKEN: emulator.token,
      DISCORD_API_URL: emulator.apiUrl,
      DISCORD_SHARDS: '2',
      REDIS_URL: server.url,
      DATA_DIR: tempDir(),
      LOG_LEVEL: 'info',
      ...env,
    });
    killShardsAfter(manager);
    const said = () => `manager and shards said:\n${manager.output().slice(-4000)}\nworker said:\n${worker.output().slice(-1500)}`;
    const lines = (msg: string, shard: number) => logLines(manager.output()).filter((line) => line.msg === msg && line.shard === shard);
    return { emulator, worker, manager, said, lines };
  }

  const RESTARTING = 'shard exited; starting it again';
  const GIVING_UP = /^shard keeps exiting; giving up on it/;

  it('GIVEN shard 1 dies at every start (its metrics port, METRICS_PORT + 1, is taken) THEN it is restarted with growing pauses, given up on after maxExits with one error line, and shard 0 serves on', async () => {
    const [low, high] = await holdPortPair();
    const metricsPort = (low.address() as net.AddressInfo).port;
    // Shard 0 listens on METRICS_PORT itself: free it; shard 1's port stays held by this test.
    await new Promise((resolve) => low.close(resolve));
    expect((high.address() as net.AddressInfo).port).toBe(metricsPort + 1);
    const { emulator, manager, said, lines } = await shardedBot({ METRICS_PORT: String(metricsPort), METRICS_HOST: '127.0.0.1' });

    const gaveUp = () => logLines(manager.output()).filter((line) => typeof line.msg === 'string' && GIVING_UP.test(line.msg));
    await eventually(() => gaveUp().length > 0 || undefined, 150_000, () => `shard 1 to be given up on; ${said()}`);
    expect(gaveUp()).toHaveLength(1);
    expect(gaveUp()[0]).toMatchObject({ level: 50, shard: 1, exits: SHARD_RESTARTS.maxExits, withinMs: SHARD_RESTARTS.windowMs });
    expect(manager.output()).toMatch(/EADDRINUSE/);
    // Started maxExits times in all, with a restart (and a longer pause each time) between two of them.
    expect(lines('shard started', 1)).toHaveLength(SHARD_RESTARTS.maxExits);
    const pauses = lines(RESTARTING, 1).map((line) => Number(line.inMs));
    expect(pauses).toHaveLength(SHARD_RESTARTS.maxExits - 1);
    for (let n = 1; n < pauses.length; n++) expect(pauses[n]).toBeGreaterThan(pauses[n - 1]!);

    // Shard 0 was never restarted and is live on the gateway; shard 1 never identified.
    await eventually(() => emulator.identifiedShards.length > 0 || undefined, 60_000, () => `shard 0 to identify; ${said()}`);
    expect(emulator.identifiedShards.map((shard) => [...shard])).toEqual([[0, 2]]);
    expect(lines('shard started', 0)).toHaveLength(1);
    expect(manager.child.exitCode).toBe(null);

    // SIGTERM stops shard 0 and the manager cleanly; shard 1 was not started again meanwhile.
    manager.child.kill('SIGTERM');
    expect(await manager.exited).toEqual({ code: 0, signal: null });
    expect(lines('shard started', 1)).toHaveLength(SHARD_RESTARTS.maxExits);
  }, 240_000);

  it('GIVEN shard 1 given up on and SHARD_RETRY_SECONDS=2 THEN once the cause is gone (its port freed) it is tried again and identifies, the bot never restarted', async () => {
    const [low, high] = await holdPortPair();
    const metricsPort = (low.address() as net.AddressInfo).port;
    await new Promise((resolve) => low.close(resolve));
    const { emulator, manager, said, lines } = await shardedBot({
      METRICS_PORT: String(metricsPort),
      METRICS_HOST: '127.0.0.1',
      SHARD_RETRY_SECONDS: '2',
    });

    const gaveUp = () => logLines(manager.output()).filter((line) => typeof line.msg === 'string' && GIVING_UP.test(line.msg));
    await eventually(() => gaveUp().length > 0 || undefined, 150_000, () => `shard 1 to be given up on; ${said()}`);
    expect(gaveUp()[0]).toMatchObject({ level: 50, shard: 1, exits: SHARD_RESTARTS.maxExits, retryInMs: 2000 });
    // The cause goes away. A try that came before this dies again and is given up on again, 2 s more.
    await new Promise((resolve) => high.close(resolve));

    await eventually(() => emulator.identifiedShards.some((shard) => shard[0] === 1) || undefined, 120_000, () => `shard 1 to identify; ${said()}`);
    expect(lines('shard started', 1).length).toBeGreaterThan(SHARD_RESTARTS.maxExits);
    expect(lines('shard started', 0)).toHaveLength(1);
    expect(manager.child.exitCode).toBe(null);
    manager.child.kill('SIGTERM');
    expect(await manager.exited).toEqual({ code: 0, signal: null });
  }, 240_000);

  it('GIVEN both shards die at every start (METRICS_PORT and METRICS_PORT + 1 taken) THEN both are given up on and the manager exits 1', async () => {
    const [low] = await holdPortPair();
    const metricsPort = (low.address() as net.AddressInfo).port;
    const { manager, said, lines } = await shardedBot({ METRICS_PORT: String(metricsPort), METRICS_HOST: '127.0.0.1' });

    const exited = await Promise.race([manager.exited, new Promise((resolve) => setTimeout(resolve, 200_000, 'still running'))]);
    expect(exited, said()).toEqual({ code: 1, signal: null });
    for (const shard of [0, 1]) {
      expect(lines('shard started', shard)).toHaveLength(SHARD_RESTARTS.maxExits);
      expect(logLines(manager.output()).filter((line) => line.shard === shard && GIVING_UP.test(String(line.msg)))).toHaveLength(1);
    }
    expect(logLines(manager.output()).at(-1)).toMatchObject({ level: 50, msg: 'no shard left running; the manager exits with code 1' });
  }, 240_000);

  it('GIVEN the manager is SIGKILLed THEN its shard processes notice the closed IPC channel and exit on their own', async () => {
    const { emulator, manager, said } = await shardedBot();
    await eventually(() => emulator.gateway.allShardsLive || undefined, 90_000, () => `both shards to identify; ${said()}`);
    const pids = shardPidsOf(manager);
    expect(pids).toHaveLength(2);
    for (const pid of pids) expect(running(pid)).toBe(true);

    manager.child.kill('SIGKILL');
    expect(await manager.exited).toEqual({ code: null, signal: 'SIGKILL' });
    // Nobody reaps the orphans here (they are re-parented): gone means no /proc entry or a zombie.
    await eventually(() => pids.every((pid) => !running(pid)) || undefined, 60_000, () => `the shards ${pids.join(', ')} to exit; ${said()}`);
    // Each stopped through its graceful path, not the fatal one.
    expect(manager.output()).toMatch(/parent process is gone/);
    expect(manager.output()).not.toMatch(/uncaught exception/);
  }, 180_000);
});
