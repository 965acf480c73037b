/**
 * A deterministic checker for pictures of coloured shapes on flat backgrounds: it says which named colour the
 * background is, which objects stand on it (colour, shape, position) and how many there are, then scores that
 * against what a prompt asked for. `npm run eval` and the embedded model's tests use it; so can anyone who wants
 * to know whether a sampler change made the pictures worse.
 *
 * Method: background = nearest named colour to the median border pixel; foreground = pixels far from that colour;
 * objects = 4-connected components of the foreground (tiny specks ignored); shape from the fill ratio of the
 * component's bounding box (square ≈ 1, circle ≈ π/4, triangle ≈ 1/2); position from the centroid. Relations
 * compare two objects' centroids; counts are components of the stated colour. Sizes are shares of the canvas
 * (set on 32×32), so 32×32 and 64×64 pictures are judged alike.
 */
import { NAMED_COLORS, nearestColor, type ColorName } from './colors.js';

export const SHAPES = ['circle', 'square', 'triangle'] as const;
export type Shape = (typeof SHAPES)[number];
export const POSITIONS = ['left', 'right', 'top', 'bottom', 'center'] as const;
export type Position = (typeof POSITIONS)[number];
/** "A left of B": A stands on that side of B. */
export const RELATIONS = ['left', 'right', 'above', 'below'] as const;
export type Relation = (typeof RELATIONS)[number];

/** An RGB image, row-major, 3 bytes per pixel. */
export interface RgbImage {
  width: number;
  height: number;
  rgb: Uint8Array;
}

export interface SeenObject {
  color: ColorName;
  shape: Shape;
  position: Position;
  /** Soft area: the sum of each pixel's coverage. */
  area: number;
  /** Soft area over soft width × soft height: square ≈ 1, circle ≈ π/4, triangle ≈ 1/2. */
  fill: number;
  /** Centroid, in pixels. */
  cx: number;
  cy: number;
}

export interface Description {
  background: ColorName;
  /** Largest first. */
  objects: SeenObject[];
  count: number;
}

/** What a prompt states; attributes it leaves open are null and not scored. */
export interface Expectation {
  background: ColorName | null;
  count: number;
  objects: { color: ColorName; shape: Shape; position: Position | null; size?: 'small' | 'big' | null }[];
  /** Two objects: the first stands on this side of the second ("a red circle to the left of a blue square"). */
  relation?: Relation | null;
  /** A counting prompt ("two green triangles"): `count` objects, all of `objects[0]`'s colour and shape. */
  counted?: boolean;
}

/**
 * color, shape, position: one object, or two joined by "and" (as sets, matched by colour). count: the number of
 * objects in two-object "and" prompts. relation: both objects of a relation prompt, right colours and shapes,
 * on the stated sides. number: a counting prompt's objects, exactly as many, all of the stated colour.
 */
export const ATTRIBUTES = ['color', 'shape', 'position', 'background', 'count', 'relation', 'number'] as const;
export type Attribute = (typeof ATTRIBUTES)[number];
export type Score = Partial<Record<Attribute, boolean>>;

/** Foreground pixels differ from the background colour by more than this (RGB distance, 0..441). */
const FOREGROUND_DISTANCE = 80;
/** Components smaller than this share of a 32×32 canvas (12 px there) are noise, not objects. */
const MIN_AREA_SHARE = 12 / 1024;
/** Fill ratio thresholds: square above SQUARE_FILL, circle above CIRCLE_FILL, else triangle. */
const SQUARE_FILL = 0.88;
const CIRCLE_FILL = 0.66;
/** A centroid within this share of the width of the centre (3.5 px at 32) counts as "center". */
const CENTER_SHARE = 3.5 / 32;

