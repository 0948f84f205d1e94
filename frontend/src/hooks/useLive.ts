import { useEffect, useReducer, useState } from "react";
import type { ApiClient } from "../lib/api";
import { EMPTY_HISTORY, type History, mergeFleet } from "../lib/history";
import { type Tracked, type TrackedInstance, trackInstances } from "../lib/instances";
import { runStream, type StreamStatus } from "../lib/stream";
import { type FleetView, type GatewayRow, isUpstreamError, type Snapshot } from "../lib/types";

/** Data older than this (ms) is flagged as stale: the stream normally delivers one snapshot a second. */
export const STALE_AFTER_MS = 5_000;
/** A gateway row older than this (seconds) is late: gateways beat every second. */
export const GATEWAY_LATE_AFTER = 3;

export interface LiveState {
  latest: Snapshot | null;
  receivedAt: number | null;
  /** The fleet view of the latest snapshot; null when it could not be read (see `fleetError`). */
  fleet: FleetView | null;
  fleetError: string | null;
  history: History;
  gateways: Tracked<GatewayRow>[];
  instances: TrackedInstance[];
}

type Action = { type: "snapshot"; snapshot: Snapshot; receivedAt: number };

export function liveReducer(state: LiveState, action: Action): LiveState {
  const { snapshot, receivedAt } = action;
  const heartbeats = isUpstreamError(snapshot.apiservers) ? null : snapshot.apiservers;
  const fleet = snapshot.fleet === undefined || isUpstreamError(snapshot.fleet) ? null : snapshot.fleet;
  const fleetError =
    snapshot.fleet === undefined ? "this gateway sends no fleet figures" : isUpstreamError(snapshot.fleet) ? snapshot.fleet.error : null;
  return {
    latest: snapshot,
    receivedAt,
    fleet,
    fleetError,
    history: fleet === null ? state.history : mergeFleet(state.history, fleet),
    gateways: trackInstances(state.gateways, fleet?.gateways ?? null, snapshot.generated_at, GATEWAY_LATE_AFTER),
    instances: trackInstances(state.instances, heartbeats, snapshot.generated_at),
  };
}

const INITIAL: LiveState = {
  latest: null,
  receivedAt: null,
  fleet: null,
  fleetError: null,
  history: EMPTY_HISTORY,
  gateways: [],
  instances: [],
};

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
