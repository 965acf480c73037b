/**
 * Routes slash commands to their files, and U/V button presses to picture-buttons.ts. Expected problems (UserError) are answered ephemerally in one line;
 * anything else is logged with the command and job id and the member gets a short apology. Nothing a handler
 * throws leaves this function.
 */
import { MessageFlags, type Interaction } from 'discord.js';
import { isUserError } from '../errors.js';
import type { BotContext, Command } from '../../commands/index.js';

import { APOLOGY } from './apology.js';
import { NoticeThrottle } from './notice-throttle.js';
import { handlePictureButton, type PictureButtonThrottles } from './picture-buttons.js';

export { APOLOGY };

export async function handleInteraction(
  interaction: Interaction,
  commands: ReadonlyMap<string, Command>,
  bot: BotContext,
  throttles: PictureButtonThrottles = { resizes: new NoticeThrottle() },
): Promise<void> {
  if (interaction.isAutocomplete()) {
    // Suggestions only: a failure answers nothing (the member's client shows no choices), it is logged.
    try {
      await commands.get(interaction.commandName)?.autocomplete?.(interaction, bot);
    } catch (error) {
      bot.logger.warn('autocomplete failed', { command: interaction.commandName, error });
    }
    return;
  }
  if (interaction.isButton()) {
    // U and V under pictures; a button of no known kind is left unanswered (Discord tells the member it failed).
    if (!(await handlePictureButton(interaction, bot, throttles))) bot.logger.warn('unknown button', { customId: interaction.customId });
    return;
  }
  if (!interaction.isChatInputCommand()) return;
  const command = commands.get(interaction.commandName);
  try {
    if (!command) throw new Error(`No handler for /${interaction.commandName} (deploy-commands out of date?)`);
    await command.execute(interaction, bot);
  } catch (error) {
    const expected = isUserError(error);
    if (!expected) {
      bot.logger.error('command failed', {
        command: interaction.commandName,
        interactionId: interaction.id,
        jobId: (error as { jobId?: string } | null)?.jobId,
        error,
      });
    }
    const content = expected ? error.message : APOLOGY;
    try {
      if (interaction.deferred || interaction.replied) {
        await interaction.followUp({ content, flags: MessageFlags.Ephemeral, allowedMentions: { parse: [] } });
      } else {
        await interaction.reply({ content, flags: MessageFlags.Ephemeral, allowedMentions: { parse: [] } });
      }
    } catch (replyError) {
      bot.logger.warn('could not tell the member about an error', {
        command: interaction.commandName,
        error: replyError,
      });
    }
  }
}
