import { formatAgo, formatCount, formatDuration, formatRate } from "../lib/format";
import type { Tracked } from "../lib/instances";
import type { FleetView, GatewayRow } from "../lib/types";

interface Props {
  gateways: Tracked<GatewayRow>[];
  fleet: FleetView | null;
  /** Why the fleet could not be read, when it could not. */
  error: string | null;
  /** The instance id of the gateway process serving this page (a worker's id ends in -w<i>). */
  serving: string | null;
  now: number | null;
}

function servesThisPage(id: string, serving: string | null): boolean {
  return serving !== null && (serving === id || serving.startsWith(`${id}-w`));
}

function sum(rows: Tracked<GatewayRow>[], pick: (row: GatewayRow) => number | undefined): number | null {
  const live = rows.filter((row) => row.state !== "missing" && row.heartbeat.rates !== null);
  return live.length ? live.reduce((total, row) => total + (pick(row.heartbeat) ?? 0), 0) : null;
}

export function Gateways({ gateways, fleet, error, serving, now }: Props) {
  const live = gateways.filter((row) => row.state !== "missing").length;
  return (
    <section className="card" aria-labelledby="gateways-title">
      <h2 id="gateways-title">Gateways</h2>
      {error !== null && (
        <p className="error" data-testid="fleet-error">
          Fleet figures unavailable ({error}): the charts pause, and requests served and the rate limiter above are this gateway’s only.
        </p>
      )}
      {gateways.length === 0 ? (
        <p className="muted">No gateway heartbeats yet.</p>
      ) : (
        <div className="table-scroll" tabIndex={0} aria-label="Gateways table (scrolls sideways)">
          <table>
            <thead>
              <tr>
                <th scope="col">Gateway</th>
                <th scope="col">State</th>
                <th scope="col" className="num">Uptime</th>
                <th scope="col" className="num">Requests</th>
                <th scope="col" className="num">Requests/s</th>
                <th scope="col" className="num">429/s</th>
                <th scope="col" className="num">5xx/s</th>
                <th scope="col" className="num">Shed</th>
                <th scope="col">Rate limiter</th>
              </tr>
            </thead>
            <tbody>
              {gateways.map((row) => {
                const gateway = row.heartbeat;
                return (
                  <tr key={row.id} data-gateway={row.id} data-state={row.state}>
                    <th scope="row" className="mono">
                      {row.id}
                      {servesThisPage(row.id, serving) && <span className="sub">serves this page</span>}
                      {(gateway.workers ?? 1) > 1 && <span className="sub">{gateway.workers} workers</span>}
                    </th>
                    <td>
                      <span className={`badge ${row.state === "up" ? "ok" : row.state === "late" ? "warn" : "bad"}`}>
                        {row.state}
                      </span>
                      {row.state !== "up" && now !== null && <span className="sub">last seen {formatAgo(now - row.lastSeen)}</span>}
                    </td>
                    <td className="num">{formatDuration(gateway.uptime)}</td>
                    <td className="num" data-testid="gateway-requests">
                      {formatCount(gateway.requests)}
                    </td>
                    <td className="num">{formatRate(gateway.rates?.requests)}</td>
                    <td className="num">{formatRate(gateway.rates?.too_many)}</td>
                    <td className="num">{formatRate(gateway.rates?.server_errors)}</td>
                    <td className="num">{formatCount(gateway.shed)}</td>
                    <td>
                      <span className={`badge ${gateway.rate_limiter.backend === "redis" ? "ok" : "warn"}`}>
                        {gateway.rate_limiter.backend === "redis" ? "redis" : "local (degraded)"}
                      </span>
                    </td>
                  </tr>
                );
              })}
            </tbody>
            {fleet !== null && (
              <tfoot>
                <tr data-testid="fleet-total">
                  <th scope="row">Fleet total</th>
                  <td>{live} live</td>
                  <td className="num" />
                  <td className="num">{formatCount(fleet.total.requests)}</td>
                  <td className="num">{formatRate(sum(gateways, (g) => g.rates?.requests))}</td>
                  <td className="num">{formatRate(sum(gateways, (g) => g.rates?.too_many))}</td>
                  <td className="num">{formatRate(sum(gateways, (g) => g.rates?.server_errors))}</td>
                  <td className="num">{formatCount(fleet.total.shed)}</td>
                  <td />
                </tr>
              </tfoot>
            )}
          </table>
        </div>
      )}
    </section>
  );
}
