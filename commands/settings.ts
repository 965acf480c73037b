import { ChannelType, MessageFlags, SlashCommandBuilder, type ChatInputCommandInteraction } from 'discord.js';
import type { Command } from './index.js';
import { Identifiers, UserError } from '../src/errors.js';
import { NO_MENTIONS } from '../src/delivery/render.js';
import { echoSnippet, fitLines, fitList } from '../src/delivery/text.js';
import { changeSettings, NEGATIVE_DEFAULT_MAX, VARIATION_STRENGTH_MIN, type SettingsChange } from '../src/moderation/settings-rules.js';
import { modelSuggestions } from '../src/moderation/request-rules.js';
import { assertCanManage, type MemberAuthority } from '../src/moderation/permissions.js';
import type { ModelInfo } from '../src/diffusion/types.js';
import type { ModerationEvent } from '../src/store/moderation-log.js';
import { COUNT_HARD_CAP, type AuditEntry, type GuildSettings, type SafetyMode } from '../src/store/settings.js';

const data = new SlashCommandBuilder()
  .setName('settings')
  .setDescription('This server’s rules for imagine')
  .addSubcommand((sub) => sub.setName('show').setDescription('Show this server’s settings'))
  .addSubcommand((sub) =>
    sub
      .setName('steps')
      .setDescription('Default and maximum steps (moderators)')
      .addIntegerOption((o) => o.setName('default').setDescription('Steps when /imagine gives none').setMinValue(1))
      .addIntegerOption((o) => o.setName('max').setDescription('Most steps a member may ask for').setMinValue(1)),
  )
  .addSubcommand((sub) =>
    sub
      .setName('count')
      .setDescription('Pictures per /imagine: default and maximum (moderators)')
      .addIntegerOption((o) => o.setName('default').setDescription('Pictures when /imagine gives no count').setMinValue(1).setMaxValue(COUNT_HARD_CAP))
      .addIntegerOption((o) => o.setName('max').setDescription('Most pictures one /imagine may ask for').setMinValue(1).setMaxValue(COUNT_HARD_CAP)),
  )
  .addSubcommand((sub) =>
    sub
      .setName('limits')
      .setDescription('Queue limits (moderators)')
      .addIntegerOption((o) => o.setName('per-member').setDescription('Waiting pictures one member may have').setRequired(true).setMinValue(1)),
  )
  .addSubcommandGroup((group) =>
    group
      .setName('banned-words')
      .setDescription('Words refused in prompts')
      .addSubcommand((sub) =>
        sub
          .setName('add')
          .setDescription('Refuse prompts with these words (moderators)')
          .addStringOption((o) => o.setName('words').setDescription('Comma-separated words or phrases').setRequired(true).setMaxLength(1000)),
      )
      .addSubcommand((sub) =>
        sub
          .setName('remove')
          .setDescription('Allow these words again (moderators)')
          .addStringOption((o) => o.setName('words').setDescription('Comma-separated words or phrases').setRequired(true).setMaxLength(1000)),
      )
      .addSubcommand((sub) => sub.setName('list').setDescription('List the banned words (moderators)')),
  )
  .addSubcommand((sub) =>
    sub
      .setName('reroll')
      .setDescription('Who may 🔁 a finished picture or press its U and V buttons (moderators)')
      .addStringOption((o) =>
        o
          .setName('who')
          .setDescription('The requester (and moderators), or anyone')
          .setRequired(true)
          .addChoices({ name: 'requester', value: 'requester' }, { name: 'anyone', value: 'anyone' }),
      ),
  )
  .addSubcommand((sub) =>
    sub
      .setName('variation')
      .setDescription('How far a V button moves from its picture (moderators)')
      .addNumberOption((o) =>
        o
          .setName('strength')
          .setDescription(`img2img strength, ${VARIATION_STRENGTH_MIN}–1: small stays close, 1 keeps only the prompt (default 0.6)`)
          .setRequired(true)
          .setMinValue(VARIATION_STRENGTH_MIN)
          .setMaxValue(1),
      ),
  )
  .addSubcommandGroup((group) =>
    group
      .setName('moderator-role')
      .setDescription('Roles that may change these settings and cancel any picture')
      .addSubcommand((sub) =>
        sub.setName('add').setDescription('Make a role moderators (moderators)').addRoleOption((o) => o.setName('role').setDescription('Role').setRequired(true)),
      )
      .addSubcommand((sub) =>
        sub.setName('remove').setDescription('Stop a role being moderators (moderators)').addRoleOption((o) => o.setName('role').setDescription('Role').setRequired(true)),
      ),
  )
  .addSubcommand((sub) =>
    sub
      .setName('safety')
      .setDescription('What happens to pictures the model’s safety checker flags (moderators)')
      .addStringOption((o) =>
        o
          .setName('mode')
          .setDescription('Outside age-restricted channels: strict and off hold them back, spoiler posts them as spoilers')
          .addChoices({ name: 'strict', value: 'strict' }, { name: 'spoiler', value: 'spoiler' }, { name: 'off', value: 'off' }),
      )
      .addStringOption((o) =>
        o
          .setName('unchecked')
          .setDescription('In strict mode: pictures of a model without a checker, outside age-restricted channels')
          .addChoices({ name: 'allow', value: 'allow' }, { name: 'refuse', value: 'refuse' }),
      ),
  )
  .addSubcommand((sub) =>
    sub
      .setName('negative')
      .setDescription('A negative prompt added to every picture (moderators); leave empty to remove it')
      .addStringOption((o) => o.setName('default').setDescription('e.g. nsfw, nude, gore').setMaxLength(NEGATIVE_DEFAULT_MAX)),
  )
  .addSubcommandGroup((group) =>
    group
      .setName('model')
      .setDescription('Which models /imagine uses and allows')
      .addSubcommand((sub) =>
        sub
          .setName('default')
          .setDescription('Model when /imagine names none, server-wide or in a channel (moderators); empty: the bot’s')
          .addStringOption((o) => o.setName('name').setDescription('An installed model').setAutocomplete(true).setMaxLength(100))
          .addChannelOption((o) => o.setName('channel').setDescription('Only in this channel').addChannelTypes(ChannelType.GuildText)),
      )
      .addSubcommand((sub) =>
        sub
          .setName('allow')
          .setDescription('Let members use a model again (moderators)')
          .addStringOption((o) => o.setName('name').setDescription('A denied model').setRequired(true).setAutocomplete(true).setMaxLength(100)),
      )
      .addSubcommand((sub) =>
        sub
          .setName('deny')
          .setDescription('Stop members using a model (moderators)')
          .addStringOption((o) => o.setName('name').setDescription('An installed model').setRequired(true).setAutocomplete(true).setMaxLength(100)),
      ),
  )
  .addSubcommand((sub) => sub.setName('audit').setDescription('Recent settings changes, held-back and deleted pictures (moderators)'));

