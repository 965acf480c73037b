/** Every slash command the bot has, by name. deploy-commands registers exactly these. */
import help from '../../commands/help.js';
import imagine from '../../commands/imagine.js';
import queue from '../../commands/queue.js';
import settings from '../../commands/settings.js';
import type { Command } from './command.js';

export const COMMANDS: ReadonlyMap<string, Command> = new Map(
  [imagine, queue, settings, help].map((command) => [command.data.name, command]),
);