function checkImage(image: RgbImage): void {
  const { width, height, rgb } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 4 || height < 4) {
    throw new RangeError(`Expected an image at least 4×4 pixels, got ${width}×${height}`);
  }
  if (rgb.length !== width * height * 3) {
    throw new RangeError(`Expected ${width * height * 3} RGB bytes for ${width}×${height}, got ${rgb.length}`);
  }
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function medianColor(rgb: Uint8Array, pixels: number[]): [number, number, number] {
  const ch = (c: number) => median(pixels.map((p) => rgb[p * 3 + c]));
  return [ch(0), ch(1), ch(2)];
}

/** 4-connected components of `mask`, each a list of pixel indices, largest first. */
function components(mask: Uint8Array, width: number, height: number): number[][] {
  const seen = new Uint8Array(mask.length);
  const out: number[][] = [];
  const stack: number[] = [];
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || seen[start]) continue;
    const comp: number[] = [];
    seen[start] = 1;
    stack.push(start);
    while (stack.length > 0) {
      const p = stack.pop()!;
      comp.push(p);
      const x = p % width;
      const y = (p - x) / width;
      const next = [x > 0 ? p - 1 : -1, x < width - 1 ? p + 1 : -1, y > 0 ? p - width : -1, y < height - 1 ? p + width : -1];
      for (const q of next) {
        if (q >= 0 && mask[q] && !seen[q]) {
          seen[q] = 1;
          stack.push(q);
        }
      }
    }
    out.push(comp);
  }
  return out.sort((a, b) => b.length - a.length);
}

function describeObject(image: RgbImage, pixels: number[], background: ColorName): SeenObject {
  const { width, height, rgb } = image;
  const color = nearestColor(medianColor(rgb, pixels));
  // Soft coverage of each pixel: where it lies between the background and the object colour. Edges are
  // anti-aliased, so counting every pixel that differs from the background would fatten small shapes.
  const bg = NAMED_COLORS[background];
  const fg = NAMED_COLORS[color];
  const axis = [fg[0] - bg[0], fg[1] - bg[1], fg[2] - bg[2]];
  const axis2 = axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2];
  // Soft extents: summing each column's (row's) largest coverage measures the width (height) to a fraction
  // of a pixel, where a bounding box of thresholded pixels could be off by one on each side.
  const colMax = new Float64Array(width);
  const rowMax = new Float64Array(height);
  let area = 0;
  let sx = 0;
  let sy = 0;
  for (const p of pixels) {
    const proj = (rgb[p * 3] - bg[0]) * axis[0] + (rgb[p * 3 + 1] - bg[1]) * axis[1] + (rgb[p * 3 + 2] - bg[2]) * axis[2];
    const alpha = Math.min(1, Math.max(0, proj / axis2));
    const x = p % width;
    const y = (p - x) / width;
    area += alpha;
    sx += alpha * (x + 0.5);
    sy += alpha * (y + 0.5);
    colMax[x] = Math.max(colMax[x], alpha);
    rowMax[y] = Math.max(rowMax[y], alpha);
  }
  const extent = colMax.reduce((a, b) => a + b, 0) * rowMax.reduce((a, b) => a + b, 0);
  const fill = extent > 0 ? area / extent : 0;
  const shape: Shape = fill > SQUARE_FILL ? 'square' : fill > CIRCLE_FILL ? 'circle' : 'triangle';
  const cx = area > 0 ? sx / area : width / 2;
  const cy = area > 0 ? sy / area : height / 2;
  const dx = (cx - width / 2) / width;
  const dy = (cy - height / 2) / height;
  let position: Position;
  if (Math.abs(dx) < CENTER_SHARE && Math.abs(dy) < CENTER_SHARE) position = 'center';
  else if (Math.abs(dx) >= Math.abs(dy)) position = dx < 0 ? 'left' : 'right';
  else position = dy < 0 ? 'top' : 'bottom';
  return { color, shape, position, area, fill, cx, cy };
}

