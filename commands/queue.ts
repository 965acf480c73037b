import { MessageFlags, SlashCommandBuilder } from 'discord.js';
import type { Command } from './index.js';
import { formatDuration, NO_MENTIONS } from '../src/delivery/render.js';

const data = new SlashCommandBuilder().setName('queue').setDescription('Your pictures in the queue, with place and ETA');

function snippet(prompt: string): string {
  return prompt.length > 60 ? `${prompt.slice(0, 59)}…` : prompt;
}

export default {
  data: data.toJSON(),
  async execute(interaction, bot) {
    const snapshot = bot.queue.snapshot();
    const mine = [...snapshot.running, ...snapshot.waiting].filter((view) => view.job.userId === interaction.user.id);
    const lines = mine.map(({ job, position, progress }) => {
      if (job.state === 'running') {
        const step = progress ? `step ${progress.step}/${progress.totalSteps}` : 'starting';
        return `🎨 running (${step}), done in about ${formatDuration(position.doneInMs)}: ${snippet(job.params.prompt)}`;
      }
      return `⏳ place ${position.place}, starts in about ${formatDuration(position.startsInMs)}: ${snippet(job.params.prompt)}`;
    });
    const { totals } = snapshot;
    const summary = `Queue: ${totals.running} running, ${totals.waiting} waiting, from ${totals.members} member${totals.members === 1 ? '' : 's'}.`;
    const content = lines.length === 0 ? `You have nothing in the queue. ${summary}` : `${lines.join('\n')}\n${summary}`;
    await interaction.reply({ content, flags: MessageFlags.Ephemeral, allowedMentions: NO_MENTIONS });
  },
} satisfies Command;
