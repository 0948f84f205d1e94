import { describe, expect, it } from "vitest";
import { histogramDelta, histogramQuantile } from "./quantile";
import { LE } from "./testing";

describe("histogramQuantile", () => {
  it("interpolates inside the bucket holding the rank", () => {
    // 100 requests: 50 under 1 ms, 40 in (1, 10] ms, 10 in (10, 100] ms.
    const cumulative = [50, 90, 100, 100, 100];
    expect(histogramQuantile(LE, cumulative, 0.5)).toBeCloseTo(0.001);
    expect(histogramQuantile(LE, cumulative, 0.7)).toBeCloseTo(0.001 + 0.009 * 0.5);
    expect(histogramQuantile(LE, cumulative, 0.95)).toBeCloseTo(0.01 + 0.09 * 0.5);
    expect(histogramQuantile(LE, cumulative, 0.99)).toBeCloseTo(0.01 + 0.09 * 0.9);
  });

  it("answers the highest finite bound for ranks in +Inf, and null without data", () => {
    expect(histogramQuantile(LE, [0, 0, 0, 0, 10], 0.99)).toBe(1);
    expect(histogramQuantile(LE, [0, 0, 0, 0, 0], 0.5)).toBeNull();
    expect(histogramQuantile(LE, [1, 2], 0.5)).toBeNull();
  });

  it("differences cumulative histograms and refuses counters that went back", () => {
    expect(histogramDelta([5, 7, 9], [1, 2, 3])).toEqual([4, 5, 6]);
    expect(histogramDelta([1, 2, 3], [5, 7, 9])).toBeNull();
  });
});
