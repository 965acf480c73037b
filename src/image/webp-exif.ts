/**
 * A picture's `parameters` in a WebP file, where PNG text chunks cannot go: EXIF's UserComment, the place
 * AUTOMATIC1111 writes and reads them for WebP and JPEG (`modules/images.py`, through piexif: the comment is the
 * 8-byte character code "UNICODE\0" then UTF-16 big-endian text, piexif's `helper.UserComment`). libvips (sharp's
 * `withExif`) writes UserComment as ASCII only, turning "café" into "cafe" and emoji into "?", so the EXIF block
 * is written here instead.
 */

// TIFF 6.0 / EXIF 2.32 numbers: the Exif IFD pointer tag (34665), UserComment (37510), field types LONG and UNDEFINED.
const EXIF_IFD_POINTER = 0x8769;
const USER_COMMENT = 0x9286;
const LONG = 4;
const UNDEFINED = 7;
const UNICODE_CODE = 'UNICODE\0';
// The WebP container's VP8X flag for "has an EXIF chunk" (Google's WebP Container Specification, "Extended File Format").
const VP8X_EXIF_FLAG = 0x08;

/** A little-endian TIFF block with one IFD0 entry (the Exif IFD pointer) and one Exif IFD entry (UserComment). */
export function userCommentExif(text: string): Uint8Array {
  const comment = new Uint8Array(8 + text.length * 2);
  for (let i = 0; i < UNICODE_CODE.length; i++) comment[i] = UNICODE_CODE.charCodeAt(i);
  // JavaScript strings are UTF-16 code units already: each goes out big-endian.
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    comment[8 + 2 * i] = unit >> 8;
    comment[9 + 2 * i] = unit & 0xff;
  }
  const ifd0 = 8;
  const exifIfd = ifd0 + 2 + 12 + 4;
  const data = exifIfd + 2 + 12 + 4;
  const out = new Uint8Array(data + comment.length);
  const view = new DataView(out.buffer);
  out.set([0x49, 0x49], 0); // "II": little-endian
  view.setUint16(2, 42, true);
  view.setUint32(4, ifd0, true);
  const entry = (at: number, tag: number, type: number, count: number, value: number): void => {
    view.setUint16(at, 1, true); // one entry
    view.setUint16(at + 2, tag, true);
    view.setUint16(at + 4, type, true);
    view.setUint32(at + 6, count, true);
    view.setUint32(at + 10, value, true);
    view.setUint32(at + 14, 0, true); // no next IFD
  };
  entry(ifd0, EXIF_IFD_POINTER, LONG, 1, exifIfd);
  entry(exifIfd, USER_COMMENT, UNDEFINED, comment.length, data);
  out.set(comment, data);
  return out;
}

/**
 * `webp` (an extended-format WebP: VP8X first) with its EXIF chunk replaced by, or given, a UserComment of `text`.
 * The image chunks are untouched.
 * @throws Error when the bytes are not a RIFF WebP with a VP8X chunk.
 */
export function withWebpUserComment(webp: Uint8Array, text: string): Uint8Array {
  const view = new DataView(webp.buffer, webp.byteOffset, webp.byteLength);
  const fourcc = (at: number): string => String.fromCharCode(webp[at], webp[at + 1], webp[at + 2], webp[at + 3]);
  if (webp.length < 12 || fourcc(0) !== 'RIFF' || fourcc(8) !== 'WEBP') throw new Error('Expected a RIFF WebP file');
  const chunks: Uint8Array[] = [];
  let vp8x: Uint8Array | undefined;
  let xmp: number | undefined;
  for (let at = 12; at + 8 <= webp.length; ) {
    const size = view.getUint32(at + 4, true);
    const end = at + 8 + size + (size & 1);
    if (end > webp.length + (size & 1)) throw new Error('Expected whole chunks in the WebP file');
    const chunk = webp.slice(at, Math.min(end, webp.length));
    if (fourcc(at) === 'VP8X') vp8x = chunk;
    if (fourcc(at) === 'XMP ') xmp = chunks.length;
    if (fourcc(at) !== 'EXIF') chunks.push(chunk);
    at = end;
  }
  if (!vp8x) throw new Error('Expected an extended WebP file (a VP8X chunk) to carry EXIF');
  vp8x[8] |= VP8X_EXIF_FLAG;
  const exif = userCommentExif(text);
  const header = new Uint8Array(8);
  header.set([0x45, 0x58, 0x49, 0x46]); // "EXIF"
  new DataView(header.buffer).setUint32(4, exif.length, true);
  // After the image data and before XMP, the container specification's order.
  chunks.splice(xmp ?? chunks.length, 0, header, exif, new Uint8Array(exif.length & 1));
  const body = chunks.reduce((n, c) => n + c.length, 0);
  const out = new Uint8Array(12 + body);
  out.set(webp.subarray(0, 12));
  new DataView(out.buffer).setUint32(4, 4 + body, true);
  let offset = 12;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}
