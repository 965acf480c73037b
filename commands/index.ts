/**
 * The slash commands: what a command file exports, what its handler is handed, and the registry of all of them.
 * Commands stay thin: they read options, validate, and hand off to the queue, the settings store or delivery
 * through this context. The files import only the types from here, so the registry below has no cycle.
 */
import help from './help.js';
import imagine from './imagine.js';
import queue from './queue.js';
import settings from './settings.js';
import type { AutocompleteInteraction, ChatInputCommandInteraction, RESTPostAPIChatInputApplicationCommandsJSONBody } from 'discord.js';
import type { Config } from '../src/config.js';
import type { EngineModelListing, ModelInfo } from '../src/diffusion/types.js';
import type { JobMessenger } from '../src/delivery/job-messenger.js';
import type { Logger } from '../src/log.js';
import type { JobQueue } from '../src/queue/types.js';
import type { ModerationLog } from '../src/store/moderation-log.js';
import type { SettingsStore } from '../src/store/settings.js';

/** The bot's parts a handler may use. */
export interface BotContext {
  config: Config;
  queue: JobQueue;
  messenger: JobMessenger;
  settings: SettingsStore;
  /** The loaded model (native size, default scheduler). */
  model: ModelInfo;
  /** Guidance used when /imagine gives none. */
  guidanceDefault: number;
  /** The installed models, the default first (`ImageEngine.models`). */
  models: () => Promise<EngineModelListing[]>;
  logger: Logger;
  /** Blocked and deleted pictures, for /settings audit (safety). */
  moderationLog: ModerationLog;
  /** Whether a channel is age-restricted (a thread: its parent); undefined when it could not be found (safety). */
  channelAgeRestricted: (channelId: string) => Promise<boolean | undefined>;
}

export interface Command {
  /** The definition registered with Discord (deploy-commands). */
  data: RESTPostAPIChatInputApplicationCommandsJSONBody;
  execute(interaction: ChatInputCommandInteraction, bot: BotContext): Promise<void>;
  /** Answers an autocomplete of one of its options (the focused one). */
  autocomplete?(interaction: AutocompleteInteraction, bot: BotContext): Promise<void>;
}

/** Every slash command the bot has, by name. deploy-commands registers exactly these. */
export const COMMANDS: ReadonlyMap<string, Command> = new Map(
  [imagine, queue, settings, help].map((command) => [command.data.name, command]),
);
