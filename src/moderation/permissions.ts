import { Identifiers, UserError } from '../errors.js';
import type { JobRecord } from '../jobs/types.js';
import type { GuildSettings } from '../store/settings.js';

/** Discord permission bits (https://discord.com/developers/docs/topics/permissions). */
export const ADMINISTRATOR = 1n << 3n;
export const MANAGE_GUILD = 1n << 5n;

/** Who is acting: the interaction member's computed permissions (a bigint or Discord's decimal string) and roles. */
export interface MemberAuthority {
  userId: string;
  permissions: bigint | string;
  roleIds: readonly string[];
}

function toBits(permissions: bigint | string): bigint {
  if (typeof permissions === 'bigint') return permissions;
  if (!/^\d+$/.test(permissions)) {
    throw new TypeError(`Expected permissions as a decimal bitfield string, got \`${permissions}\``);
  }
  return BigInt(permissions);
}

/**
 * May this member change the guild's settings (and cancel anyone's job)? Manage Server, Administrator, or one of
 * the guild's moderator roles. Checked in the bot itself: a server can override a command's default permissions.
 */
export function canManage(
  permissions: bigint | string,
  roleIds: readonly string[],
  settings: Pick<GuildSettings, 'moderatorRoleIds'>,
): boolean {
  const bits = toBits(permissions);
  if ((bits & ADMINISTRATOR) !== 0n || (bits & MANAGE_GUILD) !== 0n) return true;
  return roleIds.some((role) => settings.moderatorRoleIds.includes(role));
}

export function assertCanManage(member: MemberAuthority, settings: Pick<GuildSettings, 'moderatorRoleIds'>): void {
  if (!canManage(member.permissions, member.roleIds, settings)) {
    throw new UserError(
      Identifiers.NotAllowed,
      'Only members with Manage Server, or a moderator role of this server, can change these settings.',
    );
  }
}

/** ❌: the requester or a moderator. */
export function canCancel(job: Pick<JobRecord, 'userId'>, member: MemberAuthority, settings: GuildSettings): boolean {
  return job.userId === member.userId || canManage(member.permissions, member.roleIds, settings);
}

/** 🔁: the requester and moderators, or anyone if the guild says so. */
export function canReroll(job: Pick<JobRecord, 'userId'>, member: MemberAuthority, settings: GuildSettings): boolean {
  if (settings.rerollWho === 'anyone') return true;
  return job.userId === member.userId || canManage(member.permissions, member.roleIds, settings);
}

/** ❌ on a finished picture deletes it: moderators only (a member's ❌ on anyone's picture does nothing). */
export function canDeletePicture(member: MemberAuthority, settings: Pick<GuildSettings, 'moderatorRoleIds'>): boolean {
  return canManage(member.permissions, member.roleIds, settings);
}
