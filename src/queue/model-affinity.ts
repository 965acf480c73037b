/**
 * Which waiting job starts the next run when jobs name different models (issue 12): loading a model costs seconds
 * to minutes and may push another out of the engine's memory, so a job for a model a worker already holds is
 * worth starting before one that needs a load, as long as fairness holds. Pure, so the rule is tested alone.
 *
 * The rule: the head of the fair order starts, unless its model is not loaded; then the first job in fair order
 * whose model is loaded starts instead, provided no job it jumps over has already been passed over
 * {@link MAX_PASSES} times. So a job starts at most MAX_PASSES runs later than the fair order would start it, however
 * many jobs for loaded models keep arriving: its member's wait grows by a bounded amount, never without end. The
 * jumping job's turn counts as its member's turn this round (FairScheduler.takeOutOfOrder), so a member cannot use
 * a loaded model to get two turns in one round.
 */

/**
 * How many times one waiting job may be passed over for a job whose model is loaded: 1, so the preference delays a
 * job by one run at most, the shortest delay that still lets a queue that alternates two models skip a load.
 */
export const MAX_PASSES = 1;

/** What the rule needs of a waiting job. */
export interface AffinityJob {
  /** A worker holds the job's model now. */
  loaded: boolean;
  /** How often the job has been passed over so far while waiting. */
  passes: number;
}

/**
 * The index into `order` (the fair order of waiting jobs) of the job that starts the next run: 0 (the head) unless
 * the rule above picks a later job. 0 for an empty order.
 */
export function preferredStart(order: readonly AffinityJob[], maxPasses = MAX_PASSES): number {
  for (let i = 0; i < order.length; i++) {
    if (order[i].loaded) return i;
    // Starting a later job would pass over this one once more than allowed.
    if (order[i].passes >= maxPasses) return 0;
  }
  return 0;
}
