// The live connection to GET /api/v1/admin/stream: fetch() with the bearer header (never a token in the
// URL), an SSE parser over the body, and reconnection with backoff whenever the stream ends or fails.
//
//   connect ─► 200 ─► snapshot events ─► (stream ends | network error) ─► wait backoff ─► connect
//           ├► 401 ─► ask the session to refresh ─► ok: connect at once | failed: "expired", stop
//           └► 403 ─► "forbidden", stop

import { Backoff, type BackoffOptions, DEFAULT_BACKOFF } from "./backoff";
import { readEvents } from "./sse";
import type { Snapshot } from "./types";

export type StreamStatus =
  | { kind: "connecting"; attempt: number }
  | { kind: "live" }
  | { kind: "retrying"; inMs: number; reason: string; attempt: number }
  | { kind: "expired" }
  | { kind: "forbidden" }
  | { kind: "stopped" };

export interface StreamOptions {
  url: string;
  /** A current access token, refreshed first when it is about to expire; null when the session is gone. */
  token: () => Promise<string | null>;
  /** Called after a 401: true when a new token was obtained. */
  refresh: () => Promise<boolean>;
  onSnapshot: (snapshot: Snapshot, receivedAt: number) => void;
  onStatus: (status: StreamStatus) => void;
  fetch?: typeof fetch;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  now?: () => number;
  backoff?: BackoffOptions;
}

export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

type Outcome = "ended" | "unauthorized" | "forbidden" | { failed: string };

async function connectOnce(options: StreamOptions, signal: AbortSignal, onData: () => void): Promise<Outcome> {
  const token = await options.token();
  if (token === null) return "unauthorized";
  const doFetch = options.fetch ?? fetch;
  let response: Response;
  try {
    response = await doFetch(options.url, {
      headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" },
      cache: "no-store",
      signal,
    });
  } catch (error) {
    return { failed: signal.aborted ? "stopped" : describe(error) };
  }
  if (response.status === 401) return "unauthorized";
  if (response.status === 403) return "forbidden";
  if (!response.ok || response.body === null) return { failed: `the gateway answered ${response.status}` };
  const now = options.now ?? Date.now;
  try {
    await readEvents(
      response.body,
      (event) => {
        if (event.event !== "snapshot") return;
        let snapshot: Snapshot;
        try {
          snapshot = JSON.parse(event.data) as Snapshot;
        } catch {
          return; // a malformed event is skipped; the next one will do
        }
        onData();
        options.onSnapshot(snapshot, now());
      },
      signal,
    );
  } catch (error) {
    return { failed: signal.aborted ? "stopped" : describe(error) };
  }
  return "ended";
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message || error.name : String(error);
}

/** Keep the stream open until `signal` aborts, the session expires or the account is refused. */
export async function runStream(options: StreamOptions, signal: AbortSignal): Promise<void> {
  const backoff = new Backoff(options.backoff ?? DEFAULT_BACKOFF);
  const sleep = options.sleep ?? abortableSleep;
  let refreshed = false;
  while (!signal.aborted) {
    options.onStatus({ kind: "connecting", attempt: backoff.attempts });
    let live = false;
    const outcome = await connectOnce(options, signal, () => {
      if (!live) {
        live = true;
        backoff.reset();
        refreshed = false;
        options.onStatus({ kind: "live" });
      }
    });
    if (signal.aborted) break;
    if (outcome === "forbidden") return options.onStatus({ kind: "forbidden" });
    if (outcome === "unauthorized") {
      // One refresh per failure streak: a token the gateway still refuses after a refresh is not retried forever.
      if (!refreshed && (await options.refresh())) {
        refreshed = true;
        continue;
      }
      return options.onStatus({ kind: "expired" });
    }
    const reason = outcome === "ended" ? "the stream ended" : outcome.failed;
    const delay = backoff.next();
    options.onStatus({ kind: "retrying", inMs: delay, reason, attempt: backoff.attempts });
    await sleep(delay, signal);
  }
  options.onStatus({ kind: "stopped" });
}
