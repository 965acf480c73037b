/**
 * The playground's HTTP API with the whole bot behind it (the stand-in engine, for speed): what the page sends
 * reaches the bot as Discord interactions and reactions, and every message change comes back on the event stream,
 * ephemeral ones marked for their member only. The browser test drives the same API through the page.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPlaygroundApp, type PlaygroundApp } from '../../src/app.js';
import { parseConfig } from '../../src/config.js';
import type { MessageView } from '../../src/playground/message-view.js';
import { captureLogger, eventually } from '../../tools/discord-emulator/harness.js';

describe('the playground API', () => {
  let app: PlaygroundApp;
  let base: string;
  let dataDir: string;
  const logs: string[] = [];
  /** Every `message` event heard on one stream, latest view per id. */
  const views = new Map<string, MessageView>();
  /** Every `message` event, in order. */
  const heard: MessageView[] = [];
  const notices: unknown[] = [];
  let snapshot: MessageView[] | undefined;
  const stream = new AbortController();

  const member = (name: string) => app.playground.members.find((m) => m.name === name)!.id;
  const post = (route: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${base}/playground/${route}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

  async function listen(): Promise<void> {
    const response = await fetch(`${base}/playground/events`, { signal: stream.signal });
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    void (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          buffer += value;
          let end: number;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const frame = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const event = /^event: (.+)$/m.exec(frame)?.[1];
            const data = /^data: (.+)$/m.exec(frame)?.[1];
            if (!event || !data) continue;
            if (event === 'snapshot') snapshot = JSON.parse(data).messages;
            if (event === 'message') {
              const view = JSON.parse(data) as MessageView;
              views.set(view.id, view);
              heard.push(view);
            }
            if (event === 'notice') notices.push(JSON.parse(data));
          }
        }
      } catch {
        // Aborted at the end of the file.
      }
    })();
  }

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'imagine-playground-api-'));
    const config = parseConfig({ PLAYGROUND_PORT: '0', DATA_DIR: dataDir, SAMPLER: 'stand-in', STAND_IN_STEP_MS: '20', EDIT_INTERVAL_MS: '200' });
    app = await startPlaygroundApp(config, { logger: captureLogger(logs) });
    base = app.playground.url.replace(/\/$/, '');
    await listen();
    await eventually(() => snapshot, 10_000, 'the snapshot');
  });

  afterAll(async () => {
    stream.abort();
    await app?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('GIVEN the playground THEN it is on loopback, with the page, three members (one a moderator) and the bot’s commands', async () => {
    expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const page = await fetch(`${base}/`);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(await page.text()).toContain('/playground/page.js');
    expect((await fetch(`${base}/playground/page.js`)).headers.get('content-type')).toContain('javascript');
    const state = await (await fetch(`${base}/playground/state`)).json();
    expect(state.members.map((m: { name: string; moderator: boolean }) => [m.name, m.moderator])).toEqual([
      ['Alice', false],
      ['Bob', false],
      ['Mod', true],
    ]);
    expect(state.commands.map((c: { name: string }) => c.name).sort()).toEqual(['help', 'imagine', 'queue', 'settings']);
    // The journal is the playground's own, beside where the real bot's would be.
    expect(app.config.dataDir).toBe(path.join(dataDir, 'playground'));
  });

  it('GIVEN another site in the browser THEN it cannot drive the bot (Host, Origin, content type)', async () => {
    const alice = member('Alice');
    // fetch() may not set Host (a rebinding DNS name would): a raw request does.
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const url = new URL(`${base}/playground/state`);
      http.get({ host: url.hostname, port: url.port, path: url.pathname, headers: { host: `evil.example:${url.port}` } }, (res) => {
        res.resume();
        resolve(res.statusCode);
      }).on('error', reject);
    });
    expect(status).toBe(403);
    expect((await post('command', { userId: alice, text: '/help' }, { origin: 'http://evil.example' })).status).toBe(403);
    const form = await fetch(`${base}/playground/command`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' });
    expect(form.status).toBe(415);
    expect((await post('command', { userId: 'someone-else', text: '/help' })).status).toBe(400);
  });

  it('GIVEN a line Discord’s client would not send THEN 400 with the reason, and nothing reaches the bot', async () => {
    const calls = app.playground.emulator.calls.length;
    const response = await post('command', { userId: member('Alice'), text: '/imagine steps:ten' });
    expect(response.status).toBe(400);
    expect((await response.json()).error).toMatch(/needs `prompt:`/);
    expect(app.playground.emulator.calls.length).toBe(calls);
  });

  it('GIVEN Alice’s /imagine THEN the stream shows "Alice used /imagine", progress, then the picture with its embed', async () => {
    const response = await post('command', { userId: member('Alice'), text: '/imagine prompt:a red circle steps:5' });
    expect(response.status).toBe(200);
    expect((await response.json()).command).toBe('/imagine');
    const done = await eventually(
      () => [...views.values()].find((v) => v.command?.userName === 'Alice' && v.embeds[0]?.image?.url.startsWith('http')),
      30_000,
      'the picture',
    );
    expect(done).toMatchObject({ visibleTo: null, ephemeral: false, loading: false, command: { line: '/imagine' } });
    const before = heard.filter((v) => v.id === done.id).map((v) => (v.loading ? 'thinking' : v.content));
    expect(before[0]).toBe('thinking');
    expect(before.some((content) => /Step \d\/5/.test(content))).toBe(true);
    // The picture is shown by the embed, not a second time as an attachment.
    expect(done.attachments).toEqual([]);
    expect((await fetch(done.embeds[0]!.image!.url)).headers.get('content-type')).toBe('image/png');
    await eventually(() => views.get(done.id)?.reactions.some((r) => r.emoji === '🔁'), 10_000, 'the 🔁 reaction');
  });

  it('GIVEN Alice reacts 🔁 on her picture THEN a new picture arrives as a reply; a reaction on an ephemeral reply is refused', async () => {
    const picture = [...views.values()].find((v) => v.command?.userName === 'Alice' && v.embeds.length > 0)!;
    expect((await post('reaction', { userId: member('Alice'), messageId: picture.id, emoji: '🔁' })).status).toBe(200);
    await eventually(() => [...views.values()].find((v) => v.replyTo?.id === picture.id && v.embeds[0]?.image), 30_000, 'the reroll');

    expect((await post('command', { userId: member('Bob'), text: '/settings show' })).status).toBe(200);
    const ephemeral = await eventually(() => [...views.values()].find((v) => v.command?.line === '/settings show'), 10_000, 'the settings');
    expect(ephemeral).toMatchObject({ ephemeral: true, visibleTo: member('Bob') });
    const refused = await post('reaction', { userId: member('Bob'), messageId: ephemeral.id, emoji: '🔁' });
    expect(refused.status).toBe(400);
  });

  it('GIVEN a button on a bot message WHEN clicked THEN the bot gets the click; unanswered, the member is told after 3 s', async () => {
    const { emulator } = app.playground;
    const posted = await fetch(`${emulator.apiUrl}/v10/channels/${emulator.defaults.channelId}/messages`, {
      method: 'POST',
      headers: { authorization: `Bot ${emulator.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ content: 'buttons', components: [{ type: 1, components: [{ type: 2, style: 1, label: 'Again', custom_id: 'again' }] }] }),
    });
    const message = (await posted.json()) as { id: string };
    const view = await eventually(() => views.get(message.id), 10_000, 'the message with a button');
    expect(view.components).toEqual([{ type: 1, components: [{ type: 2, style: 1, label: 'Again', custom_id: 'again' }] }]);

    const clicked = await post('button', { userId: member('Alice'), messageId: message.id, customId: 'again' });
    expect(clicked.status).toBe(200);
    const { interactionId } = (await clicked.json()) as { interactionId: string };
    expect(emulator.interaction(interactionId)).toMatchObject({ type: 3, userId: member('Alice') });
    // The bot has no buttons of its own yet and leaves this one unanswered, as Discord then says.
    await eventually(() => notices.length > 0, 10_000, 'the notice');
    expect(notices).toEqual([{ userId: member('Alice'), text: 'The application did not respond.', at: expect.any(String) }]);
    notices.length = 0;
  });

  it('GIVEN a member’s refusal THEN it is marked for that member only', async () => {
    expect((await post('command', { userId: member('Bob'), text: '/settings limits per-member:1' })).status).toBe(200);
    const refusal = await eventually(() => [...views.values()].find((v) => v.command?.line === '/settings limits'), 10_000, 'the refusal');
    expect(refusal).toMatchObject({ ephemeral: true, visibleTo: member('Bob') });
    expect(refusal.content).toMatch(/Manage Server/);
    expect(notices).toEqual([]);
  });
});
