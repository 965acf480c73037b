/**
 * A press on a U or V button under a job's pictures. The button's custom id names the job and the picture
 * (jobs/picture-actions.ts); the job comes from the journal, so a button works on messages from before a
 * restart. Every answer to the member who pressed is ephemeral: the refusal (not theirs, over the cap, a rule
 * changed since), or a line saying what is coming. The new job is posted by delivery as a reply to the pictures.
 *
 * The picture itself is taken from the message the button is on: each picture is one of its attachments
 * (delivery/images.ts `pictureFiles`), and Discord sends that message, with fresh attachment URLs, in every
 * button interaction. So the bot keeps no copy of finished pictures, and the copy it starts from is the one the
 * member saw.
 */
import { MessageFlags, Routes, type ButtonInteraction } from 'discord.js';
import type { BotContext } from '../../commands/index.js';
import { Identifiers, isUserError, UserError } from '../errors.js';
import { enlargeSmall } from '../delivery/images.js';
import { NO_MENTIONS, queuePlace } from '../delivery/render.js';
import { lanczos2x } from '../image/enlarge.js';
import { fetchPicture } from '../image/fetch-picture.js';
import { parsePictureButton, pictureButtonLabel, type PictureButton } from '../jobs/picture-actions.js';
import type { JobRecord } from '../jobs/types.js';
import { canReroll, type MemberAuthority } from '../moderation/permissions.js';
import { assertCanStartFromPicture, pictureActionParams } from '../moderation/request-rules.js';
import { followUpRequest } from './follow-up.js';
import type { NoticeThrottle } from './notice-throttle.js';
import { APOLOGY } from './apology.js';

/** Limits on what a press does outside the queue (whose caps hold everything else). */
export interface PictureButtonThrottles {
  /** A fixed-size model's U (a resize posted at once): keyed by job and picture. */
  resizes: NoticeThrottle;
}

/** The member who pressed, as the permission rules see them (the interaction carries their computed permissions). */
function authorityOf(interaction: ButtonInteraction): MemberAuthority {
  const member = interaction.member;
  const roles = member === null ? [] : Array.isArray(member.roles) ? member.roles : [...member.roles.cache.keys()];
  return { userId: interaction.user.id, permissions: interaction.memberPermissions?.bitfield ?? 0n, roleIds: roles };
}

/** Picture `picture`'s attachment on the job's message: `imagine-<seed + picture>.png` (or `.webp`, `SPOILER_…`). */
function pictureAttachment(interaction: ButtonInteraction, job: JobRecord, picture: number): { url: string; name: string } {
  const seed = (job.params.seed + picture) >>> 0;
  const pattern = new RegExp(`^(SPOILER_)?imagine-${seed}\\.(png|webp)$`);
  const attachment = interaction.message.attachments.find((a) => pattern.test(a.name));
  if (attachment === undefined) {
    throw new UserError(Identifiers.JobNotFound, `Picture ${picture + 1} is no longer attached to this message, so it cannot be used.`);
  }
  return { url: attachment.url, name: attachment.name };
}

/**
 * Answers a U or V press. Returns false when the button is not one of these (the caller ignores it). Never throws:
 * a UserError becomes the member's ephemeral answer, anything else is logged and answered with an apology.
 */
export async function handlePictureButton(interaction: ButtonInteraction, bot: BotContext, throttles: PictureButtonThrottles): Promise<boolean> {
  const button = parsePictureButton(interaction.customId);
  if (button === undefined) return false;
  try {
    // Fetching the picture may take a moment: acknowledge first, privately, so every answer below is ephemeral.
    await interaction.deferReply({ flags: MessageFlags.Ephemeral });
    const answer = await pressPictureButton(interaction, button, bot, throttles);
    await interaction.editReply({ content: answer, allowedMentions: { parse: [] } });
  } catch (error) {
    const expected = isUserError(error);
    if (!expected) bot.logger.error('button failed', { customId: interaction.customId, interactionId: interaction.id, jobId: button.jobId, error });
    const content = expected ? error.message : APOLOGY;
    try {
      if (interaction.deferred || interaction.replied) await interaction.editReply({ content, allowedMentions: { parse: [] } });
      else await interaction.reply({ content, flags: MessageFlags.Ephemeral, allowedMentions: { parse: [] } });
    } catch (replyError) {
      bot.logger.warn('could not answer a button press', { customId: interaction.customId, error: replyError });
    }
  }
  return true;
}

