import { PermissionFlagsBits, type APIRole, type APIUser } from 'discord-api-types/v10';
import { BOT_PERMISSIONS, type World } from './world.js';

/** Ids of the world every emulator starts with. */
export interface EmulatorDefaults {
  applicationId: string;
  botUserId: string;
  guildId: string;
  channelId: string;
  users: { owner: APIUser; alice: APIUser; bob: APIUser; moderator: APIUser; otherBot: APIUser };
  roles: { everyone: APIRole; moderator: APIRole; bot: APIRole };
}

/**
 * A token in Discord's shape: base64 of the bot's user id, a timestamp part and an HMAC part.
 * Tools that read the application id out of the token's first part get the right one.
 */
export function fakeToken(botUserId: string): string {
  return `${Buffer.from(botUserId).toString('base64').replace(/=+$/, '')}.GEmUla.emulator-token-for-tests-only-00000000000`;
}

/** The world every emulator starts with: the bot, four people, a second bot, one guild with #general and two roles. */
export function createDefaultWorld(world: World, botUsername: string, guildName: string): EmulatorDefaults {
  const botUser = world.createUser({ username: botUsername, bot: true });
  const applicationId = botUser.id; // Discord gives a bot's application the same id as its user.
  const owner = world.createUser({ username: 'owner' });
  const alice = world.createUser({ username: 'alice', globalName: 'Alice' });
  const bob = world.createUser({ username: 'bob', globalName: 'Bob' });
  const moderator = world.createUser({ username: 'moderator', globalName: 'Mod' });
  const otherBot = world.createUser({ username: 'other-bot', bot: true });
  const guild = world.createGuild({ name: guildName, ownerId: owner.id });
  const moderatorRole = world.createRole(guild.id, {
    name: 'Moderator',
    permissions: PermissionFlagsBits.ManageMessages | PermissionFlagsBits.KickMembers,
  });
  const botRole = world.createRole(guild.id, { name: botUser.username, permissions: BOT_PERMISSIONS, managed: true, botId: botUser.id });
  const channel = world.createTextChannel(guild.id, { name: 'general' });
  world.addMember(guild.id, botUser.id, [botRole.id]);
  world.addMember(guild.id, owner.id);
  world.addMember(guild.id, alice.id);
  world.addMember(guild.id, bob.id);
  world.addMember(guild.id, moderator.id, [moderatorRole.id]);
  world.addMember(guild.id, otherBot.id);
  return {
    applicationId,
    botUserId: botUser.id,
    guildId: guild.id,
    channelId: channel.id,
    users: { owner, alice, bob, moderator, otherBot },
    roles: { everyone: guild.roles[0], moderator: moderatorRole, bot: botRole },
  };
}
