import { describe, expect, it } from "vitest";
import { CLOCK_INCREMENTS, clockLabels, formatAgo, formatClock, formatCount, formatDuration, formatMs, formatRate, formatRatio } from "./format";

describe("format", () => {
  it("counts", () => {
    expect([0, 999, 9999, 12_345, 999_499, 1_250_000, 3_000_000_000].map(formatCount)).toEqual([
      "0", "999", "9,999", "12.3k", "999k", "1.3M", "3G",
    ]);
    expect(formatCount(null)).toBe("—");
    expect(formatCount(Number.NaN)).toBe("—");
  });

  it("rates", () => {
    expect([0, 0.25, 12, 99.94, 1234, 50_000].map(formatRate)).toEqual(["0/s", "0.3/s", "12/s", "99.9/s", "1,234/s", "50k/s"]);
    expect(formatRate(undefined)).toBe("—");
  });

  it("milliseconds", () => {
    expect([0.42, 3, 12.34, 250.4, 1500].map(formatMs)).toEqual(["0.42 ms", "3 ms", "12.3 ms", "250 ms", "1.50 s"]);
    expect(formatMs(null)).toBe("—");
    expect(formatMs(0)).toBe("0 ms");
  });

  it("ratios", () => {
    expect([0, 1, 0.5, 0.98765].map(formatRatio)).toEqual(["0%", "100%", "50.0%", "98.8%"]);
    expect(formatRatio(null)).toBe("—");
  });

  it("durations and ages", () => {
    expect([5, 65, 3600 + 120, 2 * 86_400 + 3 * 3600].map(formatDuration)).toEqual(["5s", "1m 05s", "1h 02m", "2d 3h"]);
    expect(formatDuration(-1)).toBe("—");
    expect(formatAgo(0.2)).toBe("just now");
    expect(formatAgo(12)).toBe("12s ago");
  });

  it("labels time ticks distinctly whatever the span", () => {
    const start = Date.UTC(2025, 0, 1, 12, 0, 0) / 1000;
    for (const increment of CLOCK_INCREMENTS.filter((step) => step <= 3600)) {
      const ticks = Array.from({ length: 12 }, (_, i) => start + i * increment);
      const labels = clockLabels(ticks, increment);
      expect(new Set(labels).size, `ticks ${increment} s apart: ${labels.join(" ")}`).toBe(ticks.length);
    }
    // Whole minutes drop the seconds; anything finer keeps them.
    expect(clockLabels([start, start + 60], 60)).toEqual([formatClock(start).slice(0, 5), formatClock(start + 60).slice(0, 5)]);
    expect(clockLabels([start, start + 5], 5)[1]).toBe(formatClock(start + 5));
  });

  it("never steps a time axis by less than a second (sub-second ticks all read the same hh:mm:ss)", () => {
    expect(Math.min(...CLOCK_INCREMENTS)).toBe(1);
    expect(new Set([0, 0.2, 0.4].map((offset) => formatClock(1_700_000_000 + offset))).size).toBe(1);
  });
});
