// The shapes of what the gateway's admin API sends (gateway/admin/routes.py, balancer/backend.py,
// apiserver/heartbeat.py). Every part may be an `{error}` object when that tier did not answer.

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

export interface Snapshot {
  generated_at: number;
  gateway: GatewaySnapshot;
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
