import { MessageFlags, SlashCommandBuilder } from 'discord.js';
import type { Command } from './index.js';
import { formatDuration, NO_MENTIONS } from '../src/delivery/render.js';
import { echoSnippet, fitLines } from '../src/delivery/text.js';

const data = new SlashCommandBuilder().setName('queue').setDescription('Your pictures in the queue, with place and ETA');

/** Characters of a prompt shown per line (escaped after cutting). */
const SNIPPET_MAX = 60;

export default {
  data: data.toJSON(),
  async execute(interaction, bot) {
    const snapshot = bot.queue.snapshot();
    // This server's jobs only: a member's prompts elsewhere are not this channel's business.
    const mine = [...snapshot.running, ...snapshot.waiting].filter(
      (view) => view.job.userId === interaction.user.id && view.job.guildId === interaction.guildId,
    );
    const lines = mine.map(({ job, position, progress }) => {
      const count = job.params.count ?? 1;
      const pictures = count > 1 ? `${count} pictures, ` : '';
      if (job.state === 'running') {
        const step = progress ? `step ${progress.step}/${progress.totalSteps}` : 'starting';
        return `🎨 running (${pictures}${step}), done in about ${formatDuration(position.doneInMs)}: ${echoSnippet(job.params.prompt, SNIPPET_MAX)}`;
      }
      return `⏳ place ${position.place}${count > 1 ? ` (${count} pictures)` : ''}, starts in about ${formatDuration(position.startsInMs)}: ${echoSnippet(job.params.prompt, SNIPPET_MAX)}`;
    });
    const { totals } = snapshot;
    const summary = `Queue: ${totals.running} running, ${totals.waiting} waiting, from ${totals.members} member${totals.members === 1 ? '' : 's'}.`;
    const content = lines.length === 0 ? `You have nothing in the queue. ${summary}` : fitLines(lines, { footer: summary });
    await interaction.reply({ content, flags: MessageFlags.Ephemeral, allowedMentions: NO_MENTIONS });
  },
} satisfies Command;
