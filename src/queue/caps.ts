/**
 * The queue caps, one rule for both queues: the embedded FairQueue checks it against its scheduler, the scaled
 * queue inside a Redis transaction against the shared state, so two bot processes cannot both let a member pass.
 */
import { Identifiers, UserError } from '../errors.js';

/** Pictures a job makes: what it weighs against the caps. */
export function imagesOf(params: { count?: number }): number {
  return params.count ?? 1;
}

export interface CapCheck {
  /** Pictures the new job makes. */
  images: number;
  /** Pictures this member already has waiting in this server. */
  mine: number;
  memberCap: number;
  /** Pictures waiting in the whole queue. */
  total: number;
  globalCap: number;
  /**
   * Whether the member chose the count (a /imagine). A 🔁, U or V takes the original's, so its refusal does not
   * tell the member to ask for fewer. Default true.
   */
  countChosen?: boolean;
}

/**
 * The caps count pictures, not jobs: a job of `count` n weighs n against the member's cap and the global one. A
 * member with nothing waiting may always queue one request (its count is the server's count maximum's business),
 * so a server whose per-member cap is below its count maximum still lets members ask for the maximum.
 * @throws UserError MemberQueueFull or QueueFull, naming the cap and, for several pictures, the count.
 */
export function checkCaps({ images, mine, memberCap: cap, total, globalCap, countChosen = true }: CapCheck): void {
  if (mine > 0 && mine + images > cap) {
    const waiting = `You already have ${mine} image${mine === 1 ? '' : 's'} waiting`;
    throw new UserError(
      Identifiers.MemberQueueFull,
      images === 1
        ? `${waiting}, ${mine > cap ? 'more than' : 'the most'} this server allows (${cap}). Wait for one to start, or cancel one with ❌.`
        : `${waiting}; ${images} more would make ${mine + images}, over the ${cap} this server allows. ` +
            (countChosen ? 'Ask for fewer pictures, wait for one to start, or cancel one with ❌.' : 'Wait for one to start, or cancel one with ❌.'),
      { cap, count: images },
    );
  }
  if (total + images > globalCap) {
    throw new UserError(
      Identifiers.QueueFull,
      images === 1 || total >= globalCap
        ? `The queue is full (${globalCap} images waiting). Try again in a few minutes.`
        : `The queue has room for ${globalCap - total} more image${globalCap - total === 1 ? '' : 's'}, and you asked for ${images}. ` +
            (countChosen ? 'Ask for fewer, or try again in a few minutes.' : 'Try again in a few minutes.'),
      { cap: globalCap, count: images },
    );
  }
}
