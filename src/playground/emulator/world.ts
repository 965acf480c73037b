import {
  ChannelType,
  GuildDefaultMessageNotifications,
  GuildExplicitContentFilter,
  GuildHubType,
  GuildMFALevel,
  GuildNSFWLevel,
  GuildPremiumTier,
  GuildSystemChannelFlags,
  GuildVerificationLevel,
  PermissionFlagsBits,
  ThreadAutoArchiveDuration,
  type APIGuild,
  type APIGuildMember,
  type APIRole,
  type APITextChannel,
  type APIThreadChannel,
  type APIUser,
  type ChannelFlags,
  type GuildMemberFlags,
  type RoleFlags,
  type UserFlags,
  type GatewayGuildCreateDispatchData,
} from 'discord-api-types/v10';
import type { SnowflakeFactory } from './snowflake.js';

/** A member of an emulated guild: the user plus guild-specific role ids. */
export interface EmulatedMember {
  userId: string;
  roles: string[];
  joinedAt: string;
  nick: string | null;
}

/** A guild the bot is in. Roles and channels are Discord's own payload types. */
export interface EmulatedGuild {
  id: string;
  name: string;
  ownerId: string;
  roles: APIRole[];
  channels: APITextChannel[];
  /** Active threads of its text channels (GUILD_CREATE's `threads`). */
  threads: APIThreadChannel[];
  members: Map<string, EmulatedMember>;
}

/** Permissions a fresh guild's @everyone has in Discord (the "default permissions" of a new server). */
export const EVERYONE_PERMISSIONS =
  PermissionFlagsBits.ViewChannel |
  PermissionFlagsBits.SendMessages |
  PermissionFlagsBits.EmbedLinks |
  PermissionFlagsBits.AttachFiles |
  PermissionFlagsBits.AddReactions |
  PermissionFlagsBits.ReadMessageHistory |
  PermissionFlagsBits.UseApplicationCommands |
  PermissionFlagsBits.CreateInstantInvite |
  PermissionFlagsBits.ChangeNickname |
  PermissionFlagsBits.UseExternalEmojis |
  PermissionFlagsBits.MentionEveryone;

/** The permissions the README's invite link grants the bot, given to its managed role. */
export const BOT_PERMISSIONS =
  PermissionFlagsBits.ViewChannel |
  PermissionFlagsBits.SendMessages |
  PermissionFlagsBits.EmbedLinks |
  PermissionFlagsBits.AttachFiles |
  PermissionFlagsBits.AddReactions |
  PermissionFlagsBits.ReadMessageHistory;

/** Users, guilds, roles and channels the emulator knows. */
export class World {
  readonly users = new Map<string, APIUser>();
  readonly guilds = new Map<string, EmulatedGuild>();

  constructor(private readonly ids: SnowflakeFactory) {}

  createUser(options: { id?: string; username: string; bot?: boolean; globalName?: string | null }): APIUser {
    const user: APIUser = {
      id: options.id ?? this.ids.next(),
      username: options.username,
      discriminator: '0',
      global_name: options.globalName ?? null,
      avatar: null,
      bot: options.bot ?? false,
      public_flags: 0 as UserFlags,
      flags: 0 as UserFlags,
    };
    this.users.set(user.id, user);
    return user;
  }

  createGuild(options: { id?: string; name: string; ownerId: string }): EmulatedGuild {
    const id = options.id ?? this.ids.next();
    const guild: EmulatedGuild = { id, name: options.name, ownerId: options.ownerId, roles: [], channels: [], threads: [], members: new Map() };
    // The @everyone role has the guild's id (discord.com/developers/docs/topics/permissions#role-object).
    guild.roles.push(role(id, '@everyone', EVERYONE_PERMISSIONS, 0));
    this.guilds.set(id, guild);
    return guild;
  }

  createRole(guildId: string, options: { name: string; permissions: bigint; managed?: boolean; botId?: string }): APIRole {
    const guild = this.guild(guildId);
    const created = role(this.ids.next(), options.name, options.permissions, guild.roles.length, options.managed ?? false);
    if (options.botId) created.tags = { bot_id: options.botId };
    guild.roles.push(created);
    return created;
  }

  /** A text channel; `nsfw` makes it age-restricted (Discord's channel flag). */
  createTextChannel(guildId: string, options: { name: string; id?: string; nsfw?: boolean }): APITextChannel {
    const guild = this.guild(guildId);
    const channel: APITextChannel = {
      id: options.id ?? this.ids.next(),
      type: ChannelType.GuildText,
      guild_id: guild.id,
      name: options.name,
      position: guild.channels.length,
      permission_overwrites: [],
      nsfw: options.nsfw ?? false,
      topic: null,
      last_message_id: null,
      parent_id: null,
      rate_limit_per_user: 0,
      flags: 0 as ChannelFlags,
    };
    guild.channels.push(channel);
    return channel;
  }

  /** A public thread of a text channel. Threads carry no `nsfw` of their own: they are as age-restricted as their parent. */
  createThread(guildId: string, options: { parentId: string; name: string; id?: string; ownerId?: string }): APIThreadChannel {
    const guild = this.guild(guildId);
    if (!guild.channels.some((c) => c.id === options.parentId)) {
      throw new Error(`Expected a text channel of guild \`${guildId}\` as the thread's parent, got \`${options.parentId}\``);
    }
    const thread: APIThreadChannel = {
      id: options.id ?? this.ids.next(),
      type: ChannelType.PublicThread,
      guild_id: guild.id,
      name: options.name,
      parent_id: options.parentId,
      owner_id: options.ownerId ?? guild.ownerId,
      last_message_id: null,
      rate_limit_per_user: 0,
      message_count: 0,
      member_count: 1,
      total_message_sent: 0,
      thread_metadata: {
        archived: false,
        auto_archive_duration: ThreadAutoArchiveDuration.OneDay,
        archive_timestamp: new Date().toISOString(),
        locked: false,
      },
      flags: 0 as ChannelFlags,
    };
    guild.threads.push(thread);
    return thread;
  }