/** The member as the interaction reports them: permissions computed by Discord, and role ids. */
function authorityOf(interaction: ChatInputCommandInteraction<'cached' | 'raw'>): MemberAuthority {
  const roles = interaction.member.roles;
  return {
    userId: interaction.user.id,
    permissions: interaction.memberPermissions.bitfield,
    roleIds: Array.isArray(roles) ? roles : [...roles.cache.keys()],
  };
}

const SAFETY_MODE_TEXT: Record<SafetyMode, string> = {
  strict: 'flagged pictures are held back outside age-restricted channels',
  spoiler: 'flagged pictures are posted behind a spoiler, with a warning, outside age-restricted channels',
  off: 'age-restricted channels are unfiltered; elsewhere flagged pictures are still held back',
};

/** Room for the default negative prompt in /settings show (escaped Markdown may double it). */
const NEGATIVE_SHOWN_MAX = 200;

function describeSettings(settings: GuildSettings, model: Pick<ModelInfo, 'name' | 'safetyChecker'>): string {
  const roles = settings.moderatorRoleIds.map((id) => `<@&${id}>`).join(', ') || 'none (Manage Server only)';
  const unchecked = settings.refuseUnchecked ? 'refused' : 'allowed';
  const checker = model.safetyChecker
    ? `yes (${echoSnippet(model.name, 80)}): every picture is checked`
    : `none (${echoSnippet(model.name, 80)} has no safety_checker/): pictures are not checked` +
      (settings.safetyMode === 'strict' ? `, and are ${unchecked} outside age-restricted channels` : '');
  return [
    `**Steps:** ${settings.stepsDefault} by default, at most ${settings.stepsMax}`,
    `**Pictures per /imagine:** ${settings.countDefault} by default, at most ${settings.countMax}`,
    `**Waiting pictures per member:** ${settings.perMemberCap}`,
    `**Who may 🔁, U and V:** ${settings.rerollWho === 'anyone' ? 'anyone' : 'the requester and moderators'}`,
    `**V (variations) strength:** ${settings.variationStrength}`,
    `**Moderator roles:** ${roles}`,
    `**Banned words:** ${settings.bannedWords.length}`,
    `**Safety:** ${settings.safetyMode}: ${SAFETY_MODE_TEXT[settings.safetyMode]}`,
    `**Model’s safety checker:** ${checker}`,
    `**Unchecked models in strict mode:** ${unchecked} outside age-restricted channels`,
    `**Default negative prompt:** ${settings.negativeDefault ? `“${echoSnippet(settings.negativeDefault, NEGATIVE_SHOWN_MAX)}”` : 'none'}`,
    `**Default model:** ${settings.modelDefault ? `\`${settings.modelDefault}\`` : `the bot’s (\`${echoSnippet(model.name, 80)}\`)`}` +
      Object.entries(settings.channelModels)
        .map(([channel, name]) => `; <#${channel}>: \`${name}\``)
        .join(''),
    `**Denied models:** ${settings.modelsDenied.length === 0 ? 'none' : settings.modelsDenied.map((name) => `\`${name}\``).join(', ')}`,
  ].join('\n');
}

function formatValue(value: unknown): string {
  if (value === undefined) return '(default)';
  // Strings a moderator typed (the default negative prompt) are shown as text, not Markdown.
  if (typeof value === 'string') return value === '' ? '(none)' : echoSnippet(value, 80);
  // Channels' default models.
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value);
    return entries.length === 0 ? '(none)' : entries.map(([channel, name]) => `<#${channel}>: ${String(name)}`).join(', ');
  }
  return String(value);
}

