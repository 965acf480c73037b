/**
 * Whether a channel is age-restricted: Discord's `nsfw` flag on text, announcement, voice, stage and forum
 * channels; a thread has none of its own and takes its parent's (Discord docs, "Channel Object": threads inherit
 * the parent's age restriction). Read from discord.js's cache (GUILD_CREATE and channel events fill it), else over
 * REST for a channel it has not seen (an archived thread). The safety rules treat unknown as not age-restricted.
 */
import type { Channel, Client } from 'discord.js';

/** Don't hold up an interaction's 3 seconds for a REST lookup longer than this. */
const FETCH_TIMEOUT_MS = 1500;

/** True or false when known; undefined when the channel (or a thread's parent) could not be found in time. */
export async function channelAgeRestricted(client: Client, channelId: string, timeoutMs = FETCH_TIMEOUT_MS): Promise<boolean | undefined> {
  const channel = await find(client, channelId, timeoutMs);
  if (channel === undefined) return undefined;
  if (channel.isThread()) {
    const parent = channel.parent ?? (channel.parentId ? await find(client, channel.parentId, timeoutMs) : undefined);
    return parent === undefined || parent === null ? undefined : nsfwOf(parent);
  }
  return nsfwOf(channel);
}

function nsfwOf(channel: Channel): boolean {
  return 'nsfw' in channel && channel.nsfw === true;
}

async function find(client: Client, channelId: string, timeoutMs: number): Promise<Channel | undefined> {
  const cached = client.channels.cache.get(channelId);
  if (cached) return cached;
  let timer: NodeJS.Timeout | undefined;
  try {
    const fetched = await Promise.race([
      client.channels.fetch(channelId),
      new Promise<null>((resolve) => {
        timer = setTimeout(() => resolve(null), timeoutMs);
      }),
    ]);
    return fetched ?? undefined;
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}
