import { describe, expect, it } from "vitest";
import { ApiClient, ApiError, STORAGE_KEY, type SessionEvent } from "./api";

class MemoryStorage {
  items = new Map<string, string>();
  getItem(key: string) {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string) {
    this.items.set(key, value);
  }
  removeItem(key: string) {
    this.items.delete(key);
  }
}

const USER = { id: 1, email: "admin@example.com", role: "admin", tier: "enterprise", disabled: false, created_at: "" };

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

function session(token: string, refresh: string, expiresIn = 900) {
  return { token, refresh_token: refresh, expires_in: expiresIn, user: USER };
}

function setup(handler: (url: string, init: RequestInit | undefined) => Response) {
  const storage = new MemoryStorage();
  const calls: { url: string; init: RequestInit | undefined }[] = [];
  let now = 1_000_000;
  const events: SessionEvent[] = [];
  const client = new ApiClient({
    storage,
    now: () => now,
    fetch: async (input, init) => {
      calls.push({ url: String(input), init });
      return handler(String(input), init);
    },
  });
  client.subscribe((event) => events.push(event));
  return { client, storage, calls, events, advance: (ms: number) => (now += ms) };
}

describe("ApiClient", () => {
  it("keeps the session in sessionStorage and sends the token only in a header", async () => {
    const t = setup((url) => (url.endsWith("/login") ? json(session("a1", "r1")) : json({ ok: true })));
    await t.client.login("admin@example.com", "admin123");
    expect(JSON.parse(t.storage.getItem(STORAGE_KEY)!).token).toBe("a1");
    await t.client.request("GET", "/api/v1/keys");
    const call = t.calls[1]!;
    expect(call.url).toBe("/api/v1/keys");
    expect(new Headers(call.init?.headers).get("Authorization")).toBe("Bearer a1");
    expect(t.calls.every((c) => !c.url.includes("a1"))).toBe(true);
    expect(new ApiClient({ storage: t.storage }).session?.token).toBe("a1");
  });

  it("refreshes a token close to expiry before using it, once for concurrent callers", async () => {
    let refreshes = 0;
    const t = setup((url) => {
      if (url.endsWith("/login")) return json(session("a1", "r1", 60));
      if (url.endsWith("/refresh")) return json(session(`a${(refreshes += 1) + 1}`, "r2"));
      return json({});
    });
    await t.client.login("admin@example.com", "admin123");
    t.advance(45_000);
    await Promise.all([t.client.request("GET", "/x"), t.client.request("GET", "/y")]);
    expect(refreshes).toBe(1);
    expect(t.events).toEqual(["signed-in", "refreshed"]);
  });

  it("expires the session when the refresh token is refused", async () => {
    const t = setup((url) => {
      if (url.endsWith("/login")) return json(session("a1", "r1"));
      if (url.endsWith("/refresh")) return json({ title: "Unauthorized", detail: "revoked" }, 401);
      return json({ title: "Unauthorized", detail: "expired" }, 401);
    });
    await t.client.login("admin@example.com", "admin123");
    await expect(t.client.request("GET", "/api/v1/me")).rejects.toBeInstanceOf(ApiError);
    expect(t.client.session).toBeNull();
    expect(t.storage.getItem(STORAGE_KEY)).toBeNull();
    expect(t.events).toEqual(["signed-in", "expired"]);
  });

  it("reports problem+json details, and logs out even when the gateway is down", async () => {
    const t = setup((url) => {
      if (url.endsWith("/login")) return json(session("a1", "r1"));
      if (url.endsWith("/logout")) throw new TypeError("down");
      return json({ title: "Bad Gateway", detail: "No apiserver could clear the cache." }, 502);
    });
    await t.client.login("admin@example.com", "admin123");
    await expect(t.client.request("POST", "/api/v1/admin/cache/clear")).rejects.toMatchObject({
      status: 502,
      detail: "No apiserver could clear the cache.",
    });
    await t.client.logout();
    expect(t.client.session).toBeNull();
    expect(t.events.at(-1)).toBe("signed-out");
  });
});
