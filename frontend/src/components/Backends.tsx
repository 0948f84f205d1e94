import { useState } from "react";
import { ApiError, type ApiClient } from "../lib/api";
import { formatCount, formatMs, formatRatio } from "../lib/format";
import { type BalancerStatus, isUpstreamError, type UpstreamError } from "../lib/types";

type Action = "drain" | "enable" | "reset";

function describe(action: Action, id: string): string {
  return action === "reset" ? `Breaker of ${id} reset.` : `${id} ${action === "drain" ? "draining" : "enabled"}.`;
}

export function Backends({ client, balancer }: { client: ApiClient; balancer: BalancerStatus | UpstreamError | null }) {
  const [pending, setPending] = useState<string | null>(null);
  const [message, setMessage] = useState<{ text: string; error: boolean } | null>(null);

  async function act(id: string, action: Action) {
    setPending(`${id}:${action}`);
    setMessage(null);
    try {
      const path =
        action === "reset"
          ? `/api/v1/admin/circuit-breakers/${encodeURIComponent(`backend:${id}`)}/reset`
          : `/api/v1/admin/backends/${encodeURIComponent(id)}/${action}`;
      await client.request("POST", path);
      setMessage({ text: describe(action, id), error: false });
    } catch (error) {
      setMessage({ text: error instanceof ApiError ? error.detail : String(error), error: true });
    } finally {
      setPending(null);
    }
  }

  return (
    <section className="card" aria-labelledby="backends-title">
      <h2 id="backends-title">Backends (balancer)</h2>
      {balancer === null && <p className="muted">Waiting for data…</p>}
      {balancer !== null && isUpstreamError(balancer) && (
        <p className="error" role="alert">
          The balancer did not answer: {balancer.error}
        </p>
      )}
      {balancer !== null && !isUpstreamError(balancer) && (
        <div className="table-scroll" tabIndex={0} aria-label="Backends table (scrolls sideways)">
          <table>
            <thead>
              <tr>
                <th scope="col">Backend</th>
                <th scope="col">Health</th>
                <th scope="col">Breaker</th>
                <th scope="col">Rotation</th>
                <th scope="col" className="num">In flight</th>
                <th scope="col" className="num">Requests</th>
                <th scope="col" className="num">Success</th>
                <th scope="col" className="num">p50 / p99</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {balancer.backends.map((backend) => (
                <tr key={backend.id} data-backend={backend.id} data-healthy={String(backend.healthy)}>
                  <th scope="row">
                    <span className="mono">{backend.id}</span>
                    <span className="sub mono">{backend.url}</span>
                  </th>
                  <td>
                    <span className={`badge ${backend.healthy ? "ok" : "bad"}`}>
                      {backend.healthy ? "healthy" : "unhealthy"}
                    </span>
                    {!backend.healthy && backend.last_check_error && (
                      <span className="sub">{backend.last_check_error}</span>
                    )}
                  </td>
                  <td>
                    <span className={`badge ${backend.breaker.state === "closed" ? "ok" : "warn"}`}>
                      {backend.breaker.state}
                    </span>
                  </td>
                  <td>
                    <span className={`badge ${backend.draining ? "warn" : backend.in_rotation ? "ok" : "bad"}`}>
                      {backend.draining ? "draining" : backend.in_rotation ? "in rotation" : "out"}
                    </span>
                  </td>
                  <td className="num">{formatCount(backend.in_flight)}</td>
                  <td className="num">{formatCount(backend.requests)}</td>
                  <td className="num">{formatRatio(backend.success_rate)}</td>
                  <td className="num">
                    {formatMs(backend.latency_ms.p50)} / {formatMs(backend.latency_ms.p99)}
                  </td>
                  <td className="actions">
                    {backend.draining ? (
                      <button
                        type="button"
                        onClick={() => void act(backend.id, "enable")}
                        disabled={pending !== null}
                        aria-label={`Enable backend ${backend.id}`}
                      >
                        Enable
                      </button>
                    ) : (
                      <button
                        type="button"
                        onClick={() => void act(backend.id, "drain")}
                        disabled={pending !== null}
                        aria-label={`Drain backend ${backend.id}`}
                      >
                        Drain
                      </button>
                    )}
                    <button
                      type="button"
                      onClick={() => void act(backend.id, "reset")}
                      disabled={pending !== null}
                      aria-label={`Reset the breaker of backend ${backend.id}`}
                    >
                      Reset breaker
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {message && (
        <p className={message.error ? "error" : "success"} role={message.error ? "alert" : "status"}>
          {message.text}
        </p>
      )}
    </section>
  );
}
