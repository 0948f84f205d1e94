import { describe, expect, it } from "vitest";
import { liveReducer, type LiveState } from "../hooks/useLive";
import { EMPTY_HISTORY, HISTORY_SECONDS, type History, latestPoint, mergeFleet, tiersIn } from "./history";
import { fleet, gatewayRow, second, snapshot } from "./testing";
import type { FleetSecond } from "./types";

function merged(...batches: FleetSecond[][]): History {
  return batches.reduce((history, batch) => mergeFleet(history, fleet(batch)), EMPTY_HISTORY);
}

describe("fleet history", () => {
  it("turns each second's fleet counts into per-second rates", () => {
    const history = merged([
      second({ t: 100, requests: 40, tooMany: 5, serverErrors: 1, decisions: { free: { allowed: 30, limited: 5 } } }),
    ]);
    expect(history.points).toHaveLength(1);
    const [point] = history.points;
    expect(point!.rps).toBe(40);
    expect(point!.tooManyPerSecond).toBe(5);
    expect(point!.serverErrorsPerSecond).toBe(1);
    expect(point!.decisions).toEqual({ free: { allowed: 30, limited: 5 } });
  });

  it("opens on the server's history and keeps it as later events arrive", () => {
    const opening = Array.from({ length: 600 }, (_, i) => second({ t: 1000 + i, requests: 10 }));
    let history = merged(opening);
    expect(history.points).toHaveLength(600);
    expect(history.points[0]!.t).toBe(1000);
    history = mergeFleet(history, fleet([second({ t: 1598, requests: 10 }), second({ t: 1599, requests: 12 }), second({ t: 1600, requests: 7 })]));
    expect(history.points).toHaveLength(601);
    expect(history.points[0]!.t).toBe(1000);
    // A second sent again (a gateway's share landed late) replaces the earlier figure.
    expect(history.points.find((p) => p.t === 1599)!.rps).toBe(12);
    expect(latestPoint(history)!.rps).toBe(7);
  });

  it("keeps fifteen minutes", () => {
    const history = merged([second({ t: 1 })], [second({ t: 2 + HISTORY_SECONDS, requests: 3 })]);
    expect(history.points.map((p) => p.t)).toEqual([2 + HISTORY_SECONDS]);
  });

  it("draws a second no gateway reported as a gap, not as zero traffic", () => {
    const history = merged([second({ t: 10, requests: 5 }), second({ t: 13, requests: 6 })]);
    expect(history.points.map((p) => p.rps)).toEqual([5, null, null, 6]);
    expect(history.points[1]!.decisions).toBeNull();
  });

  it("computes percentiles over the fleet's latency window", () => {
    const history = merged([
      second({ t: 1, latency: [0, 0, 0, 0, 0] }),
      second({ t: 2, latency: [90, 99, 100, 100, 100] }),
    ]);
    const point = history.points[1]!;
    expect(point.p50).toBeCloseTo(((0.5 * 100) / 90) * 1, 3); // ms: inside the first bucket (0, 1 ms]
    expect(point.p99).toBeCloseTo(10); // rank 99 is the top of the (1, 10] ms bucket
    expect(history.points[0]!.p50).toBeNull(); // nothing timed in that second's window
  });

  it("sums the window's seconds, which every gateway added its share to", () => {
    const history = merged([
      second({ t: 1, latency: [10, 10, 10, 10, 10] }), // all under 1 ms
      second({ t: 2, latency: [0, 0, 10, 10, 10] }), // all in (10, 100] ms
    ]);
    expect(history.points[1]!.p50).toBeCloseTo(1, 3); // half the window at or under 1 ms
  });

  it("lists tiers in tier order", () => {
    const history = merged([
      second({ t: 1, decisions: { enterprise: { allowed: 1 }, free: { allowed: 1 }, anonymous: { allowed: 1 } } }),
    ]);
    expect(tiersIn(history.points)).toEqual(["anonymous", "free", "enterprise"]);
  });
});

describe("live reducer", () => {
  const initial: LiveState = {
    latest: null,
    receivedAt: null,
    fleet: null,
    fleetError: null,
    history: EMPTY_HISTORY,
    gateways: [],
    instances: [],
  };

  it("lists every gateway and keeps the charts when the fleet cannot be read", () => {
    const first = {
      ...snapshot({ t: 100 }),
      fleet: fleet([second({ t: 99, requests: 8 })], [gatewayRow("gateway-1", 99.5, 5), gatewayRow("gateway-2", 99.6, 3)]),
    };
    let state = liveReducer(initial, { type: "snapshot", snapshot: first, receivedAt: 0 });
    expect(state.gateways.map((row) => [row.id, row.state])).toEqual([
      ["gateway-1", "up"],
      ["gateway-2", "up"],
    ]);
    expect(state.fleet!.total.requests).toBe(8);
    state = liveReducer(state, { type: "snapshot", snapshot: { ...snapshot({ t: 101 }), fleet: { error: "redis: ConnectionError" } }, receivedAt: 1 });
    expect(state.fleet).toBeNull();
    expect(state.fleetError).toBe("redis: ConnectionError");
    expect(state.history.points.map((p) => p.rps)).toEqual([8]);
    expect(state.gateways).toHaveLength(2);
  });

  it("says so when the gateway sends no fleet figures (an older gateway during an upgrade)", () => {
    const state = liveReducer(initial, { type: "snapshot", snapshot: snapshot({ t: 1 }), receivedAt: 0 });
    expect(state.fleetError).toMatch(/no fleet figures/);
  });
});
