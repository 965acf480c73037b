import { InteractionContextType, SlashCommandBuilder } from 'discord.js';
import { SCHEDULER_NAMES } from '../src/diffusion/types.js';
import { Identifiers, UserError } from '../src/errors.js';
import type { Command } from './index.js';
import { ASPECTS, GUIDANCE_MAX, GUIDANCE_MIN, PROMPT_MAX_LENGTH, SEED_MAX } from '../src/jobs/generate-params.js';
import { assertCanStartFromPicture, chooseModel, modelSuggestions, paramsUnderGuildRules } from '../src/moderation/request-rules.js';
import { assertRequestAllowed } from '../src/moderation/safety-rules.js';
import { COUNT_HARD_CAP } from '../src/store/settings.js';
import { fetchAttachedPicture } from '../src/image/fetch-picture.js';

const data = new SlashCommandBuilder()
  .setName('imagine')
  .setDescription('Make a picture from a text prompt')
  .setContexts(InteractionContextType.Guild)
  .addStringOption((option) =>
    option.setName('prompt').setDescription('What the picture shows').setRequired(true).setMaxLength(PROMPT_MAX_LENGTH),
  )
  .addStringOption((option) =>
    option.setName('negative').setDescription('What the picture should not show').setMaxLength(PROMPT_MAX_LENGTH),
  )
  .addIntegerOption((option) =>
    option.setName('steps').setDescription('Denoising steps: more is slower and finer (the server sets a maximum)').setMinValue(1).setMaxValue(1000),
  )
  .addIntegerOption((option) =>
    option.setName('seed').setDescription('Same seed and settings, same picture').setMinValue(0).setMaxValue(SEED_MAX),
  )
  .addNumberOption((option) =>
    option.setName('guidance').setDescription('How closely to follow the prompt (0 turns guidance off)').setMinValue(GUIDANCE_MIN).setMaxValue(GUIDANCE_MAX),
  )
  .addStringOption((option) =>
    option
      .setName('scheduler')
      .setDescription('Sampling algorithm (default: the model’s own)')
      .addChoices(...SCHEDULER_NAMES.map((name) => ({ name, value: name }))),
  )
  .addStringOption((option) =>
    option
      .setName('aspect')
      .setDescription('Shape of the picture (default: square)')
      .addChoices(...Object.entries(ASPECTS).map(([value, { label }]) => ({ name: label, value }))),
  )
  .addIntegerOption((option) =>
    option.setName('count').setDescription('How many pictures, shown as a grid (the server sets a maximum)').setMinValue(1).setMaxValue(COUNT_HARD_CAP),
  )
  // Several models (issue 12): the installed ones, suggested as the member types.
  .addStringOption((option) =>
    option.setName('model').setDescription('Which model makes it (default: this channel’s or server’s)').setAutocomplete(true).setMaxLength(100),
  )
  // img2img (issue 13): start from the member's picture.
  .addAttachmentOption((option) => option.setName('image').setDescription('Start from this picture (PNG, JPEG or WebP, at most 10 MB)'))
  .addNumberOption((option) =>
    option.setName('strength').setDescription('With image: how far to move from it, 0–1 (default 0.8; small keeps the picture)').setMinValue(0).setMaxValue(1),
  );

/** parse options → validate → enqueue → defer; the queue's events and delivery do the rest. */
export default {
  data: data.toJSON(),
  async execute(interaction, bot) {
    if (!interaction.inGuild()) {
      throw new UserError(Identifiers.NotAllowed, '/imagine works in servers, not in direct messages.');
    }
    const settings = bot.settings.get(interaction.guildId);
    const { options } = interaction;
    const model = chooseModel(options.getString('model'), settings, interaction.channelId, await bot.models());
    // Checked before anything is queued or acknowledged, so refusals can be ephemeral.
    const request = paramsUnderGuildRules(
      {
        prompt: options.getString('prompt'),
        negative: options.getString('negative'),
        steps: options.getInteger('steps'),
        seed: options.getInteger('seed'),
        guidance: options.getNumber('guidance'),
        scheduler: options.getString('scheduler'),
        aspect: options.getString('aspect'),
        count: options.getInteger('count'),
        image: options.getAttachment('image') !== null,
        strength: options.getNumber('strength'),
      },
      settings,
      {
        model: model.isDefault ? bot.model : model.info,
        ...(model.isDefault ? {} : { modelName: model.name }),
        ...(model.defaults ? { modelDefaults: model.defaults } : {}),
        guidanceDefault: bot.guidanceDefault,
      },
    );
    // The member's picture, fetched (size, type and time limits) before anything is queued, so a refusal is ephemeral.
    const attached = options.getAttachment('image');
    if (attached !== null) assertCanStartFromPicture(request.params, model.isDefault ? bot.model : model.info);
    const initImage = attached === null ? undefined : (await fetchAttachedPicture(attached)).bytes;
    // Recorded on the job, so delivery applies the safety rule of this channel even after a restart.
    const channelNsfw = await bot.channelAgeRestricted(interaction.channelId);
    assertRequestAllowed({
      mode: settings.safetyMode,
      refuseUnchecked: settings.refuseUnchecked,
      channelNsfw,
      modelChecked: (model.isDefault ? bot.model.safetyChecker : (model.info?.safetyChecker ?? model.safetyChecker)) === true,
    });

    // Submitting is a SQLite write (embedded) or a Redis round trip (scaled), milliseconds either way, so a full
    // queue is still refused ephemerally; the reply is edited only once the defer below has landed.
    const release = bot.messenger.hold(interaction.token, interaction.attachmentSizeLimit);
    let jobId: string;
    try {
      ({
        job: { id: jobId },
      } = await bot.queue.submit({
        guildId: interaction.guildId,
        channelId: interaction.channelId,
        userId: interaction.user.id,
        params: request.params,
        ...(request.guildNegative !== undefined ? { guildNegative: request.guildNegative } : {}),
        ...(channelNsfw !== undefined ? { channelNsfw } : {}),
        kind: 'imagine',
        ...(initImage !== undefined ? { initImage } : {}),
        interaction: {
          applicationId: interaction.applicationId,
          token: interaction.token,
          createdAt: interaction.createdTimestamp,
        },
      }));
    } catch (error) {
      release(false);
      throw error;
    }
    try {
      const response = await interaction.deferReply({ withResponse: true });
      // The reply's id, known now: past the token, the picture is posted as a reply to it.
      const messageId = response.interaction.responseMessageId ?? response.resource?.message?.id;
      if (messageId) bot.queue.setMessageId(jobId, messageId);
      release(true);
    } catch (error) {
      // Past Discord's 3 seconds: the job goes on and is shown as a channel message instead.
      release(false);
      bot.logger.warn('could not defer /imagine; the job will post to the channel', { error: error });
    }
  },
  async autocomplete(interaction, bot) {
    const focused = interaction.options.getFocused(true);
    if (focused.name !== 'model' || !interaction.inGuild()) return interaction.respond([]);
    await interaction.respond(modelSuggestions(String(focused.value), bot.settings.get(interaction.guildId), await bot.models()));
  },
} satisfies Command;
