/**
 * End-to-end harness: the Discord emulator on 127.0.0.1, the slash commands deployed into it, and the whole bot
 * (startApp: real SQLite journal in a temp dir, fair queue, delivery, real discord.js client over real sockets).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REST, Routes } from 'discord.js';
import { parseConfig, type Config } from '../../src/config.js';
import type { ImageEngine } from '../../src/diffusion/types.js';
import { serializeValue, type Logger } from '../../src/log.js';
import { startApp, type App } from '../../src/app.js';
import { COMMANDS } from '../../commands/index.js';
import { DiscordEmulator, type EmulatorOptions, type RecordedCall } from '../../src/playground/emulator/index.js';

export interface HarnessOptions {
  /** Environment for parseConfig on top of the emulator's token/URL and a temp DATA_DIR. */
  env?: Record<string, string>;
  engine?: ImageEngine;
  emulator?: EmulatorOptions;
  /** Reuse an emulator (restart tests). */
  existingEmulator?: DiscordEmulator;
  /** Reuse a data dir (restart tests). */
  dataDir?: string;
}

export interface Harness {
  emulator: DiscordEmulator;
  app: App;
  config: Config;
  dataDir: string;
  /** Every log line the bot wrote. */
  logs: string[];
  /** Stops the bot (graceful) and, unless it was passed in, the emulator; removes the temp dir. */
  close(options?: { keepEmulator?: boolean; keepData?: boolean }): Promise<void>;
}

export function captureLogger(lines: string[]): Logger {
  const log = (level: string) => (message: string, context?: Record<string, unknown>) => {
    lines.push(`${level} ${message}${context ? ` ${JSON.stringify(serializeValue(context))}` : ''}`);
    if (process.env.E2E_VERBOSE) process.stderr.write(`${level} ${message} ${context ? JSON.stringify(context) : ''}\n`);
  };
  return { debug: log('DEBUG'), info: log('INFO'), warn: log('WARN'), error: log('ERROR') };
}

export async function deployCommands(emulator: DiscordEmulator): Promise<void> {
  const rest = new REST({ api: emulator.apiUrl }).setToken(emulator.token);
  await rest.put(Routes.applicationGuildCommands(emulator.defaults.applicationId, emulator.defaults.guildId), {
    body: [...COMMANDS.values()].map((command) => command.data),
  });
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const emulator = options.existingEmulator ?? (await DiscordEmulator.start(options.emulator));
  const dataDir = options.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'imagine-e2e-'));
  if (!options.existingEmulator) await deployCommands(emulator);
  const config = parseConfig({
    DISCORD_TOKEN: emulator.token,
    DISCORD_API_URL: emulator.apiUrl,
    DATA_DIR: dataDir,
    SAMPLER: 'stand-in',
    STAND_IN_STEP_MS: '100',
    // Tests run many jobs in one channel within seconds; the channel budget has its own test.
    EDITS_PER_CHANNEL_PER_MINUTE: '0',
    ...options.env,
  });
  const logs: string[] = [];
  const app = await startApp(config, {
    engine: options.engine,
    logger: captureLogger(logs),
    clientOptions: { ws: { buildIdentifyThrottler: () => ({ waitForIdentify: async () => {} }) } },
  });
  await new Promise<void>((resolve) => {
    if (app.client.isReady()) resolve();
    else app.client.once('clientReady', () => resolve());
  });
  return {
    emulator,
    app,
    config,
    dataDir,
    logs,
    async close(closeOptions = {}) {
      await app.stop();
      if (!closeOptions.keepEmulator && !options.existingEmulator) await emulator.close();
      if (!closeOptions.keepData && !options.dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Webhook edits of an interaction's reply, in order. */
export function originalEdits(emulator: DiscordEmulator, token: string): RecordedCall[] {
  return emulator.calls.filter(
    (call) => call.method === 'PATCH' && call.params.token === token && call.route.includes('/messages/'),
  );
}

/** Polls `check` until it returns a value other than undefined/false. */
export async function eventually<T>(
  check: () => T | undefined | false,
  timeoutMs = 30_000,
  what: string | (() => string) = 'a condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
