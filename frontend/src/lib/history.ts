// The charts' data: the gateway fleet's seconds, kept server-side in Redis (gateway/fleet.py), merged as they
// arrive and turned into per-second rates and windowed latency percentiles.
//
//   stream's first event ─► the fleet's last 15 minutes (so a reload, or another gateway, opens on full charts)
//   every later event    ─► its last few seconds: a second seen before is replaced (a gateway's late share)
//   seconds ─► one point per second from the oldest kept to the newest; a second no gateway reported is a gap
//            ─► rates = the second's counts / step; p50/p95/p99 from the histogram summed over LATENCY_WINDOW
//
// Every gateway adds its own share into the same second, so a gateway that restarts, joins or leaves moves no
// baseline and never draws a spike.

import { histogramQuantile } from "./quantile";
import type { FleetSecond, FleetView } from "./types";

export const HISTORY_SECONDS = 900;
export const LATENCY_WINDOW = 5;

export interface DecisionCounts {
  allowed: number;
  limited: number;
}

export interface Point {
  t: number;
  rps: number | null;
  tooManyPerSecond: number | null;
  serverErrorsPerSecond: number | null;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  /** Null in a gap: no gateway reported that second. */
  decisions: Record<string, DecisionCounts> | null;
}

export interface History {
  step: number;
  le: (number | null)[] | null;
  seconds: FleetSecond[];
  points: Point[];
}

export const EMPTY_HISTORY: History = { step: 1, le: null, seconds: [], points: [] };

/** Merge a fleet view's seconds (replacing those already known) and keep the last HISTORY_SECONDS. */
export function mergeFleet(history: History, fleet: FleetView, keepSeconds = HISTORY_SECONDS): History {
  if (fleet.history.length === 0) return history;
  const byTime = new Map(history.seconds.map((second) => [second.t, second]));
  for (const second of fleet.history) byTime.set(second.t, second);
  const newest = Math.max(...byTime.keys());
  const seconds = [...byTime.values()].filter((second) => second.t > newest - keepSeconds).sort((a, b) => a.t - b.t);
  const step = fleet.step > 0 ? fleet.step : 1;
  return { step, le: fleet.le, seconds, points: pointsOf(seconds, step, fleet.le) };
}

function gap(t: number): Point {
  return { t, rps: null, tooManyPerSecond: null, serverErrorsPerSecond: null, p50: null, p95: null, p99: null, decisions: null };
}

/** One point per step from the first second to the last, oldest first. */
export function pointsOf(seconds: FleetSecond[], step: number, le: (number | null)[]): Point[] {
  const first = seconds[0];
  const last = seconds[seconds.length - 1];
  if (first === undefined || last === undefined) return [];
  const byTime = new Map(seconds.map((second) => [second.t, second]));
  const points: Point[] = [];
  for (let t = first.t; t <= last.t; t += step) {
    const second = byTime.get(t);
    if (second === undefined) {
      points.push(gap(t));
      continue;
    }
    const decisions: Record<string, DecisionCounts> = {};
    for (const [tier, counts] of Object.entries(second.decisions)) {
      decisions[tier] = { allowed: (counts.allowed ?? 0) / step, limited: (counts.limited ?? 0) / step };
    }
    points.push({
      t,
      rps: second.requests / step,
      tooManyPerSecond: second.too_many / step,
      serverErrorsPerSecond: second.server_errors / step,
      ...percentiles(byTime, t, step, le),
      decisions,
    });
  }
  return points;
}

function percentiles(
  byTime: Map<number, FleetSecond>,
  t: number,
  step: number,
  le: (number | null)[],
): Pick<Point, "p50" | "p95" | "p99"> {
  // Cumulative histograms add up: the window's histogram is the sum of its seconds'.
  let window: number[] | null = null;
  for (let back = 0; back < LATENCY_WINDOW; back += step) {
    const latency = byTime.get(t - back)?.latency;
    if (!latency || latency.length !== le.length) continue;
    window = window === null ? [...latency] : window.map((count, i) => count + (latency[i] ?? 0));
  }
  const ms = (q: number) => {
    const seconds = window === null ? null : histogramQuantile(le, window, q);
    return seconds === null ? null : seconds * 1000;
  };
  return { p50: ms(0.5), p95: ms(0.95), p99: ms(0.99) };
}

/** The newest point: the "now" figures. */
export function latestPoint(history: History): Point | undefined {
  return history.points[history.points.length - 1];
}

/** The tiers seen anywhere in the kept points, in a stable order. */
export function tiersIn(points: Point[]): string[] {
  const order = ["anonymous", "free", "pro", "enterprise"];
  const seen = new Set<string>();
  for (const point of points) for (const tier of Object.keys(point.decisions ?? {})) seen.add(tier);
  return [...seen].sort((a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99) || a.localeCompare(b));
}