/** Longest prompt quoted in a line of /settings audit. */
const AUDIT_PROMPT_MAX = 80;

/** One moderation event as an audit line: who, whose picture, where, which rule, the prompt (never the picture). */
function formatModeration(event: ModerationEvent): string {
  const where = `<@${event.userId}>’s picture in <#${event.channelId}>`;
  const prompt = `“${echoSnippet(event.prompt, AUDIT_PROMPT_MAX)}”`;
  return event.kind === 'picture-blocked'
    ? `🛡️ held back ${where} (rule: ${event.rule ?? 'unknown'}): ${prompt}`
    : `<@${event.actorId ?? 'unknown'}> ❌ deleted ${where}: ${prompt}`;
}

/** Settings changes and moderation events, newest first, as lines. */
function auditLines(entries: readonly AuditEntry[], events: readonly ModerationEvent[], limit: number): string[] {
  const lines = [
    ...entries.map((entry) => ({ at: entry.at, text: `<@${entry.actorId}> ${formatChange(entry.key, entry.oldValue, entry.newValue)}` })),
    ...events.map((event) => ({ at: event.at, text: formatModeration(event) })),
  ];
  return lines
    .sort((a, b) => b.at - a.at)
    .slice(0, limit)
    .map((line) => `<t:${Math.floor(line.at / 1000)}:f> ${line.text}`);
}

/** Room one list-valued change may take in a reply: several changes and the settings must still fit. */
const LIST_CHANGE_MAX = 400;

/**
 * One change as a line. Lists (banned words, moderator roles) show what was added and removed, never both
 * whole lists: 200 banned words of 64 characters would not fit in one message.
 */
function formatChange(key: string, oldValue: unknown, newValue: unknown): string {
  if (!Array.isArray(oldValue) && !Array.isArray(newValue)) return `${key}: ${formatValue(oldValue)} → ${formatValue(newValue)}`;
  const before = new Set((oldValue ?? []) as unknown[]);
  const after = new Set((newValue ?? []) as unknown[]);
  const shown = (value: unknown) => (key === 'moderatorRoleIds' ? `<@&${String(value)}>` : `\`${String(value)}\``);
  const added = [...after].filter((value) => !before.has(value)).map(shown);
  const removed = [...before].filter((value) => !after.has(value)).map(shown);
  const parts = [];
  if (added.length > 0) parts.push(fitList(`added ${added.length}: `, added, LIST_CHANGE_MAX));
  if (removed.length > 0) parts.push(fitList(`removed ${removed.length}: `, removed, LIST_CHANGE_MAX));
  return `${key}: ${parts.join('; ') || 'unchanged'} (${after.size} in all)`;
}

function splitWords(raw: string): string[] {
  return raw
    .split(',')
    .map((word) => word.trim())
    .filter((word) => word.length > 0);
}

