import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isUserError } from '../../src/errors.js';
import { fetchPicture, type FetchPictureOptions } from '../../src/image/fetch-picture.js';

type Route = (req: IncomingMessage, res: ServerResponse) => void;
const routes = new Map<string, Route>();
let server: Server;
let base: string;
let png: Buffer;

beforeAll(async () => {
  png = await sharp({ create: { width: 30, height: 20, channels: 3, background: { r: 9, g: 99, b: 199 } } }).png().toBuffer();
  const gif = await sharp({ create: { width: 8, height: 8, channels: 3, background: 'red' } }).gif().toBuffer();
  const send = (type: string | undefined, body: Buffer): Route => (_, res) => {
    res.writeHead(200, type ? { 'content-type': type } : {});
    res.end(body);
  };
  routes.set('/cat.png', send('image/png', png));
  routes.set('/no-type', send(undefined, png));
  routes.set('/lying.png', send('image/png', Buffer.from('<html>not a picture</html>')));
  routes.set('/page', send('text/html; charset=utf-8', Buffer.from('<html></html>')));
  routes.set('/anim.gif', send('image/gif', gif));
  routes.set('/missing', (_, res) => res.writeHead(404).end());
  routes.set('/hop1', (_, res) => res.writeHead(302, { location: '/hop2' }).end());
  routes.set('/hop2', (_, res) => res.writeHead(301, { location: `${base}/cat.png` }).end());
  routes.set('/loop', (_, res) => res.writeHead(302, { location: '/loop' }).end());
  routes.set('/to-file', (_, res) => res.writeHead(302, { location: 'file:///etc/passwd' }).end());
  routes.set('/huge-declared', (_, res) => {
    res.writeHead(200, { 'content-type': 'image/png', 'content-length': String(64 * 1024 * 1024) });
    res.end();
  });
  routes.set('/huge-chunked', (_, res) => {
    // No Content-Length: the cap must stop the stream itself.
    res.writeHead(200, { 'content-type': 'image/png' });
    const chunk = Buffer.alloc(64 * 1024, 1);
    let sent = 0;
    const pump = () => {
      while (sent < 100 && res.write(chunk)) sent++;
      if (sent < 100) res.once('drain', pump);
      else res.end();
    };
    res.on('error', () => {});
    pump();
  });
  routes.set('/slow', (_, res) => {
    res.writeHead(200, { 'content-type': 'image/png' });
    res.write(png.subarray(0, 10));
    // Never ends; the client's timeout must.
  });
  server = createServer((req, res) => {
    const route = routes.get(new URL(req.url ?? '/', 'http://x').pathname);
    if (route) route(req, res);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

async function refusal(path: string, options?: FetchPictureOptions): Promise<string> {
  let error: unknown;
  try {
    await fetchPicture(path.startsWith('/') ? `${base}${path}` : path, options);
  } catch (e) {
    error = e;
  }
  expect(isUserError(error)).toBe(true);
  const message = (error as Error).message;
  expect(message).not.toContain('\n');
  return message;
}

describe('fetchPicture', () => {
  it('GIVEN a PNG THEN its bytes, format and size', async () => {
    const picture = await fetchPicture(`${base}/cat.png`);
    expect(Buffer.from(picture.bytes).equals(png)).toBe(true);
    expect(picture).toMatchObject({ format: 'png', width: 30, height: 20 });
  });

  it('GIVEN no Content-Type THEN the bytes decide', async () => {
    expect((await fetchPicture(`${base}/no-type`)).format).toBe('png');
  });

  it('GIVEN two redirects within the limit THEN it follows them', async () => {
    expect((await fetchPicture(`${base}/hop1`)).width).toBe(30);
  });

  const cases: [string, string, FetchPictureOptions | undefined, RegExp][] = [
    ['a file named .png that is not a picture', '/lying.png', undefined, /^Expected a picture \(PNG, JPEG or WebP\), got a file that is not a picture$/],
    ['a web page', '/page', undefined, /^Expected a picture \(PNG, JPEG or WebP\), got a file of type `text\/html`$/],
    ['a GIF', '/anim.gif', undefined, /got a gif file$/],
    ['a 404', '/missing', undefined, /^Could not download the picture: HTTP 404$/],
    ['a redirect loop', '/loop', undefined, /^The picture's address redirected more than 3 times$/],
    ['more redirects than allowed', '/hop1', { maxRedirects: 1 }, /redirected more than 1 times/],
    ['a redirect to a file: URL', '/to-file', undefined, /^Expected the picture's address to be http\(s\), got `file:`$/],
    ['a declared size above the cap', '/huge-declared', undefined, /^Expected a picture of at most 10 MiB, got a larger file$/],
    ['a stream past the cap', '/huge-chunked', { maxBytes: 1024 * 1024 }, /^Expected a picture of at most 1 MiB, got a larger file$/],
    ['a download slower than the timeout', '/slow', { timeoutMs: 300 }, /^The picture took longer than 0.3 s to download$/],
    ['an address that is not http', 'ftp://example.com/cat.png', undefined, /got `ftp:`/],
    ['no address at all', 'cat.png', undefined, /^Expected the picture's address to be a URL, got `cat.png`$/],
  ];
  it.each(cases)('GIVEN %s THEN one clear UserError line', async (_, path, options, message) => {
    expect(await refusal(path, options)).toMatch(message);
  });

  it('GIVEN the caller aborts THEN the download stops as cancelled', async () => {
    const controller = new AbortController();
    const pending = fetchPicture(`${base}/slow`, { signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await expect(pending).rejects.toThrow(/^The job was cancelled$/);
  });
});
