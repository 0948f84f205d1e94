import { describe, expect, it } from "vitest";
import { Backoff, backoffDelay } from "./backoff";

describe("backoff", () => {
  const options = { baseMs: 500, maxMs: 8000 };

  it("doubles the ceiling per attempt and caps it", () => {
    const top = (attempt: number) => backoffDelay(attempt, { ...options, random: () => 0.999999 });
    expect([0, 1, 2, 3, 4, 5, 10].map(top)).toEqual([500, 1000, 2000, 4000, 8000, 8000, 8000]);
  });

  it("jitters between half and all of the ceiling", () => {
    expect(backoffDelay(2, { ...options, random: () => 0 })).toBe(1000);
    for (let i = 0; i < 100; i += 1) {
      const delay = backoffDelay(3, options);
      expect(delay).toBeGreaterThanOrEqual(2000);
      expect(delay).toBeLessThanOrEqual(4000);
    }
  });

  it("starts over after a success", () => {
    const backoff = new Backoff({ ...options, random: () => 0 });
    expect([backoff.next(), backoff.next(), backoff.next()]).toEqual([250, 500, 1000]);
    backoff.reset();
    expect(backoff.next()).toBe(250);
  });
});
