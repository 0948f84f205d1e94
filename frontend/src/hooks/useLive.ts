import { useEffect, useReducer, useState } from "react";
import type { ApiClient } from "../lib/api";
import { addSnapshot, EMPTY_HISTORY, type History } from "../lib/history";
import { trackInstances, type TrackedInstance } from "../lib/instances";
import { runStream, type StreamStatus } from "../lib/stream";
import { isUpstreamError, type Snapshot } from "../lib/types";

/** Data older than this (ms) is flagged as stale: the stream normally delivers one snapshot a second. */
export const STALE_AFTER_MS = 5_000;

export interface LiveState {
  latest: Snapshot | null;
  receivedAt: number | null;
  history: History;
  instances: TrackedInstance[];
}

type Action = { type: "snapshot"; snapshot: Snapshot; receivedAt: number };

export function liveReducer(state: LiveState, action: Action): LiveState {
  const { snapshot, receivedAt } = action;
  const heartbeats = isUpstreamError(snapshot.apiservers) ? null : snapshot.apiservers;
  return {
    latest: snapshot,
    receivedAt,
    history: addSnapshot(state.history, snapshot),
    instances: trackInstances(state.instances, heartbeats, snapshot.generated_at),
  };
}

const INITIAL: LiveState = { latest: null, receivedAt: null, history: EMPTY_HISTORY, instances: [] };

export function useLive(client: ApiClient): LiveState & { status: StreamStatus; stale: boolean; forbidden: boolean } {
  const [state, dispatch] = useReducer(liveReducer, INITIAL);
  const [status, setStatus] = useState<StreamStatus>({ kind: "connecting", attempt: 0 });
  const [now, setNow] = useState(() => Date.now());

  useEffect(() => {
    const controller = new AbortController();
    void runStream(
      {
        url: "/api/v1/admin/stream",
        token: () => client.accessToken(),
        refresh: () => client.refresh(),
        onSnapshot: (snapshot, receivedAt) => dispatch({ type: "snapshot", snapshot, receivedAt }),
        onStatus: (next) => {
          setStatus(next);
          if (next.kind === "expired") client.expire();
        },
      },
      controller.signal,
    );
    return () => controller.abort();
  }, [client]);

  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, []);

  const stale = status.kind !== "live" || (state.receivedAt !== null && now - state.receivedAt > STALE_AFTER_MS);
  return { ...state, status, stale, forbidden: status.kind === "forbidden" };
}
