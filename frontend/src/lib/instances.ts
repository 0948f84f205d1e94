// Rows that come and go with heartbeats (apiservers: a dead replica's key expires in Redis after three
// intervals; gateways: after a few seconds, or at once when one stops). A row that stops beating stays listed as
// "missing" for a while, so an operator sees that it went away instead of a row silently vanishing; it is
// dropped after FORGET_AFTER seconds.

import type { InstanceHeartbeat } from "./types";

export const FORGET_AFTER = 120;
/** An apiserver heartbeat older than this (seconds, by the snapshot's clock) is shown as late. */
export const LATE_AFTER = 5;

export type InstanceState = "up" | "late" | "missing";

/** Anything that beats: an id and the time of its last beat. */
export interface Beat {
  instance: string;
  ts: number;
}

export interface Tracked<T extends Beat> {
  id: string;
  state: InstanceState;
  lastSeen: number;
  heartbeat: T;
}

export type TrackedInstance = Tracked<InstanceHeartbeat>;

export function trackInstances<T extends Beat>(
  previous: Tracked<T>[],
  heartbeats: T[] | null,
  now: number,
  lateAfter = LATE_AFTER,
): Tracked<T>[] {
  if (heartbeats === null) return previous; // the list could not be read this time: keep what we knew
  const byId = new Map<string, Tracked<T>>();
  for (const heartbeat of heartbeats) {
    const late = now - heartbeat.ts > lateAfter;
    byId.set(heartbeat.instance, {
      id: heartbeat.instance,
      state: late ? "late" : "up",
      lastSeen: heartbeat.ts,
      heartbeat,
    });
  }
  for (const known of previous) {
    if (!byId.has(known.id) && now - known.lastSeen < FORGET_AFTER) {
      byId.set(known.id, { ...known, state: "missing" });
    }
  }
  return [...byId.values()].sort((a, b) => a.id.localeCompare(b.id, "en", { numeric: true }));
}

export function breakerOf(instance: TrackedInstance, name: string): string | null {
  return instance.heartbeat.breakers.find((breaker) => breaker.name === name)?.state ?? null;
}
