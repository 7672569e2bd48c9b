/** A kept sample standing for `weight` observations (a reservoir that saw more than it kept). */
export interface Weighted {
  value: number;
  weight: number;
}

/** Nearest-rank percentile (q in 0..1) of `values`; NaN for none. */
export function percentile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** Nearest-rank percentile over weighted samples: the smallest value whose cumulative weight reaches q of the total. */
export function weightedPercentile(samples: readonly Weighted[], q: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a.value - b.value);
  const total = sorted.reduce((n, s) => n + s.weight, 0);
  let seen = 0;
  for (const sample of sorted) {
    seen += sample.weight;
    // Float sums of weights like 1000/256 may fall a hair short of q * total.
    if (seen >= q * total - 1e-9) return sample.value;
  }
  return sorted.at(-1)!.value;
}
