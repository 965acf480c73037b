/**
 * Draw a scene of flat shapes (anti-aliased by 4×4 supersampling), the way training/data.py does. The checker's
 * tests use it to make pictures whose right answer is known; the geometry matches the training data so a
 * "circle" here is a circle the model was taught.
 */
import { NAMED_COLORS, type ColorName } from './colors.js';
import type { RgbImage, Shape } from './checker.js';

export interface DrawnObject {
  color: ColorName;
  shape: Shape;
  /** Area centroid, in pixels. */
  cx: number;
  cy: number;
  /** Nominal size in pixels (circle diameter). */
  diameter: number;
}

export interface DrawnScene {
  width: number;
  height: number;
  background: ColorName;
  objects: DrawnObject[];
}

const SUPERSAMPLE = 4;

function inside(o: DrawnObject, x: number, y: number): boolean {
  const d = o.diameter;
  if (o.shape === 'circle') return (x - o.cx) ** 2 + (y - o.cy) ** 2 <= (d / 2) ** 2;
  if (o.shape === 'square') {
    const s = d * 0.9;
    return Math.abs(x - o.cx) <= s / 2 && Math.abs(y - o.cy) <= s / 2;
  }
  const base = d * 1.15;
  const h = d * 1.05;
  // The centroid of a triangle lies two thirds of the way down from its apex.
  const t = (y - (o.cy - (2 * h) / 3)) / h;
  return t >= 0 && t <= 1 && Math.abs(x - o.cx) <= (t * base) / 2;
}

/** Render `scene` to RGB bytes. */
export function drawScene(scene: DrawnScene): RgbImage {
  const { width, height } = scene;
  const rgb = new Uint8Array(width * height * 3);
  const bg = NAMED_COLORS[scene.background];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let px: number[] = [...bg];
      for (const o of scene.objects) {
        let hits = 0;
        for (let sy = 0; sy < SUPERSAMPLE; sy++) {
          for (let sx = 0; sx < SUPERSAMPLE; sx++) {
            if (inside(o, x + (sx + 0.5) / SUPERSAMPLE, y + (sy + 0.5) / SUPERSAMPLE)) hits++;
          }
        }
        const a = hits / (SUPERSAMPLE * SUPERSAMPLE);
        const fg = NAMED_COLORS[o.color];
        px = px.map((v, c) => v * (1 - a) + fg[c] * a);
      }
      for (let c = 0; c < 3; c++) rgb[(y * width + x) * 3 + c] = Math.round(px[c]);
    }
  }
  return { width, height, rgb };
}
