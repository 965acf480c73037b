/**
 * The bot as a real process, compiled, as `npm start` runs it (`node dist/src/index.js`, worker threads on
 * dist/…/worker.js, no tsx), against the emulator: config errors, SIGKILL mid-generation (every job delivered
 * exactly once after the restart), and SIGTERM (exit 0, the next start carries on).
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { DiscordEmulator, type InteractionHandle } from '../../src/playground/emulator/index.js';
import { deployCommands, eventually } from '../../tools/discord-emulator/harness.js';
import { processes, type Proc } from '../scale/processes.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
// npm's own process would stand between a signal and the bot: run what `npm start` runs after its build step.
const ENTRY = path.join(ROOT, 'dist', 'src', 'index.js');
const DEPLOY = path.join(ROOT, 'dist', 'src', 'cli', 'deploy-commands.js');

// `npm start`'s build step: compiles when dist/ is missing or older than the sources, else does nothing.
beforeAll(() => {
  execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'build.mjs'), '--if-stale'], { cwd: ROOT, stdio: 'inherit' });
}, 180_000);

// Every process is SIGKILLed after its test if still running, and its temp dirs removed.
const { run, tempDir, cleanups } = processes('imagine-proc-');

/** Runs the compiled bot (as `npm start` does) from a temp working directory, so no developer .env is read. */
function spawnBot(env: Record<string, string>, cwd: string, script = ENTRY, args: string[] = []): Proc {
  return run([script, ...args], env, cwd);
}

/** Whether process `pid` (a /proc entry) has `parent` as its parent; false once it is gone. */
function childOf(pid: string, parent: number): boolean {
  try {
    return Number(/^PPid:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) === parent;
  } catch {
    return false;
  }
}

async function waitForOutput(bot: Proc, pattern: RegExp, timeoutMs = 60_000): Promise<void> {
  await eventually(() => pattern.test(bot.output()), timeoutMs, () => `bot output ${pattern}; got:\n${bot.output().slice(-2000)}`);
}

describe('configuration errors', () => {
  it.each([
    ['a malformed token', { DISCORD_TOKEN: 'not-a-token' }, /^imagine: DISCORD_TOKEN does not look like a bot token/],
    ['a bad number', { DISCORD_TOKEN: 'MTAwMDAwMDAwMDAwMDAwMDAw.GEmUla.tor-token-for-tests-only-0000000000000', SAMPLER_WORKERS: 'two' }, /^imagine: Expected `SAMPLER_WORKERS`/],
  ])('GIVEN %s THEN one clear line and exit code 1', async (_label, env, pattern) => {
    const bot = spawnBot(env as Record<string, string>, tempDir());
    const { code } = await bot.exited;
    expect(code).toBe(1);
    const lines = bot.output().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(pattern);
  });
});

