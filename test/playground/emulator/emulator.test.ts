import {
  AttachmentBuilder,
  Client,
  DiscordAPIError,
  Events,
  GatewayIntentBits,
  Partials,
  type ChatInputCommandInteraction,
  type MessageReaction,
  type PartialMessageReaction,
  type PartialUser,
  type User,
} from 'discord.js';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DiscordEmulator } from '../../../src/playground/emulator/index.js';

/** A real discord.js client pointed at the emulator, as the bot will be. */
function makeClient(emulator: DiscordEmulator): Client {
  return new Client({
    intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessageReactions],
    partials: [Partials.Message, Partials.Reaction, Partials.Channel, Partials.User],
    rest: { api: emulator.apiUrl },
    // Re-identifying waits ~5 s in discord.js's throttler; nothing to throttle against here.
    ws: { buildIdentifyThrottler: () => ({ waitForIdentify: async () => {} }) },
  });
}

async function loggedIn(emulator: DiscordEmulator): Promise<Client> {
  const client = makeClient(emulator);
  const ready = new Promise<void>((resolve) => client.once(Events.ClientReady, () => resolve()));
  await client.login(emulator.token);
  await ready;
  return client;
}

/** Resolves with the next slash command the client receives. */
function nextCommand(client: Client): Promise<ChatInputCommandInteraction> {
  return new Promise((resolve) => {
    const listener = (interaction: unknown) => {
      const i = interaction as ChatInputCommandInteraction;
      if (i.isChatInputCommand()) {
        client.off(Events.InteractionCreate, listener);
        resolve(i);
      }
    };
    client.on(Events.InteractionCreate, listener);
  });
}

async function png(width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: 200, g: 30, b: 90 } } }).png().toBuffer();
}

