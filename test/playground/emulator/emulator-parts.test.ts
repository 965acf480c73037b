import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError } from '../../../src/playground/emulator/api-error.js';
import { COMMAND_LIMITS, validateCommands } from '../../../src/playground/emulator/command-limits.js';
import { MESSAGE_LIMITS, validateFiles, validateMessageBody } from '../../../src/playground/emulator/message-limits.js';
import { pngSize } from '../../../src/playground/emulator/message-store.js';
import { parseBody } from '../../../src/playground/emulator/multipart.js';
import { channelWebhookEditRule, matches, RateLimiter, type RouteRequest } from '../../../src/playground/emulator/rate-limits.js';
import { DiscordEmulator } from '../../../src/playground/emulator/index.js';

/** The ApiError a call throws, or undefined. */
function thrown(fn: () => unknown): ApiError | undefined {
  try {
    fn();
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  return undefined;
}

const field = (i: number) => ({ name: `n${i}`, value: 'v' });

describe('message limits', () => {
  it('GIVEN buttons at Discord’s limits THEN they pass; a sixth row, a sixth button, a 101-character or repeated custom id are 50035 naming the field', () => {
    const button = (id: string) => ({ type: 2, style: 1, label: 'U1', custom_id: id });
    const row = (r: number, n = 5) => ({ type: 1, components: Array.from({ length: n }, (_, b) => button(`r${r}b${b}`)) });
    const fiveByFive = Array.from({ length: 5 }, (_, r) => row(r));
    expect(thrown(() => validateMessageBody({ components: fiveByFive }))).toBeUndefined();
    expect(thrown(() => validateMessageBody({ components: [{ type: 1, components: [button('x'.repeat(100))] }] }))).toBeUndefined();
    const errorsOf = (components: unknown) => thrown(() => validateMessageBody({ components }))?.body.errors;
    expect(errorsOf([...fiveByFive, row(5, 1)])).toEqual({ components: { _errors: [{ code: 'BASE_TYPE_MAX_LENGTH', message: 'Must be 5 or fewer in length.' }] } });
    expect(errorsOf([row(0, 6)])).toMatchObject({ components: { 0: { components: { _errors: [{ code: 'BASE_TYPE_BAD_LENGTH' }] } } } });
    expect(errorsOf([{ type: 1, components: [button('x'.repeat(101))] }])).toMatchObject({
      components: { 0: { components: { 0: { custom_id: { _errors: [{ code: 'BASE_TYPE_MAX_LENGTH' }] } } } } },
    });
    expect(errorsOf([{ type: 1, components: [button('same')] }, { type: 1, components: [button('same')] }])).toMatchObject({
      components: { 1: { components: { 0: { custom_id: { _errors: [{ code: 'COMPONENT_CUSTOM_ID_DUPLICATED' }] } } } } },
    });
  });

  it('GIVEN content at 2000 and 2001 characters THEN only the longer one is 50035 on `content`', () => {
    expect(thrown(() => validateMessageBody({ content: 'x'.repeat(MESSAGE_LIMITS.content) }))).toBeUndefined();
    const error = thrown(() => validateMessageBody({ content: 'x'.repeat(MESSAGE_LIMITS.content + 1) }));
    expect([error?.status, error?.code]).toEqual([400, 50035]);
    expect(error?.body.errors).toEqual({ content: { _errors: [{ code: 'BASE_TYPE_MAX_LENGTH', message: 'Must be 2000 or fewer in length.' }] } });
  });

  it('GIVEN embeds at each limit THEN they pass, and one over names the field', () => {
    const atLimits = [
      {
        title: 't'.repeat(256),
        description: 'd'.repeat(1000),
        footer: { text: 'f'.repeat(1000) },
        fields: Array.from({ length: 25 }, (_, i) => field(i)),
      },
    ];
    expect(thrown(() => validateMessageBody({ embeds: atLimits }))).toBeUndefined();
    expect(thrown(() => validateMessageBody({ embeds: Array.from({ length: 10 }, () => ({ title: 'x' })) }))).toBeUndefined();

    const cases: [unknown, Record<string, unknown>][] = [
      [[{ title: 't'.repeat(257) }], { embeds: { 0: { title: {} } } }],
      [[{ description: 'd'.repeat(4097) }], { embeds: { 0: { description: {} } } }],
      [[{ footer: { text: 'f'.repeat(2049) } }], { embeds: { 0: { footer: { text: {} } } } }],
      [[{ fields: Array.from({ length: 26 }, (_, i) => field(i)) }], { embeds: { 0: { fields: {} } } }],
      [[{ fields: [{ name: 'n', value: 'v'.repeat(1025) }] }], { embeds: { 0: { fields: { 0: { value: {} } } } } }],
      [Array.from({ length: 11 }, () => ({ title: 'x' })), { embeds: {} }],
    ];
    for (const [embeds, path] of cases) {
      const error = thrown(() => validateMessageBody({ embeds }));
      expect(error?.code).toBe(50035);
      expect(error?.body.errors).toMatchObject(path);
    }
  });

  it('GIVEN embeds totalling exactly 6000 and 6001 characters THEN only the larger is MAX_EMBED_SIZE_EXCEEDED', () => {
    const exact = [{ description: 'd'.repeat(4096) }, { description: 'd'.repeat(1904) }];
    expect(thrown(() => validateMessageBody({ embeds: exact }))).toBeUndefined();
    const over = [{ description: 'd'.repeat(4096) }, { description: 'd'.repeat(1904), title: 't' }];
    expect(thrown(() => validateMessageBody({ embeds: over }))?.body.errors).toEqual({
      embeds: { _errors: [{ code: 'MAX_EMBED_SIZE_EXCEEDED', message: 'Embed size exceeds maximum size of 6000' }] },
    });
  });

  it('GIVEN embed URLs and allowed_mentions THEN bad schemes and parse/list clashes are 50035, attachment:// only for images', () => {
    expect(thrown(() => validateMessageBody({ embeds: [{ image: { url: 'attachment://a.png' }, url: 'https://x.test/' }] }))).toBeUndefined();
    expect(thrown(() => validateMessageBody({ embeds: [{ url: 'attachment://a.png' }] }))?.body.errors).toMatchObject({ embeds: { 0: { url: {} } } });
    expect(thrown(() => validateMessageBody({ embeds: [{ thumbnail: { url: 'ftp://x.test/a.png' } }] }))?.code).toBe(50035);
    expect(thrown(() => validateMessageBody({ allowed_mentions: { parse: [], users: ['1'] } }))).toBeUndefined();
    const clash = thrown(() => validateMessageBody({ allowed_mentions: { parse: ['users'], users: ['1'] } }));
    expect(clash?.body.errors).toMatchObject({ allowed_mentions: { _errors: [{ code: 'MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE' }] } });
  });

  it('GIVEN a file at the cap and one byte over THEN only the larger is 413 / 40005', () => {
    const file = (size: number) => ({ field: 'files[0]', name: 'a.png', contentType: 'image/png', bytes: Buffer.alloc(size) });
    expect(thrown(() => validateFiles([file(1000)], 1000))).toBeUndefined();
    const error = thrown(() => validateFiles([file(1001)], 1000));
    expect([error?.status, error?.code]).toEqual([413, 40005]);
  });

  it('GIVEN 10 files THEN accepted; 11 THEN 400 / 30015 (Discord takes at most 10 attachments a message)', () => {
    const files = (n: number) => Array.from({ length: n }, (_, i) => ({ field: `files[${i}]`, name: `${i}.png`, contentType: 'image/png', bytes: Buffer.alloc(10) }));
    expect(thrown(() => validateFiles(files(10), 1000))).toBeUndefined();
    const error = thrown(() => validateFiles(files(11), 1000));
    expect([error?.status, error?.code]).toEqual([400, 30015]);
  });
});

describe('command limits', () => {
  const option = (i: number, extra: Record<string, unknown> = {}) => ({ name: `o${i}`, description: 'd', type: 3, ...extra });

  it('GIVEN 25 options THEN accepted; 26, uppercase, a long description, or required after optional THEN 50035 at the path', () => {
    expect(() => validateCommands([{ name: 'imagine', description: 'x', options: Array.from({ length: 25 }, (_, i) => option(i)) }])).not.toThrow();
    const cases: [unknown, Record<string, unknown>][] = [
      [[{ name: 'imagine', description: 'x', options: Array.from({ length: 26 }, (_, i) => option(i)) }], { 0: { options: {} } }],
      [[{ name: 'Imagine', description: 'x' }], { 0: { name: {} } }],
      [[{ name: 'imagine', description: 'x', options: [option(0, { description: 'd'.repeat(101) })] }], { 0: { options: { 0: { description: {} } } } }],
      [[{ name: 'imagine', description: 'x', options: [option(0), option(1, { required: true })] }], { 0: { options: {} } }],
      [[{ name: 'imagine', description: 'x', options: [option(0, { max_length: 6001 })] }], { 0: { options: { 0: { max_length: {} } } } }],
      [[{ name: 'a', description: 'x' }, { name: 'a', description: 'y' }], { 1: { name: {} } }],
    ];
    for (const [body, path] of cases) {
      const error = thrown(() => validateCommands(body));
      expect(error?.code).toBe(50035);
      expect(error?.body.errors).toMatchObject(path);
    }
  });

  it('GIVEN a command over 8000 characters in all THEN APPLICATION_COMMAND_TOO_LARGE', () => {
    const choices = Array.from({ length: 25 }, (_, i) => ({ name: `c${i}`.padEnd(100, 'x'), value: `v${i}`.padEnd(100, 'y') }));
    const options = Array.from({ length: 2 }, (_, i) => option(i, { description: 'd'.repeat(100), choices }));
    const error = thrown(() => validateCommands([{ name: 'big', description: 'x', options }]));
    expect(JSON.stringify(error?.body.errors)).toContain('APPLICATION_COMMAND_TOO_LARGE');
    expect(COMMAND_LIMITS.totalCharacters).toBe(8000);
  });
});

describe('multipart bodies', () => {
  it('GIVEN a multipart body like discord.js sends THEN payload_json and each file come back byte for byte', async () => {
    const image = await sharp({ create: { width: 5, height: 3, channels: 3, background: '#123456' } }).png().toBuffer();
    const form = new FormData();
    form.append('payload_json', JSON.stringify({ content: 'hi', attachments: [{ id: 0 }, { id: 1 }] }));
    form.append('files[0]', new Blob([image], { type: 'image/png' }), 'a.png');
    form.append('files[1]', new Blob([Buffer.from('text')], { type: 'text/plain' }), 'b.txt');
    const request = new Request('http://x/', { method: 'POST', body: form });
    const raw = Buffer.from(await request.arrayBuffer());
    const parsed = await parseBody(request.headers.get('content-type')!, raw);
    expect(parsed.multipart).toBe(true);
    expect(parsed.json).toEqual({ content: 'hi', attachments: [{ id: 0 }, { id: 1 }] });
    expect(parsed.files.map((f) => [f.field, f.name, f.contentType])).toEqual([
      ['files[0]', 'a.png', 'image/png'],
      ['files[1]', 'b.txt', 'text/plain'],
    ]);
    expect(Buffer.compare(parsed.files[0].bytes, image)).toBe(0);
    expect(pngSize(parsed.files[0].bytes)).toEqual({ width: 5, height: 3 });
    expect(pngSize(parsed.files[1].bytes)).toBeUndefined();
  });

  it('GIVEN broken JSON THEN 50109', async () => {
    const error = await parseBody('application/json', Buffer.from('{nope')).catch((e: ApiError) => e);
    expect((error as ApiError).code).toBe(50109);
  });
});

describe('rate limiter', () => {
  const request = (path: string, method = 'PATCH'): RouteRequest => ({
    method,
    path,
    route: '/webhooks/:applicationId/:token/messages/:messageId',
    params: { applicationId: '1', token: 'tok', messageId: path.split('/').at(-1)! },
  });

  it('GIVEN a 2-per-window bucket keyed per message THEN the third call is limited with Retry-After, other messages are not, and the window resets', async () => {
    const limiter = new RateLimiter([{ bucket: 'edits', match: 'PATCH /webhooks/*', limit: 2, windowMs: 150, key: (r) => r.params.messageId }]);
    const first = limiter.decide(request('/webhooks/1/tok/messages/a'));
    const second = limiter.decide(request('/webhooks/1/tok/messages/a'));
    const third = limiter.decide(request('/webhooks/1/tok/messages/a'));
    expect([first.headers['X-RateLimit-Remaining'], second.headers['X-RateLimit-Remaining']]).toEqual(['1', '0']);
    expect(first.headers['X-RateLimit-Limit']).toBe('2');
    expect(third.limited).toBeDefined();
    expect(Number(third.headers['Retry-After'])).toBeGreaterThan(0);
    expect(Number(third.headers['Retry-After'])).toBeLessThanOrEqual(0.15);
    expect(limiter.decide(request('/webhooks/1/tok/messages/b')).limited).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(limiter.decide(request('/webhooks/1/tok/messages/a')).limited).toBeUndefined();
  });

  it('GIVEN injected faults THEN exactly `count` matching requests get them, in order, and others pass', () => {
    const limiter = new RateLimiter([]);
    limiter.inject('429', { match: 'PATCH /webhooks/*', count: 2, retryAfter: 1.5 });
    limiter.inject('5xx', { match: /GET \/channels/, status: 503 });
    expect(limiter.decide(request('/channels/1', 'POST')).limited).toBeUndefined();
    expect(limiter.decide(request('/webhooks/1/tok/messages/a')).limited).toEqual({ retryAfter: 1.5, global: false });
    expect(limiter.decide(request('/webhooks/1/tok/messages/a')).headers['Retry-After']).toBe('1.5');
    expect(limiter.decide(request('/webhooks/1/tok/messages/a')).limited).toBeUndefined();
    expect(limiter.decide(request('/channels/1', 'GET')).serverError).toBe(503);
    expect(limiter.decide(request('/channels/1', 'GET')).serverError).toBeUndefined();
    expect(limiter.pendingFaults()).toBe(0);
  });

  it('GIVEN a per-message and a per-channel bucket THEN both count, the tighter one is reported, and either can limit', () => {
    const limiter = new RateLimiter([
      { bucket: 'per-message', match: 'PATCH /webhooks/*', limit: 5, windowMs: 60_000, key: (r) => r.params.messageId },
      channelWebhookEditRule(3, 60_000),
    ]);
    const inChannel = (message: string) => ({ ...request(`/webhooks/1/tok/messages/${message}`), channelId: 'c1' });
    const first = limiter.decide(inChannel('a'));
    expect([first.headers['X-RateLimit-Limit'], first.headers['X-RateLimit-Remaining']]).toEqual(['3', '2']);
    expect(limiter.decide(inChannel('b')).limited).toBeUndefined();
    expect(limiter.decide(inChannel('c')).limited).toBeUndefined();
    // Three edits in the channel: a fourth message is limited by the channel bucket, not its own.
    const fourth = limiter.decide(inChannel('d'));
    expect(fourth.limited).toBeDefined();
    expect(fourth.headers['X-RateLimit-Limit']).toBe('3');
    // Another channel is unaffected.
    expect(limiter.decide({ ...request('/webhooks/1/tok/messages/e'), channelId: 'c2' }).limited).toBeUndefined();
  });

  it('GIVEN matchers THEN globs, RegExps and functions see both the path and the route template', () => {
    const r = request('/webhooks/1/tok/messages/@original');
    expect(matches('PATCH /webhooks/*/messages/@original', r)).toBe(true);
    expect(matches('PATCH /webhooks/:applicationId/:token/messages/:messageId', r)).toBe(true);
    expect(matches('POST /webhooks/*', r)).toBe(false);
    expect(matches(/messages\/@original$/, r)).toBe(true);
    expect(matches((x) => x.params.token === 'tok', r)).toBe(true);
  });
});

describe('REST edges over HTTP', () => {
  let emulator: DiscordEmulator;
  const auth = () => ({ authorization: `Bot ${emulator.token}` });

  beforeAll(async () => {
    emulator = await DiscordEmulator.start({ maxRequestBytes: 64 * 1024 });
  });
  afterAll(async () => {
    await emulator.close();
  });

  it('GIVEN bot routes THEN a missing token is 401, an unknown route 404 and a wrong method 405, all with Discord bodies', async () => {
    const noAuth = await fetch(`${emulator.apiUrl}/v10/users/@me`);
    expect([noAuth.status, await noAuth.json()]).toEqual([401, { message: '401: Unauthorized', code: 0 }]);
    const me = await fetch(`${emulator.apiUrl}/v10/users/@me`, { headers: auth() });
    expect((await me.json()).id).toBe(emulator.defaults.botUserId);
    expect(me.headers.get('x-ratelimit-bucket')).toMatch(/^[0-9a-f]{32}$/);
    const unknown = await fetch(`${emulator.apiUrl}/v10/nothing/here`, { headers: auth() });
    expect([unknown.status, (await unknown.json()).code]).toEqual([404, 0]);
    const wrongMethod = await fetch(`${emulator.apiUrl}/v10/users/@me`, { method: 'DELETE', headers: auth() });
    expect(wrongMethod.status).toBe(405);
    const oldVersion = await fetch(`${emulator.apiUrl}/v9/users/@me`, { headers: auth() });
    expect([oldVersion.status, (await oldVersion.json()).code]).toEqual([400, 50041]);
  });

  it('GIVEN %40original THEN it is decoded to @original, and an unknown token is 401 50027 without touching bot auth', async () => {
    const response = await fetch(`${emulator.apiUrl}/v10/webhooks/${emulator.defaults.applicationId}/not-a-token/messages/%40original`);
    expect([response.status, (await response.json()).code]).toEqual([401, 50027]);
    const call = emulator.calls.at(-1)!;
    expect(call.path.endsWith('/messages/@original')).toBe(true);
    expect(call.params.messageId).toBe('@original');
  });

  it('GIVEN a body over maxRequestBytes THEN 413 40005', async () => {
    const response = await fetch(`${emulator.apiUrl}/v10/channels/${emulator.defaults.channelId}/messages`, {
      method: 'POST',
      headers: { ...auth(), 'content-type': 'application/json' },
      body: JSON.stringify({ content: 'x'.repeat(128 * 1024) }),
    });
    expect([response.status, (await response.json()).code]).toEqual([413, 40005]);
  });

  it('GIVEN a raw gateway socket THEN HELLO comes first, v9 is refused with 4012 and IDENTIFY with a bad token with 4004', async () => {
    const { WebSocket } = await import('ws');
    const open = (query: string) => new WebSocket(`${emulator.gatewayUrl}?${query}`);
    const closeCode = (socket: InstanceType<typeof WebSocket>) => new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)));

    expect(await closeCode(open('v=9&encoding=json'))).toBe(4012);

    const socket = open('v=10&encoding=json');
    const hello = await new Promise<{ op: number; d: { heartbeat_interval: number } }>((resolve) =>
      socket.once('message', (data) => resolve(JSON.parse(String(data)))),
    );
    expect(hello.op).toBe(10);
    expect(hello.d.heartbeat_interval).toBe(41_250);
    const closed = closeCode(socket);
    socket.send(JSON.stringify({ op: 2, d: { token: 'wrong', intents: 1, properties: {} } }));
    expect(await closed).toBe(4004);
  });

  it('GIVEN a 204 THEN it has no Content-Type, and attachments are served from their URL', async () => {
    const seeded = emulator.seedMessage({ content: 'x', files: [{ name: 'p.bin', bytes: Buffer.from([1, 2, 3]), contentType: 'application/octet-stream' }] });
    const put = await fetch(`${emulator.apiUrl}/v10/channels/${emulator.defaults.channelId}/messages/${seeded.message.id}/reactions/${encodeURIComponent('🔁')}/@me`, {
      method: 'PUT',
      headers: auth(),
    });
    expect(put.status).toBe(204);
    expect(put.headers.get('content-type')).toBeNull();
    expect(emulator.message(seeded.message.id)!.reactions.get('🔁')).toEqual(new Set([emulator.defaults.botUserId]));
    const file = await fetch(seeded.message.attachments[0].url);
    expect([...new Uint8Array(await file.arrayBuffer())]).toEqual([1, 2, 3]);
  });
});