describe('no token: the local playground', () => {
  it('GIVEN no DISCORD_TOKEN THEN the log says so, the page URL is printed and served, and SIGTERM ends it with 0', async () => {
    const bot = spawnBot({ PLAYGROUND_PORT: '0', SAMPLER: 'stand-in' }, tempDir());
    await waitForOutput(bot, /imagine playground: http:\/\/127\.0\.0\.1:\d+\//);
    expect(bot.output()).toMatch(/no DISCORD_TOKEN: starting the local playground/);
    expect(bot.output()).toMatch(/To run the bot on Discord, put your bot token in \.env as DISCORD_TOKEN/);
    const url = /imagine playground: (http:\S+)/.exec(bot.output())![1]!;
    expect((await fetch(url)).headers.get('content-type')).toContain('text/html');
    bot.child.kill('SIGTERM');
    expect((await bot.exited).code).toBe(0);
  });

  it('GIVEN the playground port is taken THEN one clear line and exit code 1', async () => {
    const emulator = await DiscordEmulator.start();
    cleanups.push(() => emulator.close());
    const bot = spawnBot({ PLAYGROUND_PORT: String(emulator.port), SAMPLER: 'stand-in' }, tempDir());
    expect((await bot.exited).code).toBe(1);
    expect(bot.output()).toMatch(new RegExp(`^imagine: Port ${emulator.port} on 127\\.0\\.0\\.1 is taken .*PLAYGROUND_PORT`, 'm'));
    expect(bot.output()).not.toMatch(/\n\s+at /);
  });

  it('GIVEN deploy-commands with no token THEN one clear line and exit code 1', async () => {
    const deploy = spawnBot({}, tempDir(), DEPLOY);
    expect((await deploy.exited).code).toBe(1);
    expect(deploy.output().trim()).toMatch(/^deploy-commands: DISCORD_TOKEN is missing/);
  });
});

describe('an older Node', () => {
  it('GIVEN Node 18 THEN one line names the minimum, exit code 1, before the config or any dependency is read', async () => {
    // Node 18 is not installed here: the bot is told it runs on one, before its first module runs.
    const pretend = `data:text/javascript,Object.defineProperty(process.versions, 'node', { value: '18.19.0' })`;
    const child = spawn(process.execPath, ['--import', pretend, ENTRY], { cwd: tempDir(), env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (chunk) => (output += chunk));
    child.stderr!.on('data', (chunk) => (output += chunk));
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(code).toBe(1);
    expect(output).toBe('imagine needs Node.js 20.9.0 or newer, and this is 18.19.0: install a current LTS release (https://nodejs.org)\n');
  });
});

describe('deploy-commands', () => {
  it('GIVEN --guild ID THEN the four commands are registered in that server; without it, globally', async () => {
    const emulator = await DiscordEmulator.start();
    cleanups.push(() => emulator.close());
    const env = { DISCORD_TOKEN: emulator.token, DISCORD_API_URL: emulator.apiUrl };
    const guild = spawnBot(env, tempDir(), DEPLOY, ['--guild', emulator.defaults.guildId]);
    expect((await guild.exited).code).toBe(0);
    expect(guild.output()).toMatch(/Registered 4 commands in server \d+: \/imagine, \/queue, \/settings, \/help/);
    expect(emulator.commands(emulator.defaults.guildId).map((c) => c.name).sort()).toEqual(['help', 'imagine', 'queue', 'settings']);
    const global = spawnBot(env, tempDir(), DEPLOY);
    expect((await global.exited).code).toBe(0);
    expect(emulator.commands().map((c) => c.name).sort()).toEqual(['help', 'imagine', 'queue', 'settings']);
  });

  it('GIVEN a bad --guild THEN one line and exit code 1', async () => {
    const bad = spawnBot({ DISCORD_TOKEN: 'MTAwMDAwMDAwMDAwMDAwMDAw.GEmUla.tor-token-for-tests-only-0000000000000' }, tempDir(), DEPLOY, ['--guild', 'abc']);
    expect((await bad.exited).code).toBe(1);
    expect(bad.output().trim()).toBe('deploy-commands: Expected `--guild` to be a server id (17 to 20 digits), got `abc`');
  });
});

describe('the bot process against the emulator', () => {
  async function setup() {
    const emulator = await DiscordEmulator.start();
    cleanups.push(() => emulator.close());
    await deployCommands(emulator);
    const dataDir = tempDir();
    const env = {
      DISCORD_TOKEN: emulator.token,
      DISCORD_API_URL: emulator.apiUrl,
      DATA_DIR: dataDir,
      SAMPLER: 'stand-in',
      STAND_IN_STEP_MS: '100',
      EDIT_INTERVAL_MS: '300',
      QUEUE_MAX_PER_MEMBER: '10',
      EDITS_PER_CHANNEL_PER_MINUTE: '0',
    };
    return { emulator, env, cwd: tempDir() };
  }

  function finals(emulator: DiscordEmulator, prompt: string) {
    return emulator.messages(emulator.defaults.channelId).filter((m) => m.message.embeds[0]?.description === prompt);
  }

  it('GIVEN SIGKILL mid-generation THEN after a restart every job is delivered exactly once', async () => {
    const { emulator, env, cwd } = await setup();
    const first = spawnBot(env, cwd);
    await waitForOutput(first, /"msg":"ready"/);

    const prompts = ['kill one', 'kill two', 'kill three', 'kill four'];
    const handles: InteractionHandle[] = [];
    for (const prompt of prompts) {
      const handle = emulator.sendCommand({ name: 'imagine', options: { prompt, steps: 30 } });
      expect((await handle.waitForResponse()).body.type).toBe(5);
      handles.push(handle);
    }
    // The first picture is delivered and the second is part-way through: kill now.
    await eventually(() => finals(emulator, 'kill one').length === 1, 60_000, () => `the first picture; bot:\n${first.output().slice(-3000)}`);
    // Any step from 2 to 29 of 30 is "mid-run": a wide window, so a slow machine cannot miss it.
    await eventually(() => /Step ([2-9]|1\d|2\d)\/30/.test(String(handles[1]!.original()?.message.content)), 60_000, () => `the second job mid-run; bot:\n${first.output().slice(-3000)}`);
    first.child.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');

    const second = spawnBot(env, cwd);
    await waitForOutput(second, /"msg":"ready"/);
    for (const prompt of prompts) {
      await eventually(() => finals(emulator, prompt).length >= 1, 90_000, () => `the picture for "${prompt}"; bot:\n${second.output().slice(-3000)}`);
    }
    // Give a duplicate time to show up if there were one.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    for (const prompt of prompts) expect(finals(emulator, prompt)).toHaveLength(1);
    // Every picture landed on its own interaction's reply, once.
    prompts.forEach((prompt, i) => expect(handles[i]!.original()?.message.embeds[0]?.description).toBe(prompt));
    second.child.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
  });

  it('GIVEN SIGTERM with jobs waiting THEN members are told their place is kept, exit 0, and the next start finishes them', async () => {
    const { emulator, env, cwd } = await setup();
    const first = spawnBot(env, cwd);
    await waitForOutput(first, /"msg":"ready"/);
    const prompts = ['term one', 'term two', 'term three'];
    const handles: InteractionHandle[] = [];
    for (const prompt of prompts) {
      const handle = emulator.sendCommand({ name: 'imagine', options: { prompt, steps: 30 } });
      await handle.waitForResponse();
      handles.push(handle);
    }
    await eventually(() => String(handles[0]!.original()?.message.content).includes('Step'), 30_000, 'the first job running');
    await eventually(() => String(handles[2]!.original()?.message.content).includes('Waiting'), 30_000, 'the last job shown waiting');
    first.child.kill('SIGTERM');
    const { code } = await first.exited;
    expect(code).toBe(0);
    for (const handle of handles.slice(1)) {
      expect(handle.original()?.message.content).toMatch(/restarting; your place in the queue is kept/);
    }

    const second = spawnBot(env, cwd);
    await waitForOutput(second, /"msg":"ready"/);
    for (const prompt of prompts) {
      await eventually(() => finals(emulator, prompt).length >= 1, 90_000, () => `the picture for "${prompt}"; bot:\n${second.output().slice(-3000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
    for (const prompt of prompts) expect(finals(emulator, prompt)).toHaveLength(1);
    second.child.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
  });

  it('GIVEN the default engine (ONNX worker pool) and the tiny model THEN the compiled bot is healthy and answers /imagine with a picture', async () => {
    const { emulator, env, cwd } = await setup();
    const bot = spawnBot({ ...env, SAMPLER: 'workers', MODEL_DIR: path.join(ROOT, 'test/fixtures/models/sd-tiny'), METRICS_PORT: '0' }, cwd);
    await waitForOutput(bot, /"msg":"ready"/, 90_000);
    // Compiled: the worker thread runs dist/…/worker.js with plain node, no transpiler process beside the bot.
    if (process.platform === 'linux') {
      const children = fs.readdirSync('/proc').filter((pid) => /^\d+$/.test(pid) && childOf(pid, bot.child.pid!));
      expect(children).toEqual([]);
    }
    const healthUrl = /"health":"(http:\/\/127\.0\.0\.1:\d+\/healthz)"/.exec(bot.output())![1]!;
    await eventually(() => bot.output().includes('"msg":"connected"'), 30_000, 'the gateway connected');
    const health = await fetch(healthUrl);
    expect({ status: health.status, body: await health.json() }).toEqual({ status: 200, body: { status: 'ok', gateway: true, journal: true, engine: true } });
    // The owner gets the invite link with exactly the permissions the bot needs (1024+2048+16384+32768+64+65536).
    await waitForOutput(bot, /"invite":"[^"]*scope=bot\+applications\.commands&permissions=117824".*"msg":"connected"/);
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'from the worker', steps: 10 } });
    expect((await handle.waitForResponse()).body.type).toBe(5);
    await eventually(() => finals(emulator, 'from the worker').length === 1, 90_000, 'the picture');
    const fields = Object.fromEntries(finals(emulator, 'from the worker')[0]!.message.embeds[0]!.fields!.map((f) => [f.name, f.value]));
    expect(fields.Model).toBe('sd-tiny');
    bot.child.kill('SIGINT');
    expect((await bot.exited).code).toBe(0);
  });
});
