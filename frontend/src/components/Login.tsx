import { type FormEvent, useState } from "react";
import { ApiError, type ApiClient } from "../lib/api";

export function Login({ client, notice }: { client: ApiClient; notice: string | null }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await client.login(email.trim(), password);
    } catch (failure) {
      setError(failure instanceof ApiError ? failure.detail : "The gateway could not be reached.");
      setBusy(false);
    }
  }

  return (
    <main className="centered">
      <form className="card narrow" onSubmit={(event) => void submit(event)} aria-labelledby="login-title">
        <h1 id="login-title">scalable-api operations</h1>
        <p className="muted">Sign in with an administrator account.</p>
        {notice && (
          <p className="notice" role="status">
            {notice}
          </p>
        )}
        <label htmlFor="email">Email</label>
        <input
          id="email"
          type="email"
          autoComplete="username"
          required
          value={email}
          onChange={(event) => setEmail(event.target.value)}
        />
        <label htmlFor="password">Password</label>
        <input
          id="password"
          type="password"
          autoComplete="current-password"
          required
          value={password}
          onChange={(event) => setPassword(event.target.value)}
        />
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