/** Checks the press and queues its job (or, for a fixed-size model's U, posts the enlargement); returns the answer. */
async function pressPictureButton(interaction: ButtonInteraction, button: PictureButton, bot: BotContext, throttles: PictureButtonThrottles): Promise<string> {
  if (!interaction.inGuild()) throw new UserError(Identifiers.NotAllowed, 'These buttons work in servers, not in direct messages.');
  const label = pictureButtonLabel(button);
  const job = bot.queue.get(button.jobId);
  if (job === undefined) {
    throw new UserError(Identifiers.JobNotFound, `${label}: these pictures are no longer in the bot's records. Make them again with /imagine.`);
  }
  if (job.state !== 'done' && job.state !== 'delivering') {
    throw new UserError(Identifiers.InvalidInput, `${label}: these pictures are not finished.`);
  }
  const pictures = job.params.count ?? 1;
  if (button.picture >= pictures) {
    throw new UserError(Identifiers.InvalidInput, `${label}: there are only ${pictures} picture${pictures === 1 ? '' : 's'} here.`);
  }
  const { guildId, channelId } = interaction;
  const settings = bot.settings.get(guildId);
  if (!canReroll(job, authorityOf(interaction), settings)) {
    throw new UserError(
      Identifiers.NotAllowed,
      `Only <@${job.userId}>, who asked for these pictures, and the server's moderators can use ${label} here.`,
    );
  }
  // The same checks as 🔁: today's rules, the original's model, this channel's safety rule.
  const request = await followUpRequest(job, settings, channelId, bot);
  const size = {
    width: job.params.width ?? request.model?.width,
    height: job.params.height ?? request.model?.height,
    fixedSize: request.model?.fixedSize,
    upscaler: request.model?.upscaler,
  };
  if (size.width === undefined || size.height === undefined) {
    throw new UserError(Identifiers.ModelUnavailable, `${label}: the model is not loaded yet, so its size is not known. Try again in a minute.`);
  }
  // A fixed-size model without an upscaler/ cannot make its picture larger: a plain resize, said to be one.
  const resize = button.action === 'upscale' && size.fixedSize === true && size.upscaler === undefined;
  const shaped = resize
    ? undefined
    : pictureActionParams(button.action, job, button.picture, request, settings, {
        width: size.width,
        height: size.height,
        ...(size.fixedSize !== undefined ? { fixedSize: size.fixedSize } : {}),
        ...(size.upscaler !== undefined ? { upscaler: size.upscaler } : {}),
      });
  if (shaped) assertCanStartFromPicture(shaped.params, request.model);
  if (!shaped && !throttles.resizes.allow(`${job.id}:${button.picture}`)) {
    throw new UserError(Identifiers.InvalidInput, `${label}: picture ${button.picture + 1} was just enlarged; see the reply below the pictures.`);
  }
  const source = pictureAttachment(interaction, job, button.picture);
  const { bytes } = await fetchPicture(source.url);

  if (shaped === undefined) {
    // No second pass at another size is possible: an honest 2× resize, said to be one.
    const enlarged = await enlargeSmall(await lanczos2x(bytes, size.width, size.height));
    const spoiler = source.name.startsWith('SPOILER_') ? 'SPOILER_' : '';
    await interaction.client.rest.post(Routes.channelMessages(channelId), {
      body: {
        content:
          `🔍 Picture ${button.picture + 1}, enlarged 2× for <@${interaction.user.id}>: a Lanczos resize, no new detail ` +
          `(this model makes only ${size.width}×${size.height} pictures).`,
        allowed_mentions: NO_MENTIONS,
        message_reference: { message_id: interaction.message.id, fail_if_not_exists: false },
      },
      files: [{ name: `${spoiler}imagine-${(job.params.seed + button.picture) >>> 0}-2x.png`, data: enlarged, contentType: 'image/png' }],
    });
    return `🔍 ${label}: posted below the pictures.`;
  }

  const { params, guildNegative } = shaped;
  const { position } = await bot.queue.submit({
    guildId,
    channelId,
    userId: interaction.user.id,
    params,
    ...(guildNegative !== undefined ? { guildNegative } : {}),
    ...(request.channelNsfw !== undefined ? { channelNsfw: request.channelNsfw } : {}),
    kind: button.action,
    parentJobId: job.id,
    sourcePicture: button.picture,
    initImage: bytes,
    replyToMessageId: interaction.message.id,
  });
  bot.logger.info(`${label} by button`, { parentJobId: job.id, by: interaction.user.id });
  // The reply's own message may be held back by the channel's message limits, and under a burst the job waits
  // behind others: this private line is the member's first and surest word on when it comes.
  const waits = position.place > 1 || position.startsInMs > 0 ? ` (${queuePlace(position.place, position.startsInMs)})` : '';
  return button.action === 'upscale'
    ? `🔍 ${label}: upscaling picture ${button.picture + 1} to ${params.width}×${params.height}${waits}. It will appear as a reply to the pictures.`
    : `🎲 ${label}: making ${params.count ?? 1} variation${(params.count ?? 1) === 1 ? '' : 's'} of picture ${button.picture + 1}${waits}. They will appear as a reply to the pictures.`;
}
