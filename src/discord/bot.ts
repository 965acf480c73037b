/** Hooks the command router and the reaction handler to a client. Handler errors are logged, never thrown. */
import { Events, type Client } from 'discord.js';
import type { BotContext, Command } from '../../commands/index.js';
import { handleInteraction } from './interactions.js';
import { NoticeThrottle } from './notice-throttle.js';
import { handleReaction } from './reactions.js';

export function attachHandlers(client: Client, commands: ReadonlyMap<string, Command>, bot: BotContext): void {
  const notices = new NoticeThrottle();
  // A fixed-size model's U is a resize posted at once, outside the queue and its caps: once per picture a minute.
  const resizes = new NoticeThrottle();
  client.on(Events.InteractionCreate, (interaction) => {
    void handleInteraction(interaction, commands, bot, { resizes });
  });
  client.on(Events.MessageReactionAdd, (reaction, user) => {
    handleReaction(reaction, user, bot, client, notices).catch((error: unknown) => {
      bot.logger.error('reaction handler failed', {
        messageId: reaction.message.id,
        emoji: reaction.emoji.name,
        error,
      });
    });
  });
  client.on(Events.Error, (error) => bot.logger.error('client error', { error: error }));
  client.on(Events.Warn, (message) => bot.logger.warn(message));
}
