import { MessageFlags, SlashCommandBuilder } from 'discord.js';
import type { Command } from './index.js';

const data = new SlashCommandBuilder().setName('help').setDescription('How to use imagine');

export default {
  data: data.toJSON(),
  async execute(interaction, bot) {
    const settings = interaction.inGuild() ? bot.settings.get(interaction.guildId) : undefined;
    const steps = settings ? ` (${settings.stepsDefault} steps by default, at most ${settings.stepsMax} here)` : '';
    const content = [
      `**/imagine prompt:** makes a picture with the model \`${bot.model.name}\`${steps}.`,
      'Options: `negative` (what to leave out), `steps`, `seed` (same seed, same picture), `guidance`, `scheduler`, `aspect`, ' +
        `\`count\` (several pictures at once, shown as a grid with each one attached${settings ? `; at most ${settings.countMax} here` : ''}), ` +
        '`model` (another installed model: start typing for the list), `image` with `strength` (start from your picture: small strength keeps more of it).',
      'The message shows your place in the queue, then the picture being made.',
      'React ❌ while it waits or runs to cancel it; react 🔁 on a finished picture to make another with a new seed (as many as it had).',
      'Under the pictures: **U1–U4** makes that picture twice as large, **V1–V4** makes variations of it (picture 1 is the top left of the grid).',
      '**/queue** shows your pictures in the queue. **/settings show** lists this server’s rules; moderators change them with `/settings`.',
      'Pictures the model’s safety checker flags follow this server’s safety rule (see /settings show); moderators may delete any finished picture with ❌.',
    ].join('\n');
    await interaction.reply({ content, flags: MessageFlags.Ephemeral });
  },
} satisfies Command;
