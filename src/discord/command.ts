/**
 * What a slash command file exports, and what its handler is handed. Commands stay thin: they read options,
 * validate, and hand off to the queue, the settings store or delivery through this context.
 */
import type { ChatInputCommandInteraction, RESTPostAPIChatInputApplicationCommandsJSONBody } from 'discord.js';
import type { Config } from '../config.js';
import type { ModelInfo } from '../diffusion/types.js';
import type { JobMessenger, Logger } from '../delivery/job-messenger.js';
import type { JobQueue } from '../queue/types.js';
import type { SettingsStore } from '../store/settings.js';

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
  logger: Logger;
}

export interface Command {
  /** The definition registered with Discord (deploy-commands). */
  data: RESTPostAPIChatInputApplicationCommandsJSONBody;
  execute(interaction: ChatInputCommandInteraction, bot: BotContext): Promise<void>;
}
