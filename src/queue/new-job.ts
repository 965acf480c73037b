import type { JobRecord, SubmitInput } from './types.js';

/**
 * The journal record of a job being submitted, the same for both queues (the embedded FairQueue and the scaled
 * queue in src/scale/): `owner` only in the scaled mode. Optional fields are left out, not set to undefined, so
 * records compare equal after a round trip through the journal.
 */
export function newJobRecord(id: string, input: SubmitInput, createdAt: number, owner?: string): Omit<JobRecord, 'seq'> {
  const fresh: Omit<JobRecord, 'seq'> = {
    id,
    guildId: input.guildId,
    channelId: input.channelId,
    userId: input.userId,
    kind: input.kind ?? 'imagine',
    params: structuredClone(input.params),
    state: 'queued',
    attempts: 0,
    deliveryAttempts: 0,
    deliveryKey: id,
    createdAt,
  };
  if (owner !== undefined) fresh.owner = owner;
  if (input.parentJobId !== undefined) fresh.parentJobId = input.parentJobId;
  if (input.sourcePicture !== undefined) fresh.sourcePicture = input.sourcePicture;
  if (input.channelNsfw !== undefined) fresh.channelNsfw = input.channelNsfw;
  if (input.guildNegative !== undefined) fresh.guildNegative = input.guildNegative;
  if (input.interaction !== undefined) fresh.interaction = { ...input.interaction };
  if (input.messageId !== undefined) fresh.messageId = input.messageId;
  if (input.replyToMessageId !== undefined) fresh.replyToMessageId = input.replyToMessageId;
  return fresh;
}
