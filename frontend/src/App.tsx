import { useEffect, useState } from "react";
import { Dashboard } from "./components/Dashboard";
import { Login } from "./components/Login";
import type { ApiClient } from "./lib/api";
import type { Session, User } from "./lib/types";

export function App({ client }: { client: ApiClient }) {
  const [session, setSession] = useState<Session | null>(client.session);
  const [notice, setNotice] = useState<string | null>(null);

  useEffect(
    () =>
      client.subscribe((event, next) => {
        setSession(next);
        if (event === "expired") setNotice("Your session expired. Sign in again.");
        else if (event === "signed-out") setNotice("You are signed out.");
        else setNotice(null);
      }),
    [client],
  );

  // A session restored from sessionStorage is checked once: the account may have changed or been disabled.
  useEffect(() => {
    if (client.session === null) return;
    client
      .request<User>("GET", "/api/v1/me")
      .then((user) => setSession((current) => (current ? { ...current, user } : current)))
      .catch(() => undefined); // a 401 has already expired the session; anything else keeps it
  }, [client]);

  if (session === null) return <Login client={client} notice={notice} />;
  if (session.user.role !== "admin") return <AdminsOnly user={session.user} client={client} />;
  return <Dashboard client={client} user={session.user} />;
}

function AdminsOnly({ user, client }: { user: User; client: ApiClient }) {
  return (
    <main className="centered" aria-labelledby="forbidden-title">
      <section className="card narrow">
        <h1 id="forbidden-title">Admins only</h1>
        <p>
          You are signed in as <strong>{user.email}</strong>, which is not an administrator account. The operations
          console is available to admins only.
        </p>
        <button type="button" className="primary" onClick={() => void client.logout()}>
          Sign out
        </button>
      </section>
    </main>
  );
}
