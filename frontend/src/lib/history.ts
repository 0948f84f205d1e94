// The live view's state: a reducer that turns each snapshot's cumulative counters into per-second rates and
// windowed latency percentiles, keeping the last few minutes for the charts.
//
//   snapshot ─► counters (requests, 429, 5xx, decisions per tier, latency histogram)
//            ─► rates = Δcounters / Δt against the previous snapshot
//            ─► p50/p95/p99 from the histogram's Δ over the last LATENCY_WINDOW seconds
//
// A gateway restart (other instance name, shorter uptime, a counter that went down) starts a new baseline:
// no negative or huge spike is drawn, and points already on the chart stay.

import { histogramDelta, histogramQuantile } from "./quantile";
import type { GatewaySnapshot, Snapshot } from "./types";

export const HISTORY_SECONDS = 300;
export const LATENCY_WINDOW = 5;

export interface DecisionCounts {
  allowed: number;
  limited: number;
}

export interface Counters {
  t: number;
  instance: string;
  uptime: number;
  requests: number;
  tooMany: number;
  serverErrors: number;
  decisions: Record<string, DecisionCounts>;
  latency: number[] | null;
  le: (number | null)[] | null;
}

export interface Point {
  t: number;
  rps: number;
  tooManyPerSecond: number;
  serverErrorsPerSecond: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  decisions: Record<string, DecisionCounts>;
}

export interface History {
  samples: Counters[];
  points: Point[];
}

export const EMPTY_HISTORY: History = { samples: [], points: [] };

export function countersOf(snapshot: Snapshot): Counters {
  const gateway: GatewaySnapshot = snapshot.gateway;
  const byStatus = gateway.http?.responses_by_status;
  const sumWhere = (match: (status: string) => boolean) =>
    byStatus ? Object.entries(byStatus).reduce((sum, [status, n]) => (match(status) ? sum + n : sum), 0) : null;
  const decisions: Record<string, DecisionCounts> = {};
  for (const [tier, counts] of Object.entries(gateway.rate_limit_decisions ?? {})) {
    decisions[tier] = { allowed: counts.allowed ?? 0, limited: counts.limited ?? 0 };
  }
  return {
    t: snapshot.generated_at,
    instance: gateway.instance,
    uptime: gateway.uptime,
    requests: sumWhere(() => true) ?? gateway.requests,
    tooMany: sumWhere((status) => status === "429") ?? 0,
    serverErrors: sumWhere((status) => status.startsWith("5")) ?? gateway.responses_by_class?.["5xx"] ?? 0,
    decisions,
    latency: gateway.http?.latency_seconds.cumulative ?? null,
    le: gateway.http?.latency_seconds.le ?? null,
  };
}

/** True when `later` cannot continue `earlier`'s counters (another process, or a restart). */
export function isReset(earlier: Counters, later: Counters): boolean {
  if (earlier.instance !== later.instance || later.uptime < earlier.uptime) return true;
  if (later.requests < earlier.requests || later.tooMany < earlier.tooMany) return true;
  return later.serverErrors < earlier.serverErrors;
}

function perSecond(later: number, earlier: number, dt: number): number {
  return Math.max(0, (later - earlier) / dt);
}

function latencyPercentiles(window: Counters, current: Counters): Pick<Point, "p50" | "p95" | "p99"> {
  const none = { p50: null, p95: null, p99: null };
  if (!current.latency || !window.latency || !current.le) return none;
  // The difference of two cumulative histograms is the cumulative histogram of the requests in between.
  const cumulative = histogramDelta(current.latency, window.latency);
  if (cumulative === null) return none;
  const ms = (q: number) => {
    const seconds = histogramQuantile(current.le ?? [], cumulative, q);
    return seconds === null ? null : seconds * 1000;
  };
  return { p50: ms(0.5), p95: ms(0.95), p99: ms(0.99) };
}

export function pointBetween(previous: Counters, window: Counters, current: Counters): Point | null {
  const dt = current.t - previous.t;
  if (!(dt > 0)) return null;
  const decisions: Record<string, DecisionCounts> = {};
  for (const [tier, now] of Object.entries(current.decisions)) {
    const before = previous.decisions[tier] ?? { allowed: 0, limited: 0 };
    decisions[tier] = {
      allowed: perSecond(now.allowed, before.allowed, dt),
      limited: perSecond(now.limited, before.limited, dt),
    };
  }
  return {
    t: current.t,
    rps: perSecond(current.requests, previous.requests, dt),
    tooManyPerSecond: perSecond(current.tooMany, previous.tooMany, dt),
    serverErrorsPerSecond: perSecond(current.serverErrors, previous.serverErrors, dt),
    ...latencyPercentiles(window, current),
    decisions,
  };
}

export function addSnapshot(history: History, snapshot: Snapshot, keepSeconds = HISTORY_SECONDS): History {
  const current = countersOf(snapshot);
  const previous = history.samples[history.samples.length - 1];
  if (previous !== undefined && current.t <= previous.t) return history; // a replayed or out-of-order event
  const fresh = previous === undefined || isReset(previous, current);
  const samples = fresh ? [current] : [...history.samples, current];
  const cutoff = current.t - keepSeconds;
  const kept = samples.filter((sample) => sample.t >= current.t - LATENCY_WINDOW - 1 || sample === current);
  let points = history.points;
  if (!fresh && previous !== undefined) {
    const window = samples.find((sample) => sample.t >= current.t - LATENCY_WINDOW) ?? previous;
    const point = pointBetween(previous, window === current ? previous : window, current);
    if (point !== null) points = [...points, point];
  }
  return { samples: kept, points: points.filter((point) => point.t >= cutoff) };
}

/** The tiers seen anywhere in the kept points, in a stable order. */
export function tiersIn(points: Point[]): string[] {
  const order = ["anonymous", "free", "pro", "enterprise"];
  const seen = new Set<string>();
  for (const point of points) for (const tier of Object.keys(point.decisions)) seen.add(tier);
  return [...seen].sort((a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99) || a.localeCompare(b));
}
