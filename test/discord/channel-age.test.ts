import { Client, Events, GatewayIntentBits, Partials } from 'discord.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channelAgeRestricted } from '../../src/discord/channel-age.js';
import { DiscordEmulator } from '../../src/playground/emulator/index.js';

describe('channelAgeRestricted against the emulator (a real discord.js client)', () => {
  let emulator: DiscordEmulator;
  let client: Client;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    emulator = await DiscordEmulator.start();
    // Before login: in GUILD_CREATE, as a bot sees the channels of a server it is in.
    const adult = emulator.createTextChannel({ name: 'adult', nsfw: true });
    ids.adult = adult.id;
    ids.adultThread = emulator.createThread({ parentId: adult.id, name: 'adult thread' }).id;
    ids.generalThread = emulator.createThread({ parentId: emulator.defaults.channelId, name: 'general thread' }).id;
    client = new Client({
      intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessageReactions],
      partials: [Partials.Message, Partials.Reaction, Partials.Channel, Partials.User],
      rest: { api: emulator.apiUrl },
      ws: { buildIdentifyThrottler: () => ({ waitForIdentify: async () => {} }) },
    });
    const ready = new Promise<void>((resolve) => client.once(Events.ClientReady, () => resolve()));
    await client.login(emulator.token);
    await ready;
  });
  afterAll(async () => {
    await client?.destroy();
    await emulator?.close();
  });

  it('GIVEN channels and threads from GUILD_CREATE THEN an nsfw channel and its threads are age-restricted, the others not', async () => {
    expect(await channelAgeRestricted(client, ids.adult!)).toBe(true);
    expect(await channelAgeRestricted(client, ids.adultThread!)).toBe(true);
    expect(await channelAgeRestricted(client, emulator.defaults.channelId)).toBe(false);
    expect(await channelAgeRestricted(client, ids.generalThread!)).toBe(false);
  });

  it('GIVEN a thread made after login THEN THREAD_CREATE tells the client, and it inherits its parent’s flag', async () => {
    const thread = emulator.createThread({ parentId: ids.adult!, name: 'late thread' });
    await emulator.waitUntil(() => client.channels.cache.has(thread.id), 10_000);
    expect(await channelAgeRestricted(client, thread.id)).toBe(true);
  });

  it('GIVEN a channel the client has not cached THEN it is read over REST; an unknown one is unknown (undefined)', async () => {
    client.channels.cache.delete(ids.adultThread!);
    const before = emulator.calls.length;
    expect(await channelAgeRestricted(client, ids.adultThread!)).toBe(true);
    expect(emulator.calls.slice(before).some((call) => call.method === 'GET' && call.path === `/channels/${ids.adultThread}`)).toBe(true);
    expect(await channelAgeRestricted(client, '123456789012345678')).toBeUndefined();
  });

  it('GIVEN a command sent in a thread THEN the interaction carries the thread (its parent named), not an nsfw flag of its own', async () => {
    const seen = new Promise<{ channelId: string | null }>((resolve) => client.once(Events.InteractionCreate, (i) => resolve({ channelId: i.channelId })));
    const handle = emulator.sendCommand({ name: 'ping', channelId: ids.adultThread! });
    expect((await seen).channelId).toBe(ids.adultThread);
    expect(handle.payload.channel).toMatchObject({ id: ids.adultThread, type: 11, parent_id: ids.adult });
    expect(handle.payload.channel).not.toHaveProperty('nsfw');
    const inAdult = emulator.sendCommand({ name: 'ping', channelId: ids.adult! });
    expect(inAdult.payload.channel).toMatchObject({ id: ids.adult, nsfw: true });
  });
});
