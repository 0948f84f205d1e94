import { describe, expect, it } from "vitest";
import { addSnapshot, EMPTY_HISTORY, type History, tiersIn } from "./history";
import { snapshot } from "./testing";

function feed(...snapshots: ReturnType<typeof snapshot>[]): History {
  return snapshots.reduce(addSnapshot, EMPTY_HISTORY);
}

describe("history reducer", () => {
  it("turns cumulative counters into per-second rates", () => {
    const history = feed(
      snapshot({ t: 100, statuses: { "200": 100, "429": 5, "503": 1 }, decisions: { free: { allowed: 50, limited: 5 } } }),
      snapshot({ t: 102, statuses: { "200": 300, "429": 15, "503": 5, "500": 1 }, decisions: { free: { allowed: 150, limited: 15 } } }),
    );
    expect(history.points).toHaveLength(1);
    const [point] = history.points;
    expect(point!.rps).toBeCloseTo((321 - 106) / 2);
    expect(point!.tooManyPerSecond).toBeCloseTo(5);
    expect(point!.serverErrorsPerSecond).toBeCloseTo(2.5);
    expect(point!.decisions.free).toEqual({ allowed: 50, limited: 5 });
  });

  it("computes percentiles over the latency window", () => {
    const history = feed(
      snapshot({ t: 1, latency: [0, 0, 0, 0, 0] }),
      snapshot({ t: 2, latency: [90, 99, 100, 100, 100] }),
    );
    const point = history.points[0]!;
    expect(point.p50).toBeCloseTo((0.5 * 100 / 90) * 1, 3); // ms: inside the first bucket (0, 1 ms]
    expect(point.p99).toBeGreaterThan(1);
    expect(point.p99).toBeCloseTo(10); // rank 99 is the top of the (1, 10] ms bucket
  });

  it("starts a new baseline when the gateway restarts, without a spike", () => {
    const history = feed(
      snapshot({ t: 1, uptime: 500, statuses: { "200": 10_000 } }),
      snapshot({ t: 2, uptime: 501, statuses: { "200": 10_010 } }),
      snapshot({ t: 3, uptime: 1, statuses: { "200": 3 } }),
      snapshot({ t: 4, uptime: 2, statuses: { "200": 13 } }),
    );
    expect(history.points.map((p) => p.rps)).toEqual([10, 10]);
  });

  it("ignores replayed snapshots and drops points past the window", () => {
    let history = feed(snapshot({ t: 1 }), snapshot({ t: 2 }));
    expect(addSnapshot(history, snapshot({ t: 2 }))).toBe(history);
    for (let t = 3; t < 400; t += 1) history = addSnapshot(history, snapshot({ t }));
    expect(history.points[0]!.t).toBeGreaterThanOrEqual(399 - 300);
    expect(history.samples.length).toBeLessThanOrEqual(8);
  });

  it("lists tiers in tier order", () => {
    const history = feed(
      snapshot({ t: 1, decisions: { enterprise: { allowed: 1 }, free: { allowed: 1 }, anonymous: { allowed: 1 } } }),
      snapshot({ t: 2, decisions: { enterprise: { allowed: 2 }, free: { allowed: 1 }, anonymous: { allowed: 1 } } }),
    );
    expect(tiersIn(history.points)).toEqual(["anonymous", "free", "enterprise"]);
  });
});
