// Percentiles from a latency histogram, as Prometheus' histogram_quantile does: find the bucket holding the
// rank and interpolate linearly inside it. Accurate to the bucket bounds (0.5 ms … 10 s), which is what an
// operator needs to see a p99 move; exact per-request latencies are never shipped to the browser.

/** `le`: upper bounds (the last null is +Inf); `cumulative`: counts at or under each bound. */
export function histogramQuantile(le: (number | null)[], cumulative: number[], q: number): number | null {
  const total = cumulative[cumulative.length - 1] ?? 0;
  if (total <= 0 || le.length !== cumulative.length || q < 0 || q > 1) return null;
  const rank = q * total;
  for (let i = 0; i < cumulative.length; i += 1) {
    const count = cumulative[i] ?? 0;
    if (count < rank || count === 0) continue;
    const upper = le[i];
    const lower = i === 0 ? 0 : (le[i - 1] ?? 0);
    if (upper === null || upper === undefined) return lower; // in the +Inf bucket: the highest finite bound
    const below = i === 0 ? 0 : (cumulative[i - 1] ?? 0);
    const inBucket = count - below;
    return inBucket <= 0 ? upper : lower + ((upper - lower) * (rank - below)) / inBucket;
  }
  return null;
}

/** Per-bucket difference of two cumulative histograms (later minus earlier); null if a counter went back. */
export function histogramDelta(later: number[], earlier: number[]): number[] | null {
  if (later.length !== earlier.length) return null;
  const delta = later.map((value, i) => value - (earlier[i] ?? 0));
  return delta.some((value) => value < 0) ? null : delta;
}
