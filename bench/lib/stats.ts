/** Small statistics helpers for the benchmarks (no dependencies: percentiles of a sorted copy). */

/** The `p`-th percentile (0–100) of `values` by the nearest-rank method; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  return percentileSorted(sorted, p)
}

/** Like {@link percentile} for an array already sorted ascending. */
export function percentileSorted(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  const i = Math.min(sorted.length - 1, Math.max(0, rank - 1))
  return sorted[i] as number
}

/** The median (the mean of the two middle values for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  if (sorted.length % 2 === 1) return sorted[mid] as number
  return ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

/** The largest value; NaN when empty. */
export function max(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : Math.max(...values)
}

/** Latency summary of samples in milliseconds, as whole microseconds. */
export function latencySummaryUs(samplesMs: readonly number[]): {
  p50us: number
  p99us: number
  maxus: number
} {
  const sorted = [...samplesMs].sort((a, b) => a - b)
  return {
    p50us: Math.round(percentileSorted(sorted, 50) * 1000),
    p99us: Math.round(percentileSorted(sorted, 99) * 1000),
    maxus: Math.round((sorted[sorted.length - 1] ?? Number.NaN) * 1000),
  }
}

/** Rounds to `digits` decimals (for printing ratios). */
export function round(value: number, digits = 0): number {
  const f = 10 ** digits
  return Math.round(value * f) / f
}

/** The medians of the numeric fields `keys` that the results have, rounded to 2 decimals. */
export function medianOf(
  results: readonly Record<string, unknown>[],
  keys: readonly string[],
): Record<string, number> {
  const out: Record<string, number> = {}
  for (const key of keys) {
    const values = results.map((r) => r[key]).filter((v): v is number => typeof v === "number")
    if (values.length > 0) out[key] = round(median(values), 2)
  }
  return out
}
