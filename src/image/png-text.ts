/**
 * Text chunks in PNG files, written and read by hand: sharp 0.35 reads them (`metadata().comments`) but cannot
 * write one (its `withMetadata`/`withExif`/`withXmp` write EXIF, XMP and ICC only). Chunk layout from the PNG
 * specification (W3C, 3rd edition, §5.3 and §11.3.3): a 4-byte big-endian length, the 4-byte type, the data, and
 * a CRC-32 of type + data.
 *
 * A text that Latin-1 can hold goes in a `tEXt` chunk; any other (a prompt with emoji or Japanese) in an
 * uncompressed UTF-8 `iTXt`, which is what Pillow's `PngInfo.add_text` does, so the readers of AUTOMATIC1111's
 * PNGs (its PNG Info tab, ComfyUI, Civitai) find it either way.
 */
import { crc32, inflateSync } from 'node:zlib';

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const TEXT_TYPES = new Set(['tEXt', 'iTXt', 'zTXt']);

interface Chunk {
  type: string;
  /** Offset of the chunk's length field. */
  start: number;
  /** Offset just past its CRC. */
  end: number;
  data: Uint8Array;
}

function chunksOf(png: Uint8Array): Chunk[] {
  if (png.length < 8 || SIGNATURE.some((byte, i) => png[i] !== byte)) throw new Error('Expected PNG bytes, got something without the PNG signature');
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const chunks: Chunk[] = [];
  let offset = 8;
  while (offset + 12 <= png.length) {
    const length = view.getUint32(offset);
    const type = String.fromCharCode(...png.subarray(offset + 4, offset + 8));
    const end = offset + 12 + length;
    if (end > png.length) throw new Error(`Expected the ${type} chunk at byte ${offset} to end within the file (${png.length} bytes), got ${end}`);
    chunks.push({ type, start: offset, end, data: png.subarray(offset + 8, offset + 8 + length) });
    offset = end;
    if (type === 'IEND') break;
  }
  if (chunks[0]?.type !== 'IHDR') throw new Error('Expected a PNG whose first chunk is IHDR');
  return chunks;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

function isLatin1(text: string): boolean {
  return /^[\u0000-\u00ff]*$/u.test(text);
}

/** The data of a text chunk for `keyword` (1–79 Latin-1 characters, PNG's rule). */
function textChunk(keyword: string, text: string): Uint8Array {
  if (keyword.length < 1 || keyword.length > 79 || !isLatin1(keyword) || keyword.includes('\0')) {
    throw new Error(`Expected a PNG text keyword of 1 to 79 Latin-1 characters, got \`${keyword}\``);
  }
  const key = Buffer.from(keyword, 'latin1');
  if (isLatin1(text)) return chunk('tEXt', Buffer.concat([key, Buffer.of(0), Buffer.from(text, 'latin1')]));
  // iTXt: keyword \0, compression flag 0, method 0, language tag "" \0, translated keyword "" \0, UTF-8 text.
  return chunk('iTXt', Buffer.concat([key, Buffer.of(0, 0, 0, 0, 0), Buffer.from(text, 'utf8')]));
}

/** One text chunk's keyword and text; undefined for a chunk this reader cannot decode (compressed iTXt of another method). */
function decodeText(type: string, data: Uint8Array): { keyword: string; text: string } | undefined {
  const nul = data.indexOf(0);
  if (nul < 1) return undefined;
  const keyword = Buffer.from(data.subarray(0, nul)).toString('latin1');
  const rest = data.subarray(nul + 1);
  if (type === 'tEXt') return { keyword, text: Buffer.from(rest).toString('latin1') };
  if (type === 'zTXt') return rest[0] === 0 ? { keyword, text: inflateSync(rest.subarray(1)).toString('latin1') } : undefined;
  // iTXt
  const [compressed, method] = rest;
  const language = rest.indexOf(0, 2);
  const translated = language < 0 ? -1 : rest.indexOf(0, language + 1);
  if (translated < 0) return undefined;
  const body = rest.subarray(translated + 1);
  if (compressed === 1) return method === 0 ? { keyword, text: inflateSync(body).toString('utf8') } : undefined;
  return { keyword, text: Buffer.from(body).toString('utf8') };
}

/**
 * Every text chunk of a PNG (tEXt, zTXt, iTXt), keyword → text, in file order (a repeated keyword: the last).
 * @throws Error when the bytes are not a PNG.
 */
export function readPngText(png: Uint8Array): Map<string, string> {
  const texts = new Map<string, string>();
  for (const { type, data } of chunksOf(png)) {
    if (!TEXT_TYPES.has(type)) continue;
    const entry = decodeText(type, data);
    if (entry) texts.set(entry.keyword, entry.text);
  }
  return texts;
}

/**
 * The PNG with these texts, each in its own chunk right after IHDR (before the image data, where Pillow writes
 * them: a reader that stops at IDAT still finds them). A chunk already there with one of these keywords is
 * replaced, so writing twice leaves one. The pixels are untouched.
 */
export function withPngText(png: Uint8Array, texts: ReadonlyMap<string, string> | Record<string, string>): Uint8Array {
  const entries = texts instanceof Map ? [...texts] : Object.entries(texts);
  const keywords = new Set(entries.map(([keyword]) => keyword));
  const chunks = chunksOf(png);
  const kept = chunks.filter((c) => !(TEXT_TYPES.has(c.type) && keywords.has(decodeText(c.type, c.data)?.keyword ?? '')));
  const parts: Uint8Array[] = [png.subarray(0, 8)];
  for (const c of kept) {
    parts.push(png.subarray(c.start, c.end));
    if (c.type === 'IHDR') for (const [keyword, text] of entries) parts.push(textChunk(keyword, text));
  }
  // A copy that owns its whole ArrayBuffer (transferable between threads, like encodePng's).
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * `to` with the text chunks of `from`: a re-encoded PNG (resized, palette) keeps what the original said. `to`
 * comes back as it is when `from` has none.
 */
export function copyPngText(from: Uint8Array, to: Uint8Array): Uint8Array {
  const texts = readPngText(from);
  return texts.size === 0 ? to : withPngText(to, texts);
}
