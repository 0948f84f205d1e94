import { formatAgo, formatCount, formatDuration, formatRatio } from "../lib/format";
import { breakerOf, type TrackedInstance } from "../lib/instances";

function breakerBadge(state: string | null) {
  if (state === null) return <span className="muted">—</span>;
  return <span className={`badge ${state === "closed" ? "ok" : "warn"}`}>{state}</span>;
}

export function Instances({ instances, now }: { instances: TrackedInstance[]; now: number | null }) {
  return (
    <section className="card" aria-labelledby="instances-title">
      <h2 id="instances-title">API server instances</h2>
      {instances.length === 0 ? (
        <p className="muted">No apiserver heartbeats yet.</p>
      ) : (
        <div className="table-scroll" tabIndex={0} aria-label="Instances table (scrolls sideways)">
          <table>
            <thead>
              <tr>
                <th scope="col">Instance</th>
                <th scope="col">State</th>
                <th scope="col" className="num">Uptime</th>
                <th scope="col" className="num">L1 hits</th>
                <th scope="col" className="num">L2 hits</th>
                <th scope="col" className="num">L1 entries</th>
                <th scope="col" className="num">L1 evictions</th>
                <th scope="col">External breaker</th>
                <th scope="col">Redis breaker</th>
              </tr>
            </thead>
            <tbody>
              {instances.map((instance) => {
                const cache = instance.heartbeat.cache;
                return (
                  <tr key={instance.id} data-instance={instance.id} data-state={instance.state}>
                    <th scope="row" className="mono">
                      {instance.id}
                    </th>
                    <td>
                      <span className={`badge ${instance.state === "up" ? "ok" : instance.state === "late" ? "warn" : "bad"}`}>
                        {instance.state}
                      </span>
                      {instance.state !== "up" && now !== null && (
                        <span className="sub">last seen {formatAgo(now - instance.lastSeen)}</span>
                      )}
                    </td>
                    <td className="num">{formatDuration(instance.heartbeat.uptime)}</td>
                    <td className="num">{formatRatio(cache.l1.hit_ratio)}</td>
                    <td className="num">{formatRatio(cache.l2.hit_ratio)}</td>
                    <td className="num">
                      {formatCount(cache.l1_entries)}
                      {!cache.l1_enabled && <span className="sub">L1 bypassed</span>}
                    </td>
                    <td className="num">{formatCount(cache.l1_evictions)}</td>
                    <td>{breakerBadge(breakerOf(instance, "external-api"))}</td>
                    <td>{breakerBadge(breakerOf(instance, "redis-cache"))}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
