/** Small statistics for benchmark samples: nearest-rank percentiles, so a p99 is a value that was measured. */

/** Summary of one series of measurements (milliseconds unless the field says otherwise). */
export interface Summary {
  n: number;
  p50: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/**
 * The nearest-rank percentile: the smallest sample with at least p % of the samples at or below it. With fewer
 * than 100 samples a p99 is the maximum, which is the honest reading of a short series.
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new RangeError('Expected at least one sample, got none');
  if (!(p > 0 && p <= 100)) throw new RangeError(`Expected \`p\` to be a percentage above 0 and at most 100, got \`${p}\``);
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

export function summarize(values: readonly number[]): Summary {
  if (values.length === 0) throw new RangeError('Expected at least one sample, got none');
  let sum = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    sum += v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { n: values.length, p50: percentile(values, 50), p99: percentile(values, 99), mean: sum / values.length, min, max };
}

/** Round for reports: 3 significant digits below 100, whole numbers above. */
export function round(value: number): number {
  if (!Number.isFinite(value)) return value;
  const abs = Math.abs(value);
  if (abs >= 100) return Math.round(value);
  if (abs >= 10) return Math.round(value * 10) / 10;
  if (abs >= 1) return Math.round(value * 100) / 100;
  return Math.round(value * 1000) / 1000;
}

/** Peak resident memory of this process so far, in MiB (the kernel's high-water mark). */
export function peakRssMb(): number {
  return process.resourceUsage().maxRSS / 1024;
}

export function rssMb(): number {
  return process.memoryUsage.rss() / (1024 * 1024);
}
