import type { Router } from './router.js';
import { registerCommandRoutes, registerDiscoveryRoutes } from './routes/application.js';
import { registerInteractionRoutes } from './routes/interactions.js';
import { registerChannelRoutes } from './routes/messages.js';
import type { EmulatorCore } from './routes/shared.js';

export type { EmulatorCore } from './routes/shared.js';
export { addReaction, parseEmoji, removeReaction, type ParsedEmoji } from './routes/messages.js';

/** Registers every REST v10 route the emulator answers, in this order. */
export function registerRoutes(router: Router, core: EmulatorCore): void {
  registerDiscoveryRoutes(router, core);
  registerChannelRoutes(router, core);
  registerCommandRoutes(router, core);
  registerInteractionRoutes(router, core);
}
