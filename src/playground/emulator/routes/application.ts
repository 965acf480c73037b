import { ApplicationCommandType, type APIApplication, type APIApplicationCommand, type RESTGetAPIGatewayBotResult } from 'discord-api-types/v10';
import { ApiError, errors } from '../api-error.js';
import { validateCommand, validateCommands } from '../command-limits.js';
import type { Router } from '../router.js';
import { noContent, ok, requireGuild, type EmulatorCore } from './shared.js';

/** Gateway discovery, the bot user and the application. */
export function registerDiscoveryRoutes(router: Router, core: EmulatorCore): void {
  const { world } = core;

  // Gateway discovery (reference/discord-protocol.md: `max_concurrency` is required).
  router.add('GET', '/gateway', () => ok({ url: core.gatewayUrl() }), { auth: false });
  router.add('GET', '/gateway/bot', () => {
    const result: RESTGetAPIGatewayBotResult = {
      url: core.gatewayUrl(),
      shards: core.shards,
      session_start_limit: { total: 1000, remaining: 999, reset_after: 14_400_000, max_concurrency: 1 },
    };
    return ok(result);
  });

  router.add('GET', '/users/@me', () => ok(core.bot));
  router.add('GET', '/users/:userId', ({ params }) => {
    const user = world.users.get(params.userId);
    if (!user) throw errors.unknownUser();
    return ok(user);
  });
  const application = (): APIApplication => ({
    id: core.applicationId,
    name: core.bot.username,
    icon: null,
    description: '',
    bot_public: true,
    bot_require_code_grant: false,
    bot: core.bot,
    summary: '',
    verify_key: '0'.repeat(64),
    team: null,
    flags: 0 as APIApplication['flags'],
    flags_new: '0',
    approximate_guild_count: world.guilds.size,
  });
  router.add('GET', '/applications/@me', () => ok(application()));
  router.add('GET', '/oauth2/applications/@me', () => ok(application()));
}

/** Application commands, global and per guild. */
export function registerCommandRoutes(router: Router, core: EmulatorCore): void {
  for (const scope of ['global', 'guild'] as const) {
    const base = scope === 'global' ? '/applications/:applicationId/commands' : '/applications/:applicationId/guilds/:guildId/commands';
    const key = (params: Record<string, string>) => {
      if (params.applicationId !== core.applicationId) throw new ApiError(403, 50001, 'Missing Access');
      return scope === 'global' ? 'global' : requireGuild(core, params.guildId);
    };
    router.add('GET', base, ({ params }) => ok(core.commands.get(key(params)) ?? []));
    router.add('PUT', base, ({ params, body }) => {
      const scopeKey = key(params);
      const definitions = validateCommands(body.json);
      const previous = core.commands.get(scopeKey) ?? [];
      const saved = definitions.map((d) => toCommand(core, d, scopeKey, previous));
      core.commands.set(scopeKey, saved);
      return ok(saved);
    });
    router.add('POST', base, ({ params, body }) => {
      const scopeKey = key(params);
      const definition = (body.json ?? {}) as Record<string, any>;
      validateCommand(definition, '');
      const previous = core.commands.get(scopeKey) ?? [];
      const saved = toCommand(core, definition, scopeKey, previous);
      const existed = previous.some((c) => c.id === saved.id);
      core.commands.set(scopeKey, [...previous.filter((c) => c.id !== saved.id), saved]);
      return ok(saved, existed ? 200 : 201);
    });
    router.add('GET', `${base}/:commandId`, ({ params }) => {
      const found = (core.commands.get(key(params)) ?? []).find((c) => c.id === params.commandId);
      if (!found) throw errors.unknownCommand();
      return ok(found);
    });
    router.add('DELETE', `${base}/:commandId`, ({ params }) => {
      const scopeKey = key(params);
      const list = core.commands.get(scopeKey) ?? [];
      if (!list.some((c) => c.id === params.commandId)) throw errors.unknownCommand();
      core.commands.set(scopeKey, list.filter((c) => c.id !== params.commandId));
      return noContent();
    });
  }
}

function toCommand(core: EmulatorCore, definition: Record<string, any>, scopeKey: string, previous: APIApplicationCommand[]): APIApplicationCommand {
  const type = definition.type ?? ApplicationCommandType.ChatInput;
  const existing = previous.find((c) => c.name === definition.name && c.type === type);
  return {
    ...definition,
    id: existing?.id ?? core.ids.next(),
    application_id: core.applicationId,
    ...(scopeKey === 'global' ? {} : { guild_id: scopeKey }),
    type,
    name: definition.name,
    description: definition.description ?? '',
    default_member_permissions: definition.default_member_permissions ?? null,
    version: core.ids.next(),
  } as APIApplicationCommand;
}