describe('what the playground builds on', () => {
  it('GIVEN a fixed port and names THEN the emulator listens there, and a second one on that port fails with EADDRINUSE', async () => {
    const first = await DiscordEmulator.start({ botUsername: 'imagine', guildName: 'Playground' });
    try {
      const port = first.port;
      await first.close();
      const fixed = await DiscordEmulator.start({ port, botUsername: 'imagine', guildName: 'Playground' });
      try {
        expect(fixed.baseUrl).toBe(`http://127.0.0.1:${port}`);
        expect(fixed.world.user(fixed.defaults.botUserId).username).toBe('imagine');
        expect(fixed.world.guild(fixed.defaults.guildId).name).toBe('Playground');
        await expect(DiscordEmulator.start({ port })).rejects.toMatchObject({ code: 'EADDRINUSE' });
      } finally {
        await fixed.close();
      }
    } finally {
      await first.close();
    }
  });

  it('GIVEN a page handler THEN it answers paths outside /api/ and /attachments/, and the API is untouched', async () => {
    const emulator = await DiscordEmulator.start();
    try {
      emulator.servePages((_req, res, url) => {
        if (url.pathname !== '/hello') return false;
        res.end('page');
        return true;
      });
      expect(await (await fetch(`${emulator.baseUrl}/hello`)).text()).toBe('page');
      expect((await fetch(`${emulator.baseUrl}/elsewhere`)).status).toBe(404);
      const me = await fetch(`${emulator.apiUrl}/v10/users/@me`, { headers: { authorization: `Bot ${emulator.token}` } });
      expect(me.status).toBe(200);
    } finally {
      await emulator.close();
    }
  });

  it('GIVEN a store listener THEN it hears creates, edits, reaction changes and deletes, in order', async () => {
    const emulator = await DiscordEmulator.start();
    try {
      const heard: string[] = [];
      const stop = emulator.store.subscribe((stored) =>
        heard.push(`${stored.message.content}:${stored.reactions.size}:${stored.deleted}`),
      );
      const auth = { authorization: `Bot ${emulator.token}`, 'content-type': 'application/json' };
      const base = `${emulator.apiUrl}/v10/channels/${emulator.defaults.channelId}/messages`;
      const created = await (await fetch(base, { method: 'POST', headers: auth, body: JSON.stringify({ content: 'a' }) })).json();
      await fetch(`${base}/${created.id}`, { method: 'PATCH', headers: auth, body: JSON.stringify({ content: 'b' }) });
      emulator.addReaction({ userId: emulator.defaults.users.alice.id, messageId: created.id, emoji: '🔁' });
      await fetch(`${base}/${created.id}`, { method: 'DELETE', headers: auth });
      stop();
      emulator.seedMessage({ content: 'unheard' });
      expect(heard).toEqual(['a:0:false', 'b:0:false', 'b:1:false', 'b:1:true']);
    } finally {
      await emulator.close();
    }
  });
});
