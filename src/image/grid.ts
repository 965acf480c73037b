/**
 * Several pictures of one request as one grid image, laid out as AUTOMATIC1111 lays out its grids
 * (`modules/images.py`, `image_grid`: rows = round(√n), columns = ⌈n / rows⌉): two side by side, four (and three,
 * with the last cell left empty) in 2 × 2. Cells touch, with no border, so cell (r, c) is exactly the picture.
 */
import sharp from 'sharp';

/** Rows and columns of the grid of `count` pictures. */
export function gridLayout(count: number): { rows: number; columns: number } {
  if (!Number.isInteger(count) || count < 1) throw new Error(`Expected \`count\` to be a positive integer, got \`${count}\``);
  const rows = Math.min(count, Math.round(Math.sqrt(count)));
  return { rows, columns: Math.ceil(count / rows) };
}

/**
 * One PNG with the pictures in reading order (left to right, then down). They must share one size (the pictures
 * of one request do). An empty cell is transparent.
 * @throws Error when the pictures differ in size or there are none.
 */
export async function gridPng(pictures: readonly Uint8Array[]): Promise<Uint8Array> {
  if (pictures.length === 0) throw new Error('Expected at least one picture for a grid, got none');
  const sizes = await Promise.all(pictures.map(async (png) => {
    const { width = 0, height = 0 } = await sharp(png).metadata();
    return { width, height };
  }));
  const { width, height } = sizes[0];
  const odd = sizes.findIndex((size) => size.width !== width || size.height !== height);
  if (odd >= 0) {
    throw new Error(`Expected the pictures of a grid to share one size (${width}×${height}), got ${sizes[odd].width}×${sizes[odd].height} for picture ${odd + 1}`);
  }
  const { rows, columns } = gridLayout(pictures.length);
  const hasEmptyCell = rows * columns > pictures.length;
  const grid = await sharp({
    create: { width: width * columns, height: height * rows, channels: hasEmptyCell ? 4 : 3, background: { r: 0, g: 0, b: 0, alpha: 0 } },
  })
    .composite(pictures.map((png, i) => ({ input: Buffer.from(png.buffer, png.byteOffset, png.byteLength), left: (i % columns) * width, top: Math.floor(i / columns) * height })))
    .png({ compressionLevel: 6 })
    .toBuffer();
  return new Uint8Array(grid.buffer, grid.byteOffset, grid.byteLength);
}