describe('Discord emulator with a real discord.js client', () => {
  let emulator: DiscordEmulator;
  let client: Client;

  let repliesChannelId: string;

  beforeAll(async () => {
    // A generous deadline so a busy CI machine never fails an on-time defer; the late-response
    // test moves the clock past whatever deadline is set, and the default (3 s) is checked below.
    emulator = await DiscordEmulator.start({ interactionDeadlineMs: 15_000, resolveAttachmentUrls: true });
    repliesChannelId = emulator.createTextChannel({ name: 'replies' }).id;
    client = await loggedIn(emulator);
  });

  afterAll(async () => {
    await client?.destroy();
    await emulator?.close();
  });

  it('GIVEN a login THEN the client is ready with the guild, its channel, roles and the bot member cached', async () => {
    const { defaults } = emulator;
    expect(client.user?.id).toBe(defaults.botUserId);
    expect(client.application?.id).toBe(defaults.applicationId);
    const guild = client.guilds.cache.get(defaults.guildId);
    expect(guild?.channels.cache.get(defaults.channelId)?.name).toBe('general');
    expect(guild?.roles.everyone.id).toBe(defaults.guildId);
    expect(guild?.members.me?.id).toBe(defaults.botUserId);
    expect(emulator.calls.some((c) => c.route === '/gateway/bot' && c.status === 200)).toBe(true);
    // Like a real token, its first part is the bot's id in base64.
    expect(Buffer.from(emulator.token.split('.')[0], 'base64').toString()).toBe(defaults.botUserId);
  });

  it('GIVEN a slash command WHEN the bot defers, edits with a PNG and follows up THEN all land with the bytes intact', async () => {
    const image = await png(64, 48);
    const received = nextCommand(client);
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'a red fox', steps: 4 } });
    const interaction = await received;
    expect(interaction.options.getString('prompt')).toBe('a red fox');
    expect(interaction.options.getInteger('steps')).toBe(4);
    expect(interaction.channelId).toBe(emulator.defaults.channelId);
    expect(interaction.user.id).toBe(emulator.defaults.users.alice.id);

    expect(handle.status).toBe('pending');
    await interaction.deferReply();
    expect(handle.status).toBe('acknowledged');
    expect(handle.responseDelayMs).toBeGreaterThanOrEqual(0);
    expect(handle.original()?.message.flags).toBe(128); // Loading: the "thinking…" placeholder
    const edited = await interaction.editReply({
      content: 'done',
      embeds: [{ title: 'a red fox', image: { url: 'attachment://fox.png' } }],
      files: [new AttachmentBuilder(image, { name: 'fox.png' })],
      allowedMentions: { parse: [] },
    });
    await interaction.followUp({ content: 'seed 42', ephemeral: true } as never);

    const patch = await handle.waitForCall((c) => c.method === 'PATCH' && c.path.endsWith('/messages/@original'));
    expect(patch.status).toBe(200);
    expect(patch.multipart).toBe(true);
    expect(patch.files).toHaveLength(1);
    expect(patch.files[0].name).toBe('fox.png');
    const meta = await sharp(patch.files[0].bytes).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 48]);

    const original = handle.original()!;
    expect(original.message.id).toBe(edited.id);
    expect(original.message.content).toBe('done');
    expect(original.message.flags).toBe(0);
    expect(original.message.attachments[0]).toMatchObject({ filename: 'fox.png', width: 64, height: 48, content_type: 'image/png' });
    // The embed's attachment://fox.png now points at the upload, as Discord serves it.
    expect(original.message.embeds[0].image).toMatchObject({ url: original.message.attachments[0].url, width: 64, height: 48 });
    expect(edited.embeds[0].image?.url).toBe(original.message.attachments[0].url);
    expect(Buffer.compare(emulator.attachmentBytes(original.message.id)!, image)).toBe(0);
    // discord.js sees the attachment with a URL it can download from the emulator.
    const downloaded = Buffer.from(await (await fetch(edited.attachments.first()!.url)).arrayBuffer());
    expect(Buffer.compare(downloaded, image)).toBe(0);

    const [followUp] = handle.followUps();
    expect(followUp.message.content).toBe('seed 42');
    expect(followUp.message.flags).toBe(64);
    // Follow-ups are edited by id through the same token.
    await interaction.editReply({ message: followUp.message.id, content: 'seed 43' });
    expect(handle.followUps()[0].message.content).toBe('seed 43');
    expect(handle.followUps()[0].message.flags).toBe(64);
    const callback = await handle.waitForResponse();
    expect(callback.status).toBe(204);
    expect(callback.body).toMatchObject({ type: 5 });
  });

  it('GIVEN a deferred reply WHEN the first follow-up comes before any edit THEN it replaces the placeholder like Discord', async () => {
    const received = nextCommand(client);
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'x' } });
    const interaction = await received;
    await interaction.deferReply();
    const sent = await interaction.followUp({ content: 'first' });
    expect(sent.id).toBe(handle.original()?.message.id);
    expect(handle.followUps()).toHaveLength(0);
    await interaction.followUp({ content: 'second' });
    expect(handle.followUps().map((m) => m.message.content)).toEqual(['second']);
  });

  it('GIVEN a command WHEN the first response comes after 3 s THEN 10062, and a second initial response is 40060', async () => {
    const received = nextCommand(client);
    const lateHandle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'late' } });
    const late = await received;
    emulator.advanceTime(emulator.settings.interactionDeadlineMs + 1);
    expect(lateHandle.status).toBe('failed');
    const error = await late.deferReply().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DiscordAPIError);
    expect([(error as DiscordAPIError).status, (error as DiscordAPIError).code]).toEqual([404, 10062]);
    // A failed interaction's token is unusable too: nothing was ever acknowledged.
    // (discord.js refuses editReply before a reply itself, so call the route directly.)
    const edit = await client.rest
      .patch(`/webhooks/${late.applicationId}/${late.token}/messages/@original`, { body: { content: 'too late' }, auth: false })
      .catch((e: unknown) => e);
    expect([(edit as DiscordAPIError).status, (edit as DiscordAPIError).code]).toEqual([404, 10015]);

    const again = nextCommand(client);
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'twice' } });
    const twice = await again;
    await twice.deferReply();
    // discord.js refuses a second reply itself; go around it to see the server's rule.
    const second = await client.rest
      .post(`/interactions/${twice.id}/${twice.token}/callback`, { body: { type: 4, data: { content: 'again' } }, auth: false })
      .catch((e: unknown) => e);
    expect([(second as DiscordAPIError).status, (second as DiscordAPIError).code]).toEqual([400, 40060]);
    expect(handle.calls().filter((c) => c.route.endsWith('/callback')).map((c) => c.status)).toEqual([204, 400]);
  });

  it('GIVEN a deferred command WHEN 15 minutes pass THEN webhook calls get 401 50027 and the bot token survives', async () => {
    const received = nextCommand(client);
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'slow' } });
    const interaction = await received;
    await interaction.deferReply();
    await interaction.editReply('step 1/2');
    emulator.advanceTime(15 * 60_000);
    const error = await interaction.editReply('finished').catch((e: unknown) => e);
    expect([(error as DiscordAPIError).status, (error as DiscordAPIError).code]).toEqual([401, 50027]);
    expect(handle.original()?.message.content).toBe('step 1/2');
    // Webhook routes are sent without the bot token, so the 401 did not clear it.
    expect(client.token).toBe(emulator.token);
    const channel = await client.channels.fetch(emulator.defaults.channelId);
    expect(channel?.id).toBe(emulator.defaults.channelId);

    // expireToken() does the same for one interaction without moving the clock.
    const other = nextCommand(client);
    const handle2 = emulator.sendCommand({ name: 'imagine', options: { prompt: 'other' } });
    const i2 = await other;
    await i2.deferReply();
    handle2.expireToken();
    expect(((await i2.followUp('x').catch((e: unknown) => e)) as DiscordAPIError).code).toBe(50027);
  });

  it('GIVEN an injected 429 with Retry-After WHEN the bot edits THEN discord.js waits, retries and succeeds', async () => {
    const received = nextCommand(client);
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'limited' } });
    const interaction = await received;
    await interaction.deferReply();
    const before = emulator.stats.rateLimited;
    emulator.injectRateLimit('PATCH /webhooks/*/messages/@original', { count: 1, retryAfter: 0.3 });
    const rateLimited = new Promise((resolve) => client.rest.once('rateLimited', resolve));
    await interaction.editReply('after the limit');
    await rateLimited;
    const patches = handle.calls().filter((c) => c.method === 'PATCH');
    expect(patches.map((c) => c.status)).toEqual([429, 200]);
    expect(patches[0].response).toMatchObject({ message: 'You are being rate limited.', retry_after: 0.3, global: false });
    expect(patches[1].at - patches[0].at).toBeGreaterThanOrEqual(250);
    expect(emulator.stats.rateLimited).toBe(before + 1);
    expect(handle.original()?.message.content).toBe('after the limit');
  });

  it('GIVEN injected 5xx THEN discord.js retries and succeeds', async () => {
    emulator.injectServerError('GET /channels/*', { count: 2, status: 502 });
    const before = emulator.stats.serverErrors;
    const channel = await client.channels.fetch(emulator.defaults.channelId, { force: true });
    expect(channel?.id).toBe(emulator.defaults.channelId);
    expect(emulator.stats.serverErrors).toBe(before + 2);
  });

  it('GIVEN a RECONNECT in the middle of a job THEN the client resumes on resume_gateway_url and later events still arrive', async () => {
    const resumesBefore = emulator.gatewayStats.resumes;
    const resumed = new Promise<void>((resolve) => client.once(Events.ShardResume, () => resolve()));
    emulator.reconnect();
    // Sent while the client is reconnecting: must be replayed on RESUME, not lost.
    const received = nextCommand(client);
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'across a reconnect' } });
    const interaction = await received;
    await resumed;
    expect(emulator.gatewayStats.resumes).toBe(resumesBefore + 1);
    expect(emulator.gatewayStats.identifies).toBe(1);
    expect(emulator.gatewayStats.resumeUrlConnections).toBeGreaterThanOrEqual(1);
    await interaction.reply('still here');
    expect(handle.original()?.message.content).toBe('still here');

    const after = nextCommand(client);
    emulator.sendCommand({ name: 'imagine', options: { prompt: 'after' } });
    expect((await after).options.getString('prompt')).toBe('after');
  });

  it('GIVEN a seeded message the client never saw WHEN a member reacts THEN messageReactionAdd fires with a partial', async () => {
    const yesterday = new Date(Date.now() - 86_400_000);
    const seeded = emulator.seedMessage({ content: 'an old image', files: [{ name: 'old.png', bytes: await png(8, 8) }], createdAt: yesterday });
    const alice = emulator.defaults.users.alice.id;
    const event = new Promise<[MessageReaction | PartialMessageReaction, User | PartialUser]>((resolve) =>
      client.once(Events.MessageReactionAdd, (reaction, user) => resolve([reaction, user])),
    );
    emulator.addReaction({ userId: alice, messageId: seeded.message.id, emoji: '🔁' });
    const [reaction, user] = await event;
    expect(reaction.partial).toBe(true);
    expect(reaction.message.id).toBe(seeded.message.id);
    expect(reaction.emoji.name).toBe('🔁');
    expect(user.id).toBe(alice);
    const message = await reaction.message.fetch();
    expect(message.attachments.first()?.name).toBe('old.png');
    expect(message.author.id).toBe(emulator.defaults.botUserId);
    expect(Math.abs(message.createdTimestamp - yesterday.getTime())).toBeLessThan(1_000);

    // The bot's own reaction goes through REST (URL-encoded emoji) and comes back as an event too.
    const own = new Promise<User | PartialUser>((resolve) => client.once(Events.MessageReactionAdd, (_r, u) => resolve(u)));
    await message.react('❌');
    expect((await own).id).toBe(emulator.defaults.botUserId);
    expect([...emulator.message(seeded.message.id)!.reactions.keys()]).toEqual(['🔁', '❌']);
  });

  it('GIVEN bodies over Discord limits THEN the errors carry Discord codes', async () => {
    const channel = await client.channels.fetch(emulator.defaults.channelId);
    if (!channel?.isSendable()) throw new Error('expected a sendable channel');
    const codeOf = (p: Promise<unknown>) => p.then(() => 'no error', (e: DiscordAPIError) => [e.status, e.code, e.rawError]);

    const content = await codeOf(channel.send('x'.repeat(2001)));
    expect(content).toEqual([400, 50035, expect.objectContaining({ errors: { content: { _errors: [expect.objectContaining({ code: 'BASE_TYPE_MAX_LENGTH' })] } } })]);
    const tooManyEmbeds = await codeOf(channel.send({ embeds: Array.from({ length: 11 }, () => ({ description: 'e' })) }));
    expect(tooManyEmbeds.slice(0, 2)).toEqual([400, 50035]);
    const title = await codeOf(channel.send({ embeds: [{ title: 't'.repeat(257) }] }));
    expect((title as unknown[])[2]).toMatchObject({ errors: { embeds: { 0: { title: { _errors: [{ code: 'BASE_TYPE_MAX_LENGTH' }] } } } } });
    const total = await codeOf(channel.send({ embeds: [{ description: 'd'.repeat(4000) }, { description: 'd'.repeat(2001) }] }));
    expect((total as unknown[])[2]).toMatchObject({ errors: { embeds: { _errors: [{ code: 'MAX_EMBED_SIZE_EXCEEDED' }] } } });
    const empty = await codeOf(channel.send({ content: '   ' }));
    expect(empty.slice(0, 2)).toEqual([400, 50006]);
    const justRight = await channel.send({ content: 'x'.repeat(2000), embeds: [{ title: 't'.repeat(256), description: 'd'.repeat(4096) }] });
    expect(emulator.message(justRight.id)?.message.content).toHaveLength(2000);

    // An interaction carries its upload cap; one byte over is 413 / 40005.
    const received = nextCommand(client);
    emulator.sendCommand({ name: 'imagine', options: { prompt: 'big' }, attachmentSizeLimit: 1024 });
    const interaction = await received;
    expect(interaction.attachmentSizeLimit).toBe(1024);
    await interaction.deferReply();
    const tooBig = await codeOf(interaction.editReply({ files: [new AttachmentBuilder(Buffer.alloc(1025), { name: 'big.png' })] }));
    expect(tooBig.slice(0, 2)).toEqual([413, 40005]);
    const fits = await interaction.editReply({ files: [new AttachmentBuilder(Buffer.alloc(1024), { name: 'fits.png' })] });
    expect(fits.attachments.size).toBe(1);
  });

  it('GIVEN a channel reply with mentions disabled THEN it is a reply that pings nobody, and edits and deletes follow Discord', async () => {
    const channel = await client.channels.fetch(repliesChannelId);
    if (!channel?.isSendable()) throw new Error('expected a sendable channel');
    const target = emulator.seedMessage({ channelId: repliesChannelId, content: 'the original image' });
    const quiet = await channel.send({
      content: '@everyone look <@' + emulator.defaults.users.bob.id + '>',
      reply: { messageReference: target.message.id, failIfNotExists: false },
      allowedMentions: { parse: [], repliedUser: false },
    });
    const stored = emulator.message(quiet.id)!;
    expect(stored.message.type).toBe(19);
    expect(stored.message.message_reference?.message_id).toBe(target.message.id);
    expect(stored.allowedMentions).toEqual({ parse: [], replied_user: false });
    expect(stored.message.mention_everyone).toBe(false);
    expect(stored.message.mentions).toEqual([]);
    const loud = await channel.send('@everyone hello');
    expect(emulator.message(loud.id)!.message.mention_everyone).toBe(true);

    const missing = await channel
      .send({ content: 'x', reply: { messageReference: '1234567890123456789', failIfNotExists: true } })
      .catch((e: DiscordAPIError) => e);
    expect((missing as DiscordAPIError).code).toBe(50035);

    await quiet.edit({ content: 'edited' });
    expect(emulator.message(quiet.id)!.message.content).toBe('edited');
    expect(emulator.message(quiet.id)!.history.map((m) => m.content)).toEqual([quiet.content]);
    const notMine = emulator.seedMessage({ channelId: repliesChannelId, authorId: emulator.defaults.users.alice.id, content: 'mine' });
    const foreign = await client.rest
      .patch(`/channels/${repliesChannelId}/messages/${notMine.message.id}`, { body: { content: 'hijack' } })
      .catch((e: DiscordAPIError) => e);
    expect([(foreign as DiscordAPIError).status, (foreign as DiscordAPIError).code]).toEqual([403, 50005]);
    const recent = await channel.messages.fetch({ limit: 3 });
    expect([...recent.keys()]).toEqual([notMine.message.id, loud.id, quiet.id].sort((a, b) => (BigInt(b) > BigInt(a) ? 1 : -1)));
    await quiet.delete();
    expect(emulator.message(quiet.id)).toBeUndefined();
    const gone = await channel.messages.fetch({ message: quiet.id, force: true }).catch((e: DiscordAPIError) => e);
    expect((gone as DiscordAPIError).code).toBe(10008);
  });

  it('GIVEN reactions THEN removal is stored and dispatched, and a word that is no emoji is 10014', async () => {
    const seeded = emulator.seedMessage({ channelId: repliesChannelId, content: 'react to me' });
    const bob = emulator.defaults.users.bob.id;
    emulator.addReaction({ userId: bob, messageId: seeded.message.id, emoji: '❌' });
    const removed = new Promise<string>((resolve) => client.once(Events.MessageReactionRemove, (_r, user) => resolve(user.id)));
    emulator.removeReaction({ userId: bob, messageId: seeded.message.id, emoji: '❌' });
    expect(await removed).toBe(bob);
    expect(emulator.message(seeded.message.id)!.reactions.size).toBe(0);

    const channel = await client.channels.fetch(repliesChannelId);
    if (!channel?.isTextBased()) throw new Error('expected a text channel');
    const message = await channel.messages.fetch(seeded.message.id);
    await message.react('🔁');
    expect(emulator.message(seeded.message.id)!.message.reactions).toEqual([
      expect.objectContaining({ count: 1, me: true, emoji: { id: null, name: '🔁' } }),
    ]);
    const put = emulator.calls.filter((c) => c.method === 'PUT' && c.route.includes('/reactions/')).at(-1)!;
    expect(put.params.emoji).toBe('🔁');
    expect(put.status).toBe(204);
    expect(put.responseHeaders['content-type']).toBeUndefined();
    await message.reactions.cache.get('🔁')!.users.remove(client.user!.id);
    expect(emulator.message(seeded.message.id)!.reactions.size).toBe(0);
    const bad = await client.rest
      .put(`/channels/${repliesChannelId}/messages/${seeded.message.id}/reactions/repeat/@me`)
      .catch((e: DiscordAPIError) => e);
    expect([(bad as DiscordAPIError).status, (bad as DiscordAPIError).code]).toEqual([400, 10014]);
  });

  it('GIVEN a reply with a file and withResponse THEN the callback is multipart and answers the created message', async () => {
    const image = await png(16, 16);
    const received = nextCommand(client);
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'direct' } });
    const interaction = await received;
    const response = await interaction.reply({ content: 'here', files: [new AttachmentBuilder(image, { name: 'a.png' })], withResponse: true });
    expect(response.resource?.message?.id).toBe(handle.original()?.message.id);
    expect(response.resource?.message?.attachments.first()?.name).toBe('a.png');
    const callback = await handle.waitForResponse();
    expect(callback.status).toBe(200);
    expect(callback.multipart).toBe(true);
    expect(callback.body).toMatchObject({ type: 4, data: { content: 'here' } });
    expect(Buffer.compare(callback.files[0].bytes, image)).toBe(0);
    const fetched = await interaction.fetchReply();
    expect(fetched.content).toBe('here');
    await interaction.deleteReply();
    expect(handle.original()).toBeUndefined();
  });

  it('GIVEN a button on a bot message WHEN the bot defers the update and edits THEN that message changes', async () => {
    const seeded = emulator.seedMessage({ channelId: repliesChannelId, content: 'queued: #2' });
    const clicked = new Promise<import('discord.js').ButtonInteraction>((resolve) =>
      client.once(Events.InteractionCreate, (i) => i.isButton() && resolve(i)),
    );
    const handle = emulator.sendButton({ messageId: seeded.message.id, customId: 'cancel:42' });
    const button = await clicked;
    expect(button.customId).toBe('cancel:42');
    expect(button.message.id).toBe(seeded.message.id);
    await button.deferUpdate();
    await button.editReply({ content: 'cancelled' });
    expect(emulator.message(seeded.message.id)!.message.content).toBe('cancelled');
    expect(handle.original()?.message.id).toBe(seeded.message.id);
  });

  it('GIVEN member lookups THEN one member comes over REST and several over the gateway (op 8 → GUILD_MEMBERS_CHUNK)', async () => {
    const guild = client.guilds.cache.get(emulator.defaults.guildId)!;
    const { alice, bob, moderator } = emulator.defaults.users;
    const mod = await guild.members.fetch({ user: moderator.id, force: true });
    expect(mod.roles.cache.has(emulator.defaults.roles.moderator.id)).toBe(true);
    expect(mod.permissions.has('ManageMessages')).toBe(true);
    expect(emulator.calls.some((c) => c.route === '/guilds/:guildId/members/:userId' && c.params.userId === moderator.id)).toBe(true);
    const several = await guild.members.fetch({ user: [alice.id, bob.id] });
    expect([...several.keys()].sort()).toEqual([alice.id, bob.id].sort());
    expect(emulator.gateway.current!.sent.some((e) => e.t === 'GUILD_MEMBERS_CHUNK')).toBe(true);
  });

  it('GIVEN a global 429 THEN discord.js waits it out and the application can be fetched', async () => {
    emulator.injectRateLimit('GET /applications/@me', { global: true, retryAfter: 0.2 });
    const limited = new Promise<{ global: boolean }>((resolve) => client.rest.once('rateLimited', resolve));
    const application = await client.application!.fetch();
    expect(application.id).toBe(emulator.defaults.applicationId);
    expect((await limited).global).toBe(true);
    const calls = emulator.calls.filter((c) => c.path === '/applications/@me');
    expect(calls.map((c) => c.status)).toEqual([429, 200]);
    expect(calls[0].responseHeaders['x-ratelimit-global']).toBe('true');
    expect(calls[0].responseHeaders['retry-after']).toBe('0.2');
  });
});

