import { errors } from './api-error.js';

/** One file part of a multipart/form-data request, as Discord receives it. */
export interface UploadedFile {
  /** The form field name, `files[0]` for discord.js. */
  field: string;
  /** The file name the client sent (discord.js: `AttachmentBuilder#name`). */
  name: string;
  contentType: string;
  bytes: Buffer;
}

/** A request body decoded the way Discord does: JSON, or multipart with `payload_json` and `files[n]`. */
export interface ParsedBody {
  json: unknown;
  files: UploadedFile[];
  multipart: boolean;
}

/**
 * Decodes a buffered request body. Multipart is parsed with the WHATWG `Request#formData()` that
 * Node ships (undici), so the emulator relies on no parser of its own.
 */
export async function parseBody(contentType: string | undefined, raw: Buffer): Promise<ParsedBody> {
  if (raw.length === 0) return { json: undefined, files: [], multipart: false };
  const type = (contentType ?? '').toLowerCase();
  if (type.startsWith('multipart/form-data')) {
    const form = await new Request('http://emulator.invalid/', {
      method: 'POST',
      headers: { 'content-type': contentType! },
      body: new Uint8Array(raw) as Uint8Array<ArrayBuffer>,
    }).formData();
    const files: UploadedFile[] = [];
    let json: Record<string, unknown> | undefined;
    const loose: Record<string, unknown> = {};
    for (const [field, value] of form.entries()) {
      if (typeof value === 'string') {
        if (field === 'payload_json') {
          json = parseJson(value) as Record<string, unknown>;
        } else {
          // Discord also accepts top-level fields beside the files when there is no payload_json.
          loose[field] = parseMaybeJson(value);
        }
      } else {
        files.push({
          field,
          name: value.name,
          contentType: value.type || 'application/octet-stream',
          bytes: Buffer.from(await value.arrayBuffer()),
        });
      }
    }
    return { json: json ?? loose, files, multipart: true };
  }
  return { json: parseJson(raw.toString('utf8')), files: [], multipart: false };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw errors.invalidJson();
  }
}

function parseMaybeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
