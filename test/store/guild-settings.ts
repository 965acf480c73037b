/** A guild's settings as a server that changed nothing has them (the stock .env values), for unit tests. */
import { COUNT_DEFAULTS, MODEL_DEFAULTS, SAFETY_DEFAULTS, VARIATION_DEFAULTS, type GuildSettings } from '../../src/store/settings.js';

export function guildSettings(overrides: Partial<GuildSettings> = {}): GuildSettings {
  return {
    stepsDefault: 20,
    stepsMax: 50,
    perMemberCap: 2,
    bannedWords: [],
    rerollWho: 'requester',
    moderatorRoleIds: [],
    ...SAFETY_DEFAULTS,
    ...COUNT_DEFAULTS,
    ...MODEL_DEFAULTS,
    ...VARIATION_DEFAULTS,
    ...overrides,
  };
}