describe('Discord emulator rules that need their own instance', () => {
  let emulator: DiscordEmulator | undefined;
  let client: Client | undefined;
  afterEach(async () => {
    await client?.destroy();
    await emulator?.close();
    client = undefined;
    emulator = undefined;
  });

  it('GIVEN deployed commands THEN they are recorded, and option types follow the definition', async () => {
    emulator = await DiscordEmulator.start();
    client = await loggedIn(emulator);
    await client.application!.commands.set([
      {
        name: 'imagine',
        description: 'Make a picture',
        options: [
          { name: 'prompt', description: 'What to draw', type: 3, required: true, max_length: 1000 },
          { name: 'guidance', description: 'CFG', type: 10 },
        ],
      },
    ]);
    expect(emulator.commands().map((c) => c.name)).toEqual(['imagine']);
    const received = nextCommand(client);
    emulator.sendCommand({ name: 'imagine', options: { prompt: 'p', guidance: 7 } });
    const interaction = await received;
    expect(interaction.commandId).toBe(emulator.commands()[0].id);
    expect(interaction.options.getNumber('guidance')).toBe(7);

    const invalid = await client.application!.commands
      .set([{ name: 'Bad Name', description: 'x' }], emulator.defaults.guildId)
      .catch((e: DiscordAPIError) => e);
    expect((invalid as DiscordAPIError).code).toBe(50035);
    const tooBig = await client.application!.commands
      .set([{ name: 'big', description: 'x', options: [{ name: 'o', description: 'd'.repeat(101), type: 3 }] }])
      .catch((e: DiscordAPIError) => e);
    expect((tooBig as DiscordAPIError).code).toBe(50035);
  });

  it('GIVEN the default webhook-edit bucket THEN headers count down and an edit storm is paced by discord.js without a 429', async () => {
    emulator = await DiscordEmulator.start({ interactionDeadlineMs: 15_000 });
    client = await loggedIn(emulator);
    const received = nextCommand(client);
    const handle = emulator.sendCommand({ name: 'imagine', options: { prompt: 'storm' } });
    const interaction = await received;
    await interaction.deferReply();
    await Promise.all(Array.from({ length: 6 }, (_, i) => interaction.editReply(`step ${i + 1}/6`)));
    const edits = handle.calls().filter((c) => c.method === 'PATCH');
    expect(edits).toHaveLength(6);
    expect(edits.every((c) => c.status === 200)).toBe(true);
    expect(emulator.stats.rateLimited).toBe(0);
    expect(edits.slice(0, 5).map((c) => c.responseHeaders['x-ratelimit-remaining'])).toEqual(['4', '3', '2', '1', '0']);
    expect(edits[0].responseHeaders['x-ratelimit-limit']).toBe('5');
    expect(edits[0].responseHeaders['x-ratelimit-bucket']).toMatch(/^[0-9a-f]{32}$/);
    // The sixth edit had to wait for the 5-per-5-s window to reset.
    expect(edits[5].at - edits[0].at).toBeGreaterThanOrEqual(4_000);
  });

  it('GIVEN a wrong bot token THEN login fails with TokenInvalid and nothing else is called', async () => {
    emulator = await DiscordEmulator.start();
    client = makeClient(emulator);
    const error = await client.login('not-the-token').catch((e: Error) => e);
    expect((error as Error & { code?: string }).code).toBe('TokenInvalid');
  });

  it('GIVEN no options THEN Discord\'s 3 s deadline and 15 min token apply; close() frees the port', async () => {
    emulator = await DiscordEmulator.start();
    expect(emulator.settings).toMatchObject({ interactionDeadlineMs: 3_000, tokenLifetimeMs: 900_000, attachmentSizeLimit: 10 * 1024 * 1024 });
    client = await loggedIn(emulator);
    const received = nextCommand(client);
    const handle = emulator.sendCommand({ name: 'imagine' });
    const interaction = await received;
    emulator.advanceTime(3_001);
    const error = await interaction.deferReply().catch((e: DiscordAPIError) => e);
    expect((error as DiscordAPIError).code).toBe(10062);
    expect(handle.status).toBe('failed');
    await client.destroy();
    client = undefined;

    const url = emulator.apiUrl;
    await emulator.close();
    await expect(fetch(`${url}/v10/gateway`)).rejects.toThrow();
  });

  it('GIVEN heartbeats THEN they are acknowledged; a zombie, a dropped socket and an invalid session are all survived', async () => {
    emulator = await DiscordEmulator.start({ heartbeatIntervalMs: 250 });
    client = await loggedIn(emulator);
    const stats = emulator.gatewayStats;
    await emulator.waitUntil(() => stats.heartbeats >= 2 && client!.ws.ping >= 0, 10_000, 'two acknowledged heartbeats');

    emulator.dropHeartbeatAcks(1);
    await emulator.waitUntil(() => stats.resumes >= 1 && emulator!.gateway.current?.live === true, 10_000, 'a resume after a zombie connection');
    const afterZombie = nextCommand(client);
    emulator.sendCommand({ name: 'imagine', options: { prompt: 'after zombie' } });
    expect((await afterZombie).options.getString('prompt')).toBe('after zombie');

    emulator.disconnect(4000);
    const duringDrop = nextCommand(client);
    emulator.sendCommand({ name: 'imagine', options: { prompt: 'during drop' } });
    expect((await duringDrop).options.getString('prompt')).toBe('during drop');
    expect(stats.resumes).toBeGreaterThanOrEqual(2);
    expect(stats.replayed).toBeGreaterThanOrEqual(1);

    emulator.invalidateSession(false);
    await emulator.waitUntil(() => stats.identifies === 2 && emulator!.gateway.current?.live === true, 10_000, 'a fresh identify');
    const afterInvalid = nextCommand(client);
    emulator.sendCommand({ name: 'imagine', options: { prompt: 'fresh session' } });
    expect((await afterInvalid).options.getString('prompt')).toBe('fresh session');
  });

  it('GIVEN a privileged intent the application has not switched on THEN the gateway closes with 4014 and login fails', async () => {
    emulator = await DiscordEmulator.start();
    client = new Client({ intents: [GatewayIntentBits.Guilds, GatewayIntentBits.MessageContent], rest: { api: emulator.apiUrl } });
    const failed = new Promise<number>((resolve) => client!.on(Events.ShardDisconnect, (event) => resolve(event.code)));
    void client.login(emulator.token).catch(() => undefined);
    expect(await failed).toBe(4014);
    expect(emulator.gatewayStats.identifies).toBe(0);
  });

  it('GIVEN a client without the reactions intent THEN Discord sends it no reaction events', async () => {
    emulator = await DiscordEmulator.start();
    client = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api: emulator.apiUrl } });
    await client.login(emulator.token);
    await emulator.waitForReady();
    const seeded = emulator.seedMessage({ content: 'x' });
    emulator.addReaction({ userId: emulator.defaults.users.alice.id, messageId: seeded.message.id, emoji: '🔁' });
    const sent = emulator.gateway.current!.sent.map((e) => e.t);
    expect(sent).toContain('GUILD_CREATE');
    expect(sent).not.toContain('MESSAGE_REACTION_ADD');
    expect(emulator.message(seeded.message.id)!.reactions.get('🔁')).toEqual(new Set([emulator.defaults.users.alice.id]));
  });
});
