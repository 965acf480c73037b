/**
 * The emulator's sharded gateway with two real discord.js clients, one per shard: each is told only of its guilds,
 * and a guild's events reach only the shard `(guild_id >> 22) % num_shards`
 * (https://discord.com/developers/docs/events/gateway#sharding).
 */
import { Client, Events, GatewayIntentBits, Partials, REST, Routes, type Interaction } from 'discord.js';
import { afterEach, describe, expect, it } from 'vitest';
import { DiscordEmulator } from '../../../src/playground/emulator/index.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function shardClient(emulator: DiscordEmulator, shard: number, shardCount: number): Promise<Client> {
  const client = new Client({
    intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessageReactions],
    partials: [Partials.Message, Partials.Reaction, Partials.Channel, Partials.User],
    rest: { api: emulator.apiUrl },
    shards: [shard],
    shardCount,
    ws: { buildIdentifyThrottler: () => ({ waitForIdentify: async () => {} }) },
  });
  cleanups.push(() => client.destroy());
  const ready = new Promise<void>((resolve) => client.once(Events.ClientReady, () => resolve()));
  await client.login(emulator.token);
  await ready;
  return client;
}

describe('the sharded gateway', () => {
  it('GIVEN shards: 2 THEN GET /gateway/bot recommends 2 and createGuild({ shard }) picks an id the formula maps there', async () => {
    const emulator = await DiscordEmulator.start({ shards: 2 });
    cleanups.push(() => emulator.close());
    const rest = new REST({ api: emulator.apiUrl }).setToken(emulator.token);
    expect(((await rest.get(Routes.gatewayBot())) as { shards: number }).shards).toBe(2);
    for (const shard of [0, 1, 0, 1]) {
      const { guildId } = emulator.createGuild({ name: `guild on ${shard}`, shard });
      expect(Number((BigInt(guildId) >> 22n) % 2n)).toBe(shard);
    }
    expect(() => emulator.createGuild({ name: 'nowhere', shard: 2 })).toThrow(/Expected `shard` to be an integer from 0 to 1/);
  });

  it('GIVEN two clients on shards 0 and 1 THEN each identifies with its id, gets only its guilds, and only its guilds’ interactions and reactions', async () => {
    const emulator = await DiscordEmulator.start({ shards: 2 });
    cleanups.push(() => emulator.close());
    const guilds = [0, 1].map((shard) => emulator.createGuild({ name: `guild on ${shard}`, shard }));
    const rest = new REST({ api: emulator.apiUrl }).setToken(emulator.token);
    await rest.put(Routes.applicationCommands(emulator.defaults.applicationId), { body: [{ name: 'ping', description: 'Ping' }] });

    const clients = [await shardClient(emulator, 0, 2), await shardClient(emulator, 1, 2)];
    await emulator.waitForReady();
    expect([...emulator.identifiedShards].map((shard) => [...shard]).sort()).toEqual([
      [0, 2],
      [1, 2],
    ]);
    // The default guild sits on whichever shard its id says.
    const defaultShard = emulator.shardOf(emulator.defaults.guildId);
    for (const shard of [0, 1]) {
      const expected = [guilds[shard]!.guildId, ...(defaultShard === shard ? [emulator.defaults.guildId] : [])].sort();
      expect([...clients[shard]!.guilds.cache.keys()].sort()).toEqual(expected);
    }

    const seen: Array<Array<{ kind: string; guildId: string | null }>> = [[], []];
    clients.forEach((client, shard) => {
      client.on(Events.InteractionCreate, (interaction: Interaction) => seen[shard]!.push({ kind: 'interaction', guildId: interaction.guildId }));
      client.on(Events.MessageReactionAdd, (reaction) => seen[shard]!.push({ kind: 'reaction', guildId: reaction.message.guildId }));
    });
    for (const guild of guilds) {
      emulator.sendCommand({ name: 'ping', guildId: guild.guildId, channelId: guild.channelId });
      const message = emulator.seedMessage({ channelId: guild.channelId, content: 'hello' });
      emulator.addReaction({ userId: emulator.defaults.users.alice.id, channelId: guild.channelId, messageId: message.message.id, emoji: '🔁' });
    }
    await emulator.waitUntil(() => seen[0]!.length + seen[1]!.length >= 4, 10_000, 'four events');
    for (const shard of [0, 1]) {
      expect(seen[shard]!.map((event) => event.kind).sort()).toEqual(['interaction', 'reaction']);
      expect(seen[shard]!.every((event) => event.guildId === guilds[shard]!.guildId)).toBe(true);
    }
  });
});
