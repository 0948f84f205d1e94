import { type FormEvent, useState } from "react";
import { ApiError, type ApiClient } from "../lib/api";
import { formatCount } from "../lib/format";
import type { RateLimitState } from "../lib/types";
import { ConfirmDialog } from "./ConfirmDialog";

function errorText(error: unknown): string {
  return error instanceof ApiError ? error.detail : "The gateway could not be reached.";
}

export function CacheClear({ client }: { client: ApiClient }) {
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<{ text: string; error: boolean } | null>(null);

  async function clear() {
    setConfirming(false);
    setBusy(true);
    setResult(null);
    try {
      const answer = await client.request<{ via: string }>("POST", "/api/v1/admin/cache/clear");
      setResult({ text: `Cache cleared (via ${answer.via}); every replica dropped its L1.`, error: false });
    } catch (error) {
      setResult({ text: errorText(error), error: true });
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="card" aria-labelledby="cache-title">
      <h2 id="cache-title">Cache</h2>
      <p className="muted">Deletes every cached resource in Redis and each replica's L1. Rate limits and sessions are kept.</p>
      <button type="button" className="danger" onClick={() => setConfirming(true)} disabled={busy}>
        {busy ? "Clearing…" : "Clear cache…"}
      </button>
      {result && (
        <p className={result.error ? "error" : "success"} role={result.error ? "alert" : "status"}>
          {result.text}
        </p>
      )}
      <ConfirmDialog
        open={confirming}
        title="Clear the whole cache?"
        confirmLabel="Clear cache"
        onConfirm={() => void clear()}
        onCancel={() => setConfirming(false)}
      >
        <p>Reads go to PostgreSQL until the cache warms up again.</p>
      </ConfirmDialog>
    </section>
  );
}

export function RateLimitLookup({ client }: { client: ApiClient }) {
  const [identifier, setIdentifier] = useState("");
  const [state, setState] = useState<RateLimitState | null>(null);
  const [error, setError] = useState<string | null>(null);

  async function lookUp(event: FormEvent) {
    event.preventDefault();
    setError(null);
    setState(null);
    try {
      setState(
        await client.request<RateLimitState>(
          "GET",
          `/api/v1/admin/rate-limits/${encodeURIComponent(identifier.trim())}`,
        ),
      );
    } catch (failure) {
      setError(errorText(failure));
    }
  }

  return (
    <section className="card" aria-labelledby="ratelimit-title">
      <h2 id="ratelimit-title">Rate-limit lookup</h2>
      <form onSubmit={(event) => void lookUp(event)} className="inline-form">
        <label htmlFor="rl-identifier">User id, email or IP address</label>
        <div className="row">
          <input
            id="rl-identifier"
            required
            placeholder="user@example.com or ip:10.0.0.1"
            value={identifier}
            onChange={(event) => setIdentifier(event.target.value)}
          />
          <button type="submit">Look up</button>
        </div>
      </form>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {state && (
        <dl className="facts" aria-live="polite">
          <dt>Key</dt>
          <dd className="mono">{state.key}</dd>
          <dt>Tier</dt>
          <dd>{state.tier}</dd>
          <dt>Used</dt>
          <dd>
            {formatCount(state.used)} of {formatCount(state.limit)} per {state.window_seconds} s
          </dd>
          <dt>Remaining</dt>
          <dd>{formatCount(state.remaining)}</dd>
          <dt>Resets in</dt>
          <dd>{state.reset_seconds.toFixed(1)} s</dd>
          <dt>Status</dt>
          <dd>
            <span className={`badge ${state.limited ? "bad" : "ok"}`}>{state.limited ? "limited" : "within limit"}</span>
          </dd>
        </dl>
      )}
    </section>
  );
}
