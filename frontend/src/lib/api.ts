// The session and every call to the gateway. The access and refresh tokens live in memory and in
// sessionStorage (this tab only, gone when it closes), and only ever travel in request headers and bodies,
// never in a URL. An access token about to expire is refreshed first; a 401 triggers one refresh and one
// retry; when the refresh is refused the session is over and listeners are told ("expired").

import type { Session, User } from "./types";

export const STORAGE_KEY = "scalable-api.dashboard.session";
/** Refresh this long before the access token's expiry, so a request never leaves with a dying token. */
export const REFRESH_MARGIN_MS = 30_000;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    readonly body: unknown = null,
  ) {
    super(detail || title);
    this.name = "ApiError";
  }
}

export type SessionEvent = "signed-in" | "refreshed" | "signed-out" | "expired";

interface SessionBody {
  token: string;
  refresh_token: string;
  expires_in: number;
  user: User;
}

export interface ClientOptions {
  storage?: Pick<Storage, "getItem" | "setItem" | "removeItem"> | null;
  fetch?: typeof fetch;
  now?: () => number;
  base?: string;
}

export async function problemOf(response: Response): Promise<ApiError> {
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: fall back to the status line
  }
  const fields = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  const title = typeof fields.title === "string" ? fields.title : response.statusText || `HTTP ${response.status}`;
  const detail = typeof fields.detail === "string" ? fields.detail : title;
  return new ApiError(response.status, title, detail, body);
}

export class ApiClient {
  private current: Session | null;
  private refreshing: Promise<boolean> | null = null;
  private readonly listeners = new Set<(event: SessionEvent, session: Session | null) => void>();
  private readonly storage: ClientOptions["storage"];
  private readonly doFetch: typeof fetch;
  private readonly now: () => number;
  private readonly base: string;

  constructor(options: ClientOptions = {}) {
    this.storage = options.storage ?? null;
    this.doFetch = options.fetch ?? ((...args) => fetch(...args));
    this.now = options.now ?? Date.now;
    this.base = options.base ?? "";
    this.current = this.load();
  }

  get session(): Session | null {
    return this.current;
  }

  subscribe(listener: (event: SessionEvent, session: Session | null) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async login(email: string, password: string): Promise<Session> {
    const response = await this.doFetch(this.base + "/api/v1/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ email, password }),
    });
    if (!response.ok) throw await problemOf(response);
    const session = this.store((await response.json()) as SessionBody);
    this.emit("signed-in");
    return session;
  }

  /** Revoke the session at the gateway (best effort) and forget it here in every case. */
  async logout(): Promise<void> {
    const session = this.current;
    this.forget();
    this.emit("signed-out");
    if (session === null) return;
    try {
      await this.doFetch(this.base + "/api/v1/auth/logout", {
        method: "POST",
        headers: { Authorization: `Bearer ${session.token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: session.refreshToken }),
      });
    } catch {
      // the gateway is unreachable: the tokens are forgotten here and expire there
    }
  }

  /** A usable access token (refreshed first when close to expiry), or null when the session is gone. */
  async accessToken(): Promise<string | null> {
    const session = this.current;
    if (session === null) return null;
    if (session.expiresAt - this.now() > REFRESH_MARGIN_MS) return session.token;
    return (await this.refresh()) ? (this.current?.token ?? null) : null;
  }

  /** Rotate the refresh token; concurrent callers share one rotation (a reused refresh token revokes all). */
  refresh(): Promise<boolean> {
    if (this.refreshing === null) {
      this.refreshing = this.rotate().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  private async rotate(): Promise<boolean> {
    const session = this.current;
    if (session === null) return false;
    let response: Response;
    try {
      response = await this.doFetch(this.base + "/api/v1/auth/refresh", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ refresh_token: session.refreshToken }),
      });
    } catch {
      return false; // unreachable: keep the session, the caller retries later
    }
    if (response.status === 401 || response.status === 400) {
      this.expire();
      return false;
    }
    if (!response.ok) return false;
    this.store((await response.json()) as SessionBody);
    this.emit("refreshed");
    return true;
  }

  expire(): void {
    if (this.current === null) return;
    this.forget();
    this.emit("expired");
  }

  /** JSON from the gateway; throws ApiError (problem+json) for any non-2xx answer. */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let response = await this.send(method, path, body);
    if (response.status === 401 && this.current !== null) {
      if (await this.refresh()) response = await this.send(method, path, body);
      if (response.status === 401) this.expire();
    }
    if (!response.ok) throw await problemOf(response);
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  private async send(method: string, path: string, body: unknown): Promise<Response> {
    const token = await this.accessToken();
    const headers: Record<string, string> = { Accept: "application/json" };
    if (token !== null) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return this.doFetch(this.base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  }

  private store(body: SessionBody): Session {
    const session: Session = {
      token: body.token,
      refreshToken: body.refresh_token,
      expiresAt: this.now() + body.expires_in * 1000,
      user: body.user,
    };
    this.current = session;
    this.storage?.setItem(STORAGE_KEY, JSON.stringify(session));
    return session;
  }

  private forget(): void {
    this.current = null;
    this.storage?.removeItem(STORAGE_KEY);
  }

  private load(): Session | null {
    const raw = this.storage?.getItem(STORAGE_KEY);
    if (!raw) return null;
    try {
      const parsed = JSON.parse(raw) as Partial<Session>;
      if (typeof parsed.token === "string" && typeof parsed.refreshToken === "string" && parsed.user) {
        return parsed as Session;
      }
    } catch {
      // corrupt entry: treat as signed out
    }
    this.storage?.removeItem(STORAGE_KEY);
    return null;
  }

  private emit(event: SessionEvent): void {
    for (const listener of this.listeners) listener(event, this.current);
  }
}
