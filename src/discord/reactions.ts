/**
 * 🔁 and ❌ on the bot's messages. Jobs are found through the journal by message id, so this works on messages
 * the client never cached and after a restart; parameters are never read back from the message text. ❌ cancels
 * a waiting or running job (its requester or a moderator) and, from a moderator, deletes a finished picture.
 */
import { DiscordAPIError, Routes, type Client, type MessageReaction, type PartialMessageReaction, type PartialUser, type User } from 'discord.js';
import { isUserError } from '../errors.js';
import { CANCEL_EMOJI, REROLL_EMOJI } from '../delivery/bot-reactions.js';
import { followUpRequest } from './follow-up.js';
import { canCancel, canDeletePicture, canReroll, type MemberAuthority } from '../moderation/permissions.js';
import type { BotContext } from '../../commands/index.js';
import type { JobRecord } from '../jobs/types.js';
import type { NoticeThrottle } from './notice-throttle.js';

async function authorityOf(client: Client, guildId: string, userId: string): Promise<MemberAuthority> {
  const guild = client.guilds.cache.get(guildId);
  // The reaction event carries the member, and discord.js caches it; roles come from GUILD_CREATE.
  const member = guild?.members.cache.get(userId) ?? (await guild?.members.fetch(userId).catch(() => undefined));
  if (!member) return { userId, permissions: 0n, roleIds: [] };
  return { userId, permissions: member.permissions.bitfield, roleIds: [...member.roles.cache.keys()] };
}

export async function handleReaction(
  reaction: MessageReaction | PartialMessageReaction,
  reactor: User | PartialUser,
  bot: BotContext,
  client: Client,
  notices: NoticeThrottle,
): Promise<void> {
  const emoji = reaction.emoji.name;
  if (emoji !== REROLL_EMOJI && emoji !== CANCEL_EMOJI) return;
  if (reactor.id === client.user?.id) return;
  let user = reactor;
  if (user.partial) user = await user.fetch().catch(() => user);
  if (user.bot) return;

  const messageId = reaction.message.id;
  const job = bot.queue.findByMessageId(messageId);
  if (!job) return;
  const guildId = reaction.message.guildId ?? job.guildId;
  const channelId = reaction.message.channelId ?? job.channelId;
  const settings = bot.settings.get(guildId);
  const member = await authorityOf(client, guildId, user.id);

  if (emoji === CANCEL_EMOJI) {
    if (job.state === 'done' && job.resultMessageId === messageId) {
      // A finished picture: a moderator's ❌ takes it down; anyone else's does nothing.
      if (canDeletePicture(member, settings)) await deletePicture(job, messageId, channelId, user.id, bot, client);
      return;
    }
    if (!canCancel(job, member, settings)) return;
    const outcome = await bot.queue.cancel(job.id, user.id);
    bot.logger.info('❌ by reaction', { jobId: job.id, by: user.id, outcome });
    return;
  }

  // 🔁 rerolls a finished picture, from the message that carries it. 'delivering' counts: the bot adds its 🔁
  // just before the journal says done, and a quick member may click it in between.
  if (job.state !== 'done' && job.state !== 'delivering') return;
  if ((job.resultMessageId ?? job.messageId) !== messageId) return;
  if (!canReroll(job, member, settings)) return;
  try {
    // The guild's rules may have changed since the original: check again, never fix silently.
    const request = await followUpRequest(job, settings, channelId, bot);
    const { channelNsfw } = request;
    // An img2img job (an attachment, a V or a U) rolls again from the same picture.
    const initImage = bot.queue.initImage(job.id);
    const { job: reroll } = await bot.queue.submit({
      guildId,
      channelId,
      userId: user.id,
      params: request.params,
      ...(request.guildNegative !== undefined ? { guildNegative: request.guildNegative } : {}),
      ...(channelNsfw !== undefined ? { channelNsfw } : {}),
      kind: 'reroll',
      parentJobId: job.id,
      ...(initImage !== undefined ? { initImage } : {}),
      replyToMessageId: messageId,
    });
    bot.logger.info('🔁 by reaction', { jobId: reroll.id, parentJobId: job.id, by: user.id });
  } catch (error) {
    if (!isUserError(error)) throw error;
    if (!notices.allow(`${user.id}:${messageId}`)) {
      bot.logger.debug('🔁 refused again; notice throttled', { by: user.id, messageId, code: error.identifier });
      return;
    }
    // A reaction has no ephemeral answer: reply to the picture, pinging only the member who reacted.
    await client.rest.post(Routes.channelMessages(channelId), {
      body: {
        content: `<@${user.id}> ${error.message}`,
        allowed_mentions: { parse: [], users: [user.id] },
        message_reference: { message_id: messageId, fail_if_not_exists: false },
      },
    });
  }
}

/** Deletes a posted picture at a moderator's ❌, and logs who did it for /settings audit. */
async function deletePicture(
  job: JobRecord,
  messageId: string,
  channelId: string,
  moderatorId: string,
  bot: BotContext,
  client: Client,
): Promise<void> {
  try {
    await client.rest.delete(Routes.channelMessage(channelId, messageId));
  } catch (error) {
    // Someone deleted it first: nothing left to do or to log.
    if (error instanceof DiscordAPIError && error.status === 404) return;
    throw error;
  }
  bot.moderationLog.record({
    guildId: job.guildId,
    kind: 'picture-deleted',
    actorId: moderatorId,
    userId: job.userId,
    jobId: job.id,
    channelId,
    prompt: job.params.prompt,
    at: Date.now(),
  });
  bot.logger.info('❌ by a moderator: picture deleted', { jobId: job.id, messageId, by: moderatorId });
}