export default {
  data: data.toJSON(),
  async execute(interaction, bot) {
    if (!interaction.inGuild()) {
      throw new UserError(Identifiers.NotAllowed, '/settings works in servers, not in direct messages.');
    }
    const guildId = interaction.guildId;
    const member = authorityOf(interaction);
    const group = interaction.options.getSubcommandGroup(false);
    const sub = interaction.options.getSubcommand(true);
    const limits = { hardStepsCap: bot.config.stepsHardCap };
    const reply = (content: string) =>
      interaction.reply({ content, flags: MessageFlags.Ephemeral, allowedMentions: NO_MENTIONS });

    if (!group && sub === 'show') {
      await reply(describeSettings(bot.settings.get(guildId), bot.model));
      return;
    }
    if (group === 'banned-words' && sub === 'list') {
      // The list itself is moderators' business: it reads like a list of things to try.
      const settings = bot.settings.get(guildId);
      assertCanManage(member, settings);
      await reply(
        settings.bannedWords.length === 0
          ? 'No banned words.'
          : fitList(`Banned words (${settings.bannedWords.length}): `, settings.bannedWords.map((w) => `\`${w}\``)),
      );
      return;
    }
    if (!group && sub === 'audit') {
      assertCanManage(member, bot.settings.get(guildId));
      const lines = auditLines(bot.settings.audit(guildId, { limit: 20 }), bot.moderationLog.list(guildId, { limit: 20 }), 20);
      await reply(lines.length === 0 ? 'No settings changes yet, and no picture held back or deleted.' : fitLines(lines));
      return;
    }

    let change: SettingsChange;
    if (!group && sub === 'steps') {
      change = {
        kind: 'steps',
        default: interaction.options.getInteger('default') ?? undefined,
        max: interaction.options.getInteger('max') ?? undefined,
      };
    } else if (!group && sub === 'count') {
      change = {
        kind: 'count',
        default: interaction.options.getInteger('default') ?? undefined,
        max: interaction.options.getInteger('max') ?? undefined,
      };
    } else if (!group && sub === 'limits') {
      change = { kind: 'limits', perMember: interaction.options.getInteger('per-member', true) };
    } else if (group === 'banned-words' && (sub === 'add' || sub === 'remove')) {
      change = { kind: 'banned-words', action: sub, words: splitWords(interaction.options.getString('words', true)) };
    } else if (!group && sub === 'reroll') {
      change = { kind: 'reroll', who: interaction.options.getString('who', true) as 'requester' | 'anyone' };
    } else if (!group && sub === 'variation') {
      change = { kind: 'variation', strength: interaction.options.getNumber('strength', true) };
    } else if (!group && sub === 'safety') {
      const mode = interaction.options.getString('mode');
      const unchecked = interaction.options.getString('unchecked');
      change = {
        kind: 'safety',
        ...(mode !== null ? { mode: mode as SafetyMode } : {}),
        ...(unchecked !== null ? { refuseUnchecked: unchecked === 'refuse' } : {}),
      };
    } else if (!group && sub === 'negative') {
      change = { kind: 'negative', text: interaction.options.getString('default') ?? '' };
    } else if (group === 'model' && sub === 'default') {
      const channel = interaction.options.get('channel')?.value;
      change = {
        kind: 'model-default',
        name: interaction.options.getString('name') ?? '',
        ...(channel !== undefined ? { channelId: String(channel) } : {}),
      };
    } else if (group === 'model' && (sub === 'allow' || sub === 'deny')) {
      change = { kind: 'model-access', action: sub, name: interaction.options.getString('name', true) };
    } else if (group === 'moderator-role' && (sub === 'add' || sub === 'remove')) {
      // The raw id: it needs no resolved role object, which not every client or proxy sends.
      change = { kind: 'moderator-roles', action: sub, roleId: String(interaction.options.get('role', true).value) };
    } else {
      throw new UserError(Identifiers.InvalidInput, `Unknown settings command \`${[group, sub].filter(Boolean).join(' ')}\`.`);
    }

    const models = group === 'model' ? (await bot.models()).map((m) => m.name) : undefined;
    const update = changeSettings(bot.settings, guildId, member, change, { ...limits, ...(models ? { models } : {}) });
    const lines =
      update.changes.length === 0
        ? ['Nothing changed: the settings already say that.']
        : update.changes.map((entry) => formatChange(entry.key, entry.oldValue, entry.newValue));
    await reply(fitLines(lines, { footer: `\n${describeSettings(update.after, bot.model)}` }));
  },
  async autocomplete(interaction, bot) {
    const focused = interaction.options.getFocused(true);
    if (focused.name !== 'name' || !interaction.inGuild()) return interaction.respond([]);
    const settings = bot.settings.get(interaction.guildId);
    const models = await bot.models();
    // allow: the denied ones; default and deny: those allowed.
    const suggestions =
      interaction.options.getSubcommand(false) === 'allow'
        ? settings.modelsDenied.filter((name) => name.includes(String(focused.value))).slice(0, 25).map((name) => ({ name, value: name }))
        : modelSuggestions(String(focused.value), settings, models);
    await interaction.respond(suggestions);
  },
} satisfies Command;
