/**
 * Two kinds of error. A UserError is expected (queue full, prompt too long, not allowed): its message is shown
 * to the member, ephemerally. Anything else is a bug or an outage: logged with context, and the member gets a
 * short apology.
 */
export const Identifiers = {
  InvalidInput: 'invalidInput',
  PromptEmpty: 'promptEmpty',
  PromptTooLong: 'promptTooLong',
  BannedWord: 'bannedWord',
  StepsTooHigh: 'stepsTooHigh',
  CountTooHigh: 'countTooHigh',
  QueueFull: 'queueFull',
  MemberQueueFull: 'memberQueueFull',
  NotAllowed: 'notAllowed',
  JobNotFound: 'jobNotFound',
  ShuttingDown: 'shuttingDown',
  /** The job journal cannot be written (disk full, read-only): new jobs are refused until it can. */
  JournalUnwritable: 'journalUnwritable',
  ModelMismatch: 'modelMismatch',
  /** Scaled mode: Redis cannot be reached, so nothing can be queued (the bot reconnects by itself). */
  ServiceUnavailable: 'serviceUnavailable',
  /** The job names a model that is not installed, or one that failed to load. */
  ModelUnavailable: 'modelUnavailable',
  Cancelled: 'cancelled',
  Timeout: 'timeout',
  /** The server's safety rules hold the picture back (moderation/safety-rules.ts). */
  SafetyBlocked: 'safetyBlocked',
} as const;
export type Identifier = (typeof Identifiers)[keyof typeof Identifiers];

export class UserError extends Error {
  override readonly name = 'UserError';
  constructor(
    readonly identifier: Identifier,
    message: string,
    readonly context: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export function isUserError(error: unknown): error is UserError {
  return error instanceof UserError;
}
