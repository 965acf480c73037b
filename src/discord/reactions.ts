/**
 * 🔁 and ❌ on the bot's messages. Jobs are found through the journal by message id, so this works on messages
 * the client never cached and after a restart; parameters are never read back from the message text.
 */
import { Routes, type Client, type MessageReaction, type PartialMessageReaction, type PartialUser, type User } from 'discord.js';
import { isUserError } from '../errors.js';
import { CANCEL_EMOJI, REROLL_EMOJI } from '../delivery/job-messenger.js';
import { rerollParams } from '../moderation/request-rules.js';
import { canCancel, canReroll, type MemberAuthority } from '../moderation/permissions.js';
import type { BotContext } from '../../commands/index.js';
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
    if (!canCancel(job, member, settings)) return;
    const outcome = bot.queue.cancel(job.id, user.id);
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
    const params = rerollParams(job.params, settings, { model: bot.model });
    const { job: reroll } = bot.queue.submit({
      guildId,
      channelId,
      userId: user.id,
      params,
      kind: 'reroll',
      parentJobId: job.id,
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
