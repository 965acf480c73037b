/**
 * A member's picture from a URL (a Discord attachment's), fetched with limits and checked by decoding, never by
 * its name or claimed type: img2img's way in from the bot. Every refusal is one line, a UserError to answer
 * ephemerally.
 */
import sharp, { type Metadata } from 'sharp';
import { Identifiers, UserError } from '../errors.js';
import { INIT_IMAGE_FORMATS, MAX_INIT_IMAGE_PIXELS } from './init-image.js';

export interface FetchPictureOptions {
  /** Largest download in bytes. Default 10 MiB ({@link DEFAULT_MAX_PICTURE_BYTES}). */
  maxBytes?: number;
  /** The whole download, redirects included, in milliseconds. Default 10 000. */
  timeoutMs?: number;
  /** Redirects followed before giving up. Default 3. */
  maxRedirects?: number;
  /** Cancels the download (the member's job was cancelled, the bot is stopping). */
  signal?: AbortSignal;
  /** The fetch to use. Default the global one (tests pass their own). */
  fetch?: typeof fetch;
}

export const DEFAULT_MAX_PICTURE_BYTES = 10 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_REDIRECTS = 3;

/** What arrived: the bytes and what sharp found in them. */
export interface FetchedPicture {
  bytes: Uint8Array;
  format: (typeof INIT_IMAGE_FORMATS)[number];
  width: number;
  height: number;
}

function refused(message: string): UserError {
  return new UserError(Identifiers.InvalidInput, message);
}

/**
 * Download `url` (http or https; each redirect checked the same way) with a size cap, a timeout and a redirect
 * limit, then decode its header with sharp: a PNG, JPEG or WebP, whatever the Content-Type or file name said.
 */
export async function fetchPicture(url: string, options: FetchPictureOptions = {}): Promise<FetchedPicture> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_PICTURE_BYTES;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxRedirects = options.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
  const doFetch = options.fetch ?? fetch;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  try {
    let current = checkedUrl(url);
    for (let redirects = 0; ; redirects++) {
      const response = await doFetch(current, { redirect: 'manual', signal });
      if (response.status >= 300 && response.status < 400) {
        await response.body?.cancel();
        const location = response.headers.get('location');
        if (location === null) throw refused(`The picture's address answered ${response.status} without a Location`);
        if (redirects >= maxRedirects) throw refused(`The picture's address redirected more than ${maxRedirects} times`);
        current = checkedUrl(new URL(location, current).href);
        continue;
      }
      if (!response.ok) {
        await response.body?.cancel();
        throw refused(`Could not download the picture: HTTP ${response.status}`);
      }
      const type = response.headers.get('content-type');
      if (type !== null && !/^image\//i.test(type.trim())) {
        await response.body?.cancel();
        throw refused(`Expected a picture (PNG, JPEG or WebP), got a file of type \`${type.split(';')[0].trim()}\``);
      }
      const bytes = await readCapped(response, maxBytes);
      return { bytes, ...(await pictureHeader(bytes)) };
    }
  } catch (error) {
    if (error instanceof UserError) throw error;
    if (timeout.aborted) throw refused(`The picture took longer than ${timeoutMs / 1000} s to download`);
    if (options.signal?.aborted) throw new UserError(Identifiers.Cancelled, 'The job was cancelled');
    throw refused(`Could not download the picture: ${(error as Error).message}`);
  }
}

/**
 * How long a member's attachment may take to download: /imagine fetches it before it answers, and Discord waits
 * 3 s for that answer (docs, "Receiving and Responding": the initial response within 3 seconds).
 */
export const ATTACHMENT_TIMEOUT_MS = 2000;

/** A member's attachment as the interaction describes it (Discord's `resolved.attachments` entry). */
export interface AttachedFile {
  url: string;
  /** Bytes, as Discord reports them. */
  size: number;
  /** Discord's guess from the upload (absent for some clients): checked here, and the bytes again by decoding. */
  contentType?: string | null;
}

/**
 * The picture a member attached: refused at once when Discord already says it is too large or not a picture,
 * else fetched (fetchPicture) within {@link ATTACHMENT_TIMEOUT_MS}. Every refusal is one UserError line.
 */
export async function fetchAttachedPicture(file: AttachedFile, options: FetchPictureOptions = {}): Promise<FetchedPicture> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_PICTURE_BYTES;
  if (file.size > maxBytes) throw refused(`Expected a picture of at most ${formatBytes(maxBytes)}, got ${formatBytes(file.size)}`);
  const type = file.contentType?.split(';')[0].trim().toLowerCase();
  if (type && !['image/png', 'image/jpeg', 'image/webp'].includes(type)) {
    throw refused(`Expected a picture (PNG, JPEG or WebP), got a file of type \`${type.slice(0, 40).replace(/`/g, '')}\``);
  }
  return fetchPicture(file.url, { timeoutMs: ATTACHMENT_TIMEOUT_MS, ...options, maxBytes });
}

function checkedUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw refused(`Expected the picture's address to be a URL, got \`${url}\``);
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw refused(`Expected the picture's address to be http(s), got \`${parsed.protocol}\``);
  }
  return parsed;
}

/** The body, refused as soon as it passes `maxBytes` (a Content-Length above it is refused before reading). */
async function readCapped(response: Response, maxBytes: number): Promise<Uint8Array> {
  const tooBig = () => refused(`Expected a picture of at most ${formatBytes(maxBytes)}, got a larger file`);
  const length = Number(response.headers.get('content-length'));
  if (Number.isFinite(length) && length > maxBytes) {
    await response.body?.cancel();
    throw tooBig();
  }
  if (!response.body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      throw tooBig();
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/** What sharp reads in the bytes: a PNG, JPEG or WebP, or a refusal saying what it was. */
async function pictureHeader(bytes: Uint8Array): Promise<Omit<FetchedPicture, 'bytes'>> {
  let metadata: Metadata;
  try {
    metadata = await sharp(bytes, { limitInputPixels: MAX_INIT_IMAGE_PIXELS }).metadata();
  } catch {
    throw refused('Expected a picture (PNG, JPEG or WebP), got a file that is not a picture');
  }
  const { format, width, height } = metadata;
  if (!(INIT_IMAGE_FORMATS as readonly string[]).includes(format ?? '') || !width || !height) {
    throw refused(`Expected a picture (PNG, JPEG or WebP), got a ${format ?? 'unknown'} file`);
  }
  if (width * height > MAX_INIT_IMAGE_PIXELS) {
    throw refused(`Expected a picture of at most ${MAX_INIT_IMAGE_PIXELS} pixels, got ${width}×${height}`);
  }
  return { format: format as FetchedPicture['format'], width, height };
}

function formatBytes(n: number): string {
  if (n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  return n >= 1024 * 1024 ? `${(n / (1024 * 1024)).toFixed(1)} MiB` : `${n} bytes`;
}
