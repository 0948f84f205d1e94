// The shapes of what the gateway's admin API sends (gateway/admin/routes.py, gateway/fleet.py,
// balancer/backend.py, apiserver/heartbeat.py). Every part may be an `{error}` object when that tier did not answer.

export interface UpstreamError {
  error: string;
  status?: number | null;
}

export interface BreakerSnapshot {
  name: string;
  state: string;
  failures: number;
  fail_max?: number;
  reset_timeout?: number;
  retry_after?: number;
  total_opens?: number;
}

export interface LatencyHistogram {
  /** Upper bounds in seconds; the last is null (+Inf). */
  le: (number | null)[];
  cumulative: number[];
}

export interface GatewaySnapshot {
  instance: string;
  uptime: number;
  requests: number;
  responses_by_class: Record<string, number>;
  rate_limit_decisions: Record<string, Record<string, number>>;
  shed: number;
  logins: Record<string, number>;
  http?: {
    responses_by_status: Record<string, number>;
    latency_seconds: LatencyHistogram;
  };
  rate_limiter: {
    backend: "redis" | "local";
    fail_open: boolean;
    window_seconds: number;
    tiers: Record<string, number>;
    breaker: BreakerSnapshot;
  };
}

export interface BackendSnapshot {
  id: string;
  url: string;
  weight?: number;
  healthy: boolean;
  in_rotation: boolean;
  breaker: BreakerSnapshot;
  draining: boolean;
  in_flight: number;
  requests: number;
  failures: number;
  success_rate: number | null;
  latency_ms: { p50: number | null; p99: number | null; ewma: number | null };
  last_error?: string | null;
  last_check_error?: string | null;
}

export interface BalancerStatus {
  algorithm?: string;
  in_flight?: number;
  healthy_backends?: number;
  backends: BackendSnapshot[];
}

export interface CacheLevel {
  hits: number;
  misses: number;
  hit_ratio: number | null;
}

export interface InstanceHeartbeat {
  instance: string;
  service?: string;
  port?: number;
  ts: number;
  uptime: number;
  cache: {
    l1_entries: number;
    l1_evictions: number;
    l1_enabled: boolean;
    l1: CacheLevel;
    l2: CacheLevel;
    stale_served?: number;
    redis_commands?: number;
  };
  breakers: BreakerSnapshot[];
}

/** One gateway's heartbeat row (gateway/fleet.py): its snapshot, under its fleet id, with its latest rates. */
export interface GatewayRow extends GatewaySnapshot {
  ts: number;
  port?: number;
  workers?: number;
  /** Per second over its last beat; null on its first beat. */
  rates: { requests: number; too_many: number; server_errors: number } | null;
}

/** The live gateways' cumulative figures, summed. */
export interface FleetTotal {
  requests: number;
  shed: number;
  responses_by_class: Record<string, number>;
  rate_limit_decisions: Record<string, Record<string, number>>;
  logins: Record<string, number>;
  http: { responses_by_status: Record<string, number>; latency_seconds: LatencyHistogram };
}

/** One second of the whole fleet's traffic, as every gateway added its share in Redis; `t` is the second's end. */
export interface FleetSecond {
  t: number;
  gateways: number;
  requests: number;
  too_many: number;
  server_errors: number;
  decisions: Record<string, Record<string, number>>;
  /** Cumulative counts under each bound of the fleet's `le`; null when no request was timed that second. */
  latency: number[] | null;
}

export interface FleetView {
  step: number;
  live_ttl: number;
  le: (number | null)[];
  gateways: GatewayRow[];
  total: FleetTotal;
  /** The last 15 minutes in a stream's first event, the last few seconds afterwards. */
  history: FleetSecond[];
}

export interface Snapshot {
  generated_at: number;
  /** The gateway process that answers this stream. */
  gateway: GatewaySnapshot;
  /** Every live gateway (absent from a gateway older than the fleet view). */
  fleet?: FleetView | UpstreamError;
  balancer: BalancerStatus | UpstreamError;
  apiservers: InstanceHeartbeat[] | UpstreamError;
}

export interface User {
  id: number;
  email: string;
  role: "user" | "admin";
  tier: string;
  disabled: boolean;
  created_at: string;
}

export interface Session {
  token: string;
  refreshToken: string;
  /** Epoch milliseconds at which the access token expires. */
  expiresAt: number;
  user: User;
}

export interface ApiKey {
  id: number;
  name: string;
  prefix: string;
  created_at: string;
  last_used_at: string | null;
  expires_at: string | null;
}

export interface RateLimitState {
  identifier: string;
  key: string;
  tier: string;
  limit: number;
  used: number;
  remaining: number;
  reset_seconds: number;
  window_seconds: number;
  limited: boolean;
}

export function isUpstreamError(value: unknown): value is UpstreamError {
  return typeof value === "object" && value !== null && "error" in value && !Array.isArray(value);
}
