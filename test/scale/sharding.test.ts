/**
 * Gateway sharding with real processes: the compiled bot (`node dist/src/index.js`, as `npm start` runs it) with
 * DISCORD_SHARDS=2 and REDIS_URL is discord.js's ShardingManager over two shard processes; the compiled image worker
 * (`npm run worker`, SAMPLER=stand-in) makes the pictures through a real redis-server; the emulator speaks the
 * sharded gateway (guild events only to shard `(guild_id >> 22) % 2`).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { REST, Routes } from 'discord.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS } from '../../commands/index.js';
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