/** Describe what is in the picture: background colour and the objects on it. */
export function describeImage(image: RgbImage): Description {
  checkImage(image);
  const { width, height, rgb } = image;
  const border: number[] = [];
  for (let x = 0; x < width; x++) border.push(x, (height - 1) * width + x);
  for (let y = 1; y < height - 1; y++) border.push(y * width, y * width + width - 1);
  const background = nearestColor(medianColor(rgb, border));
  const ref = NAMED_COLORS[background];
  const mask = new Uint8Array(width * height);
  const limit = FOREGROUND_DISTANCE * FOREGROUND_DISTANCE;
  for (let p = 0; p < mask.length; p++) {
    const dr = rgb[p * 3] - ref[0];
    const dg = rgb[p * 3 + 1] - ref[1];
    const db = rgb[p * 3 + 2] - ref[2];
    mask[p] = dr * dr + dg * dg + db * db > limit ? 1 : 0;
  }
  const minArea = Math.max(1, Math.round(MIN_AREA_SHARE * width * height));
  const comps = components(mask, width, height).filter((c) => c.length >= minArea);
  return { background, objects: comps.slice(0, 3).map((c) => describeObject(image, c, background)), count: comps.length };
}

/**
 * Score a description against what the prompt stated. One object: colour, shape and position of the largest
 * object. Two objects: count; the two largest objects' colours as a set; shapes and positions matched by colour.
 */
export function scoreDescription(seen: Description, want: Expectation): Score {
  const score: Score = {};
  if (want.background !== null) score.background = seen.background === want.background;
  if (want.counted) {
    const color = want.objects[0]?.color;
    score.number = seen.count === want.count && seen.objects.slice(0, want.count).every((o) => o.color === color);
    return score;
  }
  if (want.relation) {
    score.relation = relationHolds(seen, want, want.relation);
    return score;
  }
  if (want.objects.length === 1) {
    const w = want.objects[0];
    const o = seen.objects[0];
    score.color = o !== undefined && o.color === w.color;
    score.shape = o !== undefined && o.shape === w.shape;
    if (w.position !== null) score.position = o !== undefined && o.position === w.position;
    return score;
  }
  score.count = seen.count === want.objects.length;
  const got = seen.objects.slice(0, want.objects.length);
  const sortedColors = (xs: { color: ColorName }[]) => xs.map((x) => x.color).sort().join(',');
  score.color = sortedColors(got) === sortedColors(want.objects);
  const byColor = new Map(got.map((o) => [o.color, o]));
  score.shape = want.objects.every((w) => byColor.get(w.color)?.shape === w.shape);
  if (want.objects.every((w) => w.position !== null)) {
    score.position = want.objects.every((w) => byColor.get(w.color)?.position === w.position);
  }
  return score;
}

/**
 * A relation prompt holds when the picture has exactly two objects, one of each stated colour with its stated
 * shape, and the first object's centroid lies on the stated side of the second's, along the axis where they are
 * further apart (so "above" is not passed by two objects side by side with a slight height difference).
 */
function relationHolds(seen: Description, want: Expectation, relation: Relation): boolean {
  if (seen.count !== 2 || want.objects.length !== 2) return false;
  const got = seen.objects.slice(0, 2);
  const a = got.find((o) => o.color === want.objects[0].color);
  const b = got.find((o) => o.color === want.objects[1].color);
  if (!a || !b || a === b || a.shape !== want.objects[0].shape || b.shape !== want.objects[1].shape) return false;
  const dx = a.cx - b.cx;
  const dy = a.cy - b.cy;
  const horizontal = Math.abs(dx) > Math.abs(dy);
  const vertical = Math.abs(dy) > Math.abs(dx);
  switch (relation) {
    case 'left':
      return horizontal && dx < 0;
    case 'right':
      return horizontal && dx > 0;
    case 'above':
      return vertical && dy < 0;
    case 'below':
      return vertical && dy > 0;
  }
}

/** describeImage + scoreDescription. */
export function scoreImage(image: RgbImage, want: Expectation): Score {
  return scoreDescription(describeImage(image), want);
}
