import type { EngineHealth, ImageEngine } from '../diffusion/types.js';

/**
 * The engine's health; an engine that cannot tell (the stand-in, in this process) counts as one engine alive.
 */
export function engineHealthOf(engine: Pick<ImageEngine, 'health'>): EngineHealth {
  return engine.health?.() ?? { alive: 1, restarts: 0 };
}

/**
 * What `/healthz` checks. The bot is healthy only when all three hold: it can hear Discord (every gateway shard
 * connected), it can keep its promises (the journal takes a write now), and it can make pictures (at least one
 * engine alive). A check that throws counts as failed.
 */
export interface HealthChecks {
  gateway: () => boolean;
  journal: () => boolean;
  engine: () => boolean;
}

export interface HealthReport {
  ok: boolean;
  checks: Record<keyof HealthChecks, boolean>;
}

function passes(check: () => boolean): boolean {
  try {
    return check() === true;
  } catch {
    return false;
  }
}

export function checkHealth(checks: HealthChecks): HealthReport {
  const results = { gateway: passes(checks.gateway), journal: passes(checks.journal), engine: passes(checks.engine) };
  return { ok: results.gateway && results.journal && results.engine, checks: results };
}