  addMember(guildId: string, userId: string, roles: string[] = []): EmulatedMember {
    const guild = this.guild(guildId);
    if (!this.users.has(userId)) throw new Error(`Expected a known user id, got \`${userId}\``);
    const member: EmulatedMember = { userId, roles, joinedAt: new Date().toISOString(), nick: null };
    guild.members.set(userId, member);
    return member;
  }

  guild(guildId: string): EmulatedGuild {
    const guild = this.guilds.get(guildId);
    if (!guild) throw new Error(`Expected a known guild id, got \`${guildId}\``);
    return guild;
  }

  user(userId: string): APIUser {
    const user = this.users.get(userId);
    if (!user) throw new Error(`Expected a known user id, got \`${userId}\``);
    return user;
  }

  /** The text channel or thread with this id in any guild, with its guild. */
  findChannel(channelId: string): { guild: EmulatedGuild; channel: APITextChannel | APIThreadChannel } | undefined {
    for (const guild of this.guilds.values()) {
      const channel = guild.channels.find((c) => c.id === channelId) ?? guild.threads.find((t) => t.id === channelId);
      if (channel) return { guild, channel };
    }
    return undefined;
  }

  /** Guild-level permissions of a member: @everyone OR its roles; the owner and Administrator get everything. */
  memberPermissions(guildId: string, userId: string): bigint {
    const guild = this.guild(guildId);
    if (guild.ownerId === userId) return ALL_PERMISSIONS;
    const member = guild.members.get(userId);
    let permissions = BigInt(guild.roles.find((r) => r.id === guild.id)!.permissions);
    for (const roleId of member?.roles ?? []) {
      const found = guild.roles.find((r) => r.id === roleId);
      if (found) permissions |= BigInt(found.permissions);
    }
    return permissions & PermissionFlagsBits.Administrator ? ALL_PERMISSIONS : permissions;
  }

  apiMember(guildId: string, userId: string): APIGuildMember & { user: APIUser } {
    const member = this.guild(guildId).members.get(userId);
    if (!member) throw new Error(`Expected user \`${userId}\` to be a member of guild \`${guildId}\``);
    return {
      user: this.user(userId),
      nick: member.nick,
      avatar: null,
      banner: null,
      roles: [...member.roles],
      joined_at: member.joinedAt,
      premium_since: null,
      deaf: false,
      mute: false,
      pending: false,
      flags: 0 as GuildMemberFlags,
      communication_disabled_until: null,
    };
  }

  /** Everything GUILD_CREATE carries (reference/discord-protocol.md lists what discord.js needs). */
  guildCreate(guildId: string): GatewayGuildCreateDispatchData {
    const guild = this.guild(guildId);
    return {
      ...this.apiGuild(guildId),
      joined_at: new Date().toISOString(),
      large: false,
      unavailable: false,
      member_count: guild.members.size,
      voice_states: [],
      members: [...guild.members.keys()].map((userId) => this.apiMember(guildId, userId)),
      channels: guild.channels.map((c) => ({ ...c })),
      threads: guild.threads.map((t) => structuredClone(t)),
      presences: [],
      stage_instances: [],
      guild_scheduled_events: [],
      soundboard_sounds: [],
    };
  }

  apiGuild(guildId: string): APIGuild {
    const guild = this.guild(guildId);
    return {
      id: guild.id,
      name: guild.name,
      icon: null,
      splash: null,
      discovery_splash: null,
      owner_id: guild.ownerId,
      region: 'us-west',
      afk_channel_id: null,
      afk_timeout: 300,
      widget_enabled: false,
      widget_channel_id: null,
      verification_level: GuildVerificationLevel.None,
      default_message_notifications: GuildDefaultMessageNotifications.OnlyMentions,
      explicit_content_filter: GuildExplicitContentFilter.Disabled,
      roles: guild.roles.map((r) => ({ ...r })),
      emojis: [],
      features: [],
      mfa_level: GuildMFALevel.None,
      application_id: null,
      system_channel_id: null,
      system_channel_flags: GuildSystemChannelFlags.SuppressJoinNotifications,
      rules_channel_id: null,
      max_presences: null,
      max_members: 500_000,
      vanity_url_code: null,
      description: null,
      banner: null,
      premium_tier: GuildPremiumTier.None,
      premium_subscription_count: 0,
      preferred_locale: 'en-US' as APIGuild['preferred_locale'],
      public_updates_channel_id: null,
      max_video_channel_users: 25,
      max_stage_video_channel_users: 50,
      approximate_member_count: guild.members.size,
      approximate_presence_count: guild.members.size,
      nsfw_level: GuildNSFWLevel.Default,
      stickers: [],
      premium_progress_bar_enabled: false,
      hub_type: null as GuildHubType | null,
      safety_alerts_channel_id: null,
      incidents_data: null,
    };
  }
}

const ALL_PERMISSIONS = Object.values(PermissionFlagsBits).reduce((all, bit) => all | bit, 0n);

function role(id: string, name: string, permissions: bigint, position: number, managed = false): APIRole {
  return {
    id,
    name,
    color: 0,
    colors: { primary_color: 0, secondary_color: null, tertiary_color: null },
    hoist: false,
    icon: null,
    unicode_emoji: null,
    position,
    permissions: permissions.toString(),
    managed,
    mentionable: false,
    flags: 0 as RoleFlags,
  };
}
