import { useLive } from "../hooks/useLive";
import type { ApiClient } from "../lib/api";
import { formatAgo, formatCount, formatMs, formatRate } from "../lib/format";
import { latestPoint } from "../lib/history";
import type { Tracked } from "../lib/instances";
import type { StreamStatus } from "../lib/stream";
import { type GatewayRow, isUpstreamError, type Snapshot, type User } from "../lib/types";
import { CacheClear, RateLimitLookup } from "./Actions";
import { ApiKeys } from "./ApiKeys";
import { Backends } from "./Backends";
import { Charts } from "./Charts";
import { Gateways } from "./Gateways";
import { Instances } from "./Instances";
import { Users } from "./Users";

function statusText(status: StreamStatus): string {
  switch (status.kind) {
    case "live":
      return "live";
    case "connecting":
      return status.attempt === 0 ? "connecting…" : "reconnecting…";
    case "retrying":
      return `reconnecting in ${Math.ceil(status.inMs / 1000)} s`;
    case "expired":
      return "session expired";
    case "forbidden":
      return "refused";
    case "stopped":
      return "stopped";
  }
}

/** "redis" while every live gateway limits through Redis; otherwise how many fell back to local limits. */
function limiterText(gateways: Tracked<GatewayRow>[], latest: Snapshot | null): string {
  const live = gateways.filter((row) => row.state !== "missing");
  if (live.length === 0) {
    if (latest === null) return "—";
    const backend = latest.gateway.rate_limiter.backend;
    return backend === "local" ? "local (degraded)" : backend;
  }
  const local = live.filter((row) => row.heartbeat.rate_limiter.backend === "local").length;
  return local === 0 ? "redis" : `local on ${local} of ${live.length} (degraded)`;
}

function Stat({ label, value, testId }: { label: string; value: string; testId: string }) {
  return (
    <div className="stat">
      <dt>{label}</dt>
      <dd data-testid={testId}>{value}</dd>
    </div>
  );
}

export function Dashboard({ client, user }: { client: ApiClient; user: User }) {
  const live = useLive(client);
  const latest = live.latest;
  const point = latestPoint(live.history);
  const liveGateways = live.gateways.filter((row) => row.state !== "missing").length;
  const balancer = latest === null ? null : latest.balancer;
  const backends = balancer !== null && !isUpstreamError(balancer) ? balancer.backends : [];
  const ageSeconds = live.receivedAt === null ? null : (Date.now() - live.receivedAt) / 1000;

  if (live.forbidden) {
    return (
      <main className="centered">
        <section className="card narrow">
          <h1>Admins only</h1>
          <p>The gateway refused the live view for {user.email}.</p>
          <button type="button" className="primary" onClick={() => void client.logout()}>
            Sign out
          </button>
        </section>
      </main>
    );
  }

  return (
    <>
      <header className="topbar">
        <h1>scalable-api operations</h1>
        <span className={`badge ${live.status.kind === "live" && !live.stale ? "ok" : "warn"}`} data-testid="stream-status">
          {statusText(live.status)}
        </span>
        <span className="spacer" />
        <span className="muted who">{user.email}</span>
        <button type="button" onClick={() => void client.logout()}>
          Sign out
        </button>
      </header>
      {live.stale && (
        <div className="banner" role="alert" data-testid="stale-banner">
          {live.receivedAt === null
            ? "Waiting for the first live snapshot…"
            : `Data is stale: last update ${formatAgo(ageSeconds)}. ${live.status.kind === "retrying" ? `Reconnecting (${live.status.reason}).` : "Reconnecting…"}`}
        </div>
      )}
      <main className="dashboard">
        <section aria-labelledby="summary-title" className="card">
          <h2 id="summary-title">Now</h2>
          <dl className="stats">
            <Stat label="Requests/s" value={formatRate(point?.rps)} testId="stat-rps" />
            <Stat
              label="Requests served"
              value={formatCount(live.fleet ? live.fleet.total.requests : latest?.gateway.requests)}
              testId="stat-requests"
            />
            <Stat label="p95 latency" value={formatMs(point?.p95)} testId="stat-p95" />
            <Stat label="429/s" value={formatRate(point?.tooManyPerSecond)} testId="stat-429" />
            <Stat label="5xx/s" value={formatRate(point?.serverErrorsPerSecond)} testId="stat-5xx" />
            <Stat
              label="Backends in rotation"
              value={backends.length ? `${backends.filter((b) => b.in_rotation).length} / ${backends.length}` : "—"}
              testId="stat-backends"
            />
            <Stat label="Rate limiter" value={limiterText(live.gateways, latest)} testId="stat-limiter" />
            <Stat label="Gateways" value={live.fleet ? `${liveGateways} live` : "—"} testId="stat-gateways" />
          </dl>
          {latest && (
            <p className="sub">
              {live.fleet
                ? `Every live gateway, summed (this page is served by ${latest.gateway.instance}); balancer and apiservers fleet-wide.`
                : `Requests served: gateway ${latest.gateway.instance} only, the fleet's figures are unavailable; balancer and apiservers fleet-wide.`}
            </p>
          )}
        </section>
        <Gateways
          gateways={live.gateways}
          fleet={live.fleet}
          error={live.fleetError}
          serving={latest?.gateway.instance ?? null}
          now={latest?.generated_at ?? null}
        />
        <Charts points={live.history.points} />
        <Backends client={client} balancer={balancer} />
        <Instances instances={live.instances} now={latest?.generated_at ?? null} />
        <div className="actions-grid">
          <CacheClear client={client} />
          <RateLimitLookup client={client} />
          <ApiKeys client={client} />
          <Users client={client} />
        </div>
      </main>
    </>
  );
}
