import { describe, expect, it } from "vitest";
import { runStream, type StreamStatus } from "./stream";
import type { Snapshot } from "./types";

function sseResponse(...events: object[]): Response {
  const text = ": snapshots follow\n\n" + events.map((e) => `event: snapshot\ndata: ${JSON.stringify(e)}\n\n`).join("");
  return new Response(text, { status: 200, headers: { "Content-Type": "text/event-stream" } });
}

interface Harness {
  statuses: StreamStatus[];
  snapshots: Snapshot[];
  sleeps: number[];
  requests: { url: string; auth: string | null }[];
}

async function run(
  answers: (() => Response | Promise<Response>)[],
  { refreshOk = true, stopAfterSleeps = 10 }: { refreshOk?: boolean; stopAfterSleeps?: number } = {},
): Promise<Harness> {
  const harness: Harness = { statuses: [], snapshots: [], sleeps: [], requests: [] };
  const controller = new AbortController();
  let token = "t1";
  let call = 0;
  await runStream(
    {
      url: "/api/v1/admin/stream",
      token: async () => token,
      refresh: async () => {
        token = "t2";
        return refreshOk;
      },
      onSnapshot: (snapshot) => harness.snapshots.push(snapshot),
      onStatus: (status) => harness.statuses.push(status),
      fetch: async (input, init) => {
        const headers = new Headers(init?.headers);
        harness.requests.push({ url: String(input), auth: headers.get("Authorization") });
        const answer = answers[Math.min(call, answers.length - 1)]!;
        call += 1;
        return answer();
      },
      sleep: async (ms) => {
        harness.sleeps.push(ms);
        if (harness.sleeps.length >= stopAfterSleeps) controller.abort();
      },
      backoff: { baseMs: 100, maxMs: 1000, random: () => 0.999999 },
    },
    controller.signal,
  );
  return harness;
}

describe("runStream", () => {
  it("sends the token in a header, never in the URL, and delivers snapshots", async () => {
    const h = await run([() => sseResponse({ generated_at: 1 }, { generated_at: 2 })], { stopAfterSleeps: 1 });
    expect(h.requests[0]).toEqual({ url: "/api/v1/admin/stream", auth: "Bearer t1" });
    expect(h.snapshots.map((s) => s.generated_at)).toEqual([1, 2]);
    expect(h.statuses.map((s) => s.kind)).toEqual(["connecting", "live", "retrying", "stopped"]);
  });

  it("backs off exponentially while the gateway is down, and resets after data flows", async () => {
    const down = () => Promise.reject(new TypeError("Failed to fetch"));
    const h = await run([down, down, down, () => sseResponse({ generated_at: 1 }), down], { stopAfterSleeps: 5 });
    expect(h.sleeps).toEqual([100, 200, 400, 100, 200]);
    const retry = h.statuses.find((s) => s.kind === "retrying");
    expect(retry).toMatchObject({ reason: "Failed to fetch" });
  });

  it("refreshes once on 401 and reconnects at once with the new token", async () => {
    const h = await run([() => new Response(null, { status: 401 }), () => sseResponse({ generated_at: 1 })], {
      stopAfterSleeps: 1,
    });
    expect(h.requests.map((r) => r.auth)).toEqual(["Bearer t1", "Bearer t2"]);
    expect(h.sleeps).toHaveLength(1); // only after the stream ended, not before the reconnect
  });

  it("gives up with 'expired' when the refresh is refused, and 'forbidden' on 403", async () => {
    const expired = await run([() => new Response(null, { status: 401 })], { refreshOk: false });
    expect(expired.statuses.at(-1)).toEqual({ kind: "expired" });
    const forbidden = await run([() => new Response(null, { status: 403 })]);
    expect(forbidden.statuses.at(-1)).toEqual({ kind: "forbidden" });
    expect(forbidden.sleeps).toEqual([]);
  });

  it("skips a malformed event and keeps reading", async () => {
    const body = "event: snapshot\ndata: {not json\n\nevent: snapshot\ndata: {\"generated_at\":5}\n\n";
    const h = await run([() => new Response(body, { status: 200 })], { stopAfterSleeps: 1 });
    expect(h.snapshots.map((s) => s.generated_at)).toEqual([5]);
  });
});
