/**
 * The local playground: the Discord emulator on 127.0.0.1 with three members (two members and a moderator),
 * the bot's slash commands registered in it, and the page that acts as their Discord client. The bot connects
 * to it like to Discord (DISCORD_API_URL and a token); app.ts does that, nothing here knows the bot.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PermissionFlagsBits } from 'discord-api-types/v10';
import { ConfigError } from '../config.js';
import type { Logger } from '../log.js';
import { DiscordEmulator } from './emulator/index.js';
import { displayName } from './message-view.js';
import { createPageServer, type PlaygroundMember } from './page-server.js';

export type { PlaygroundMember } from './page-server.js';

export interface PlaygroundOptions {
  /** Port on 127.0.0.1; 0 picks a free one. */
  port: number;
  /** The bot's command definitions (JSON bodies, as `deploy-commands` sends them), registered in the guild. */
  commands: readonly unknown[];
  logger: Logger;
}

export interface Playground {
  /** The page: `http://127.0.0.1:PORT/`. */
  readonly url: string;
  /** What the bot connects with: its DISCORD_TOKEN and DISCORD_API_URL. */
  readonly token: string;
  readonly apiUrl: string;
  readonly members: readonly PlaygroundMember[];
  readonly emulator: DiscordEmulator;
  /** That this is local, and how to run the bot on Discord instead ({@link REAL_DISCORD_HINT}). */
  readonly notice: string;
  /** Resolves once the bot has identified and received its guild. */
  waitForBot(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** What the page and the log say about where this is and how to leave it. */
export const REAL_DISCORD_HINT =
  'This is a local playground: nothing leaves this machine. To run the bot on Discord, put your bot token in .env ' +
  'as DISCORD_TOKEN and run `npm start` again (README: "Your bot on Discord, step by step").';

/** index.html, page.js and page.css: beside this file, or under src/ when this runs from a compiled copy. */
function pageDir(): string {
  const beside = fileURLToPath(new URL('./page/', import.meta.url));
  if (existsSync(path.join(beside, 'index.html'))) return beside;
  return path.resolve('src/playground/page');
}

export async function startPlayground(options: PlaygroundOptions): Promise<Playground> {
  let emulator: DiscordEmulator;
  try {
    emulator = await DiscordEmulator.start({
      port: options.port,
      botUsername: 'imagine',
      guildName: 'imagine playground',
      // As Discord does: an embed's attachment:// image is shown from the upload's URL.
      resolveAttachmentUrls: true,
      logger: options.logger,
    });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new ConfigError(
        `Port ${options.port} on 127.0.0.1 is taken (another playground?): stop it, or set PLAYGROUND_PORT to a free port (0 picks one)`,
      );
    }
    throw error;
  }

  try {
    const { defaults, world } = emulator;
    // The bot counts Manage Server (or a moderator role it was told of) as a moderator, not Discord's
    // Manage Messages that the emulator's default moderator role has.
    const manager = world.createRole(defaults.guildId, { name: 'Server manager', permissions: PermissionFlagsBits.ManageGuild });
    world.addMember(defaults.guildId, defaults.users.moderator.id, [defaults.roles.moderator.id, manager.id]);
    const { alice, bob, moderator } = defaults.users;
    const members: PlaygroundMember[] = [
      { id: alice.id, name: displayName(alice), moderator: false },
      { id: bob.id, name: displayName(bob), moderator: false },
      { id: moderator.id, name: displayName(moderator), moderator: true },
    ];

    // Registered the way `npm run deploy-commands -- --guild` does, through the REST API.
    const response = await fetch(`${emulator.apiUrl}/v10/applications/${defaults.applicationId}/guilds/${defaults.guildId}/commands`, {
      method: 'PUT',
      headers: { authorization: `Bot ${emulator.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(options.commands),
    });
    if (!response.ok) throw new Error(`Registering the commands in the playground failed: ${response.status} ${await response.text()}`);

    const pages = createPageServer({ emulator, members, pageDir: pageDir(), logger: options.logger });
    emulator.servePages(pages.handler);
    return {
      url: `${emulator.baseUrl}/`,
      token: emulator.token,
      apiUrl: emulator.apiUrl,
      members,
      emulator,
      notice: REAL_DISCORD_HINT,
      waitForBot: (timeoutMs = 60_000) => emulator.waitForReady(timeoutMs),
      async close() {
        pages.close();
        await emulator.close();
      },
    };
  } catch (error) {
    await emulator.close();
    throw error;
  }
}
