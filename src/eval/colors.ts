/**
 * The eight named colours of the embedded model's world, with the RGB values its training data uses
 * (training/data.py `COLORS`; keep the two tables equal).
 */
export const NAMED_COLORS = {
  red: [220, 30, 30],
  green: [30, 160, 50],
  blue: [30, 70, 220],
  yellow: [245, 215, 30],
  purple: [135, 50, 175],
  orange: [245, 135, 20],
  white: [245, 245, 245],
  black: [15, 15, 15],
} as const satisfies Record<string, readonly [number, number, number]>;

export type ColorName = keyof typeof NAMED_COLORS;
export const COLOR_NAMES = Object.keys(NAMED_COLORS) as ColorName[];

/** Squared RGB distance between two colours. */
export function distance2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const dr = a[0] - b[0];
  const dg = a[1] - b[1];
  const db = a[2] - b[2];
  return dr * dr + dg * dg + db * db;
}

/** The named colour nearest to `rgb` (Euclidean in RGB; the palette is far apart, so nothing finer is needed). */
export function nearestColor(rgb: ArrayLike<number>): ColorName {
  let best: ColorName = COLOR_NAMES[0];
  let bestD = Infinity;
  for (const name of COLOR_NAMES) {
    const d = distance2(rgb, NAMED_COLORS[name]);
    if (d < bestD) {
      bestD = d;
      best = name;
    }
  }
  return best;
}
