// Builders for unit tests: a snapshot shaped like the gateway's, with only the figures a test cares about.
import type { FleetSecond, FleetView, GatewayRow, Snapshot } from "./types";

export const LE = [0.001, 0.01, 0.1, 1, null];

export interface SnapshotFigures {
  t: number;
  instance?: string;
  uptime?: number;
  statuses?: Record<string, number>;
  decisions?: Record<string, Record<string, number>>;
  latency?: number[];
}

export function snapshot(figures: SnapshotFigures): Snapshot {
  return {
    generated_at: figures.t,
    gateway: {
      instance: figures.instance ?? "gateway-1",
      uptime: figures.uptime ?? figures.t,
      requests: Object.values(figures.statuses ?? {}).reduce((a, b) => a + b, 0),
      responses_by_class: {},
      rate_limit_decisions: figures.decisions ?? {},
      shed: 0,
      logins: {},
      http: {
        responses_by_status: figures.statuses ?? {},
        latency_seconds: { le: LE, cumulative: figures.latency ?? [0, 0, 0, 0, 0] },
      },
      rate_limiter: {
        backend: "redis",
        fail_open: true,
        window_seconds: 60,
        tiers: {},
        breaker: { name: "ratelimit-redis", state: "closed", failures: 0 },
      },
    },
    balancer: { backends: [] },
    apiservers: [],
  };
}

export interface SecondFigures {
  t: number;
  requests?: number;
  tooMany?: number;
  serverErrors?: number;
  decisions?: Record<string, Record<string, number>>;
  latency?: number[] | null;
  gateways?: number;
}

/** One second of the fleet's traffic, as gateway/fleet.py reads a slot back. */
export function second(figures: SecondFigures): FleetSecond {
  return {
    t: figures.t,
    gateways: figures.gateways ?? 1,
    requests: figures.requests ?? 0,
    too_many: figures.tooMany ?? 0,
    server_errors: figures.serverErrors ?? 0,
    decisions: figures.decisions ?? {},
    latency: figures.latency ?? null,
  };
}

export function gatewayRow(instance: string, ts: number, requests = 0): GatewayRow {
  return { ...snapshot({ t: ts, instance }).gateway, requests, ts, rates: { requests: 1, too_many: 0, server_errors: 0 } };
}

/** A fleet view holding `history` and the given rows. */
export function fleet(history: FleetSecond[], gateways: GatewayRow[] = []): FleetView {
  return {
    step: 1,
    live_ttl: 5,
    le: LE,
    gateways,
    total: {
      requests: gateways.reduce((sum, row) => sum + row.requests, 0),
      shed: 0,
      responses_by_class: {},
      rate_limit_decisions: {},
      logins: {},
      http: { responses_by_status: {}, latency_seconds: { le: LE, cumulative: [0, 0, 0, 0, 0] } },
    },
    history,
  };
}
