import { describe, expect, it } from "vitest";
import { breakerOf, FORGET_AFTER, trackInstances } from "./instances";
import { gatewayRow } from "./testing";
import type { InstanceHeartbeat } from "./types";

function beat(instance: string, ts: number, external = "closed"): InstanceHeartbeat {
  const level = { hits: 0, misses: 0, hit_ratio: null };
  return {
    instance,
    ts,
    uptime: 10,
    cache: { l1_entries: 0, l1_evictions: 0, l1_enabled: true, l1: level, l2: level },
    breakers: [{ name: "external-api", state: external, failures: 0 }],
  };
}

describe("trackInstances", () => {
  it("marks replicas up, late or missing, and forgets them later", () => {
    let tracked = trackInstances([], [beat("apiserver-2", 100), beat("apiserver-10", 100)], 100);
    expect(tracked.map((i) => [i.id, i.state])).toEqual([
      ["apiserver-2", "up"],
      ["apiserver-10", "up"],
    ]);
    tracked = trackInstances(tracked, [beat("apiserver-2", 101), beat("apiserver-10", 90)], 101);
    expect(tracked.map((i) => i.state)).toEqual(["up", "late"]);
    tracked = trackInstances(tracked, [beat("apiserver-2", 102)], 102);
    expect(tracked.find((i) => i.id === "apiserver-10")?.state).toBe("missing");
    tracked = trackInstances(tracked, [beat("apiserver-2", 300)], 90 + FORGET_AFTER + 1);
    expect(tracked.map((i) => i.id)).toEqual(["apiserver-2"]);
  });

  it("keeps what it knew when the list could not be read, and reads breakers", () => {
    const tracked = trackInstances([], [beat("a", 1, "open")], 1);
    expect(trackInstances(tracked, null, 50)).toBe(tracked);
    expect(breakerOf(tracked[0]!, "external-api")).toBe("open");
    expect(breakerOf(tracked[0]!, "redis-cache")).toBeNull();
  });

  it("tracks gateway rows with their own lateness", () => {
    const rows = [gatewayRow("gateway-2", 100), gatewayRow("gateway-10", 96)];
    const tracked = trackInstances([], rows, 100, 3);
    expect(tracked.map((row) => [row.id, row.state])).toEqual([
      ["gateway-2", "up"],
      ["gateway-10", "late"],
    ]);
    expect(trackInstances(tracked, [rows[0]!], 101, 3).find((row) => row.id === "gateway-10")?.state).toBe("missing");
  });
});
