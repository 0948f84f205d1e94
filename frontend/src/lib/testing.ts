// Builders for unit tests: a snapshot shaped like the gateway's, with only the figures a test cares about.
import type { Snapshot } from "./types";

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
