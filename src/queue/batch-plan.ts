/**
 * Which waiting jobs share one engine run with the job whose turn it is. Pure functions over the fair order, so
 * the queue uses the same rule to start runs and to predict places and ETAs.
 *
 * A run of k images costs less than k runs of one (the runtime's fixed cost per call is paid once, and wider
 * tensors keep the cores busier), but more than one run alone, so batching trades the head's finishing time
 * for everyone else's. The rule keeps that trade fair:
 * 1. The head of the fair order always runs, batched or not: no job is starved by batching.
 * 2. Companions are considered in fair order, so a member's second job never rides along ahead of another
 *    member's compatible first job.
 * 3. A companion joins only if no waiting job it would jump over (one earlier in the fair order, left out because
 *    it is incompatible or did not fit) starts later than it would have with no batching at all, plus one of its
 *    steps; and the run is no slower than its jobs one after another.
 */

/** What the planner needs to know of a waiting job. */
export interface PlanJob {
  /** Jobs with equal keys can share a run (`batchKey`: steps, scheduler, size); undefined: never batched. */
  key: string | undefined;
  images: number;
  steps: number;
  /** The job's pixels over the reference image's. */
  area: number;
}

export interface CostModel {
  /** Estimated milliseconds per step of one run of `images` reference-size images. */
  msPerStep(images: number): number;
}

/** Estimated milliseconds of one run of these jobs (they share steps and size, or are one job). */
export function runCost(jobs: readonly PlanJob[], cost: CostModel): number {
  const images = jobs.reduce((sum, job) => sum + job.images, 0);
  return jobs[0].steps * jobs[0].area * cost.msPerStep(images);
}

// Float slack, so a run that costs exactly its jobs one after another (the cost model's linear prior) still batches.
const EPSILON = 1e-9;

/**
 * Indices into `order` (the fair order of waiting jobs) of the run that starts next: the head (index 0) first,
 * then its companions in fair order, `maxImages` images at most. Empty when nothing waits.
 */
export function planBatch(order: readonly PlanJob[], maxImages: number, cost: CostModel): number[] {
  if (order.length === 0) return [];
  const head = order[0];
  if (head.key === undefined || maxImages <= 1 || head.images >= maxImages) return [0];
  const alone = (job: PlanJob) => runCost([job], cost);
  const chosen = [head];
  const picked = [0];
  let images = head.images;
  /** Sum of the alone costs of the chosen jobs: the serial time the run replaces. */
  let serialMs = alone(head);
  /** The latest the run may end: min over jumped jobs of (their start without batching + one of their steps). */
  let latestEndMs = Infinity;
  for (let i = 1; i < order.length && images < maxImages; i++) {
    const candidate = order[i];
    const fits = candidate.key === head.key && images + candidate.images <= maxImages;
    if (fits) {
      const trial = [...chosen, candidate];
      const ms = runCost(trial, cost);
      const candidateAlone = alone(candidate);
      const limit = Math.min(latestEndMs, serialMs + candidateAlone);
      if (ms <= limit * (1 + EPSILON)) {
        chosen.push(candidate);
        picked.push(i);
        images += candidate.images;
        serialMs += candidateAlone;
        continue;
      }
    }
    // Left waiting: every later companion jumps over it. Without batching it would start once the chosen jobs
    // before it had run one after another (the jobs skipped before it run before it either way).
    latestEndMs = Math.min(latestEndMs, serialMs + alone(candidate) / candidate.steps);
  }
  return picked;
}
