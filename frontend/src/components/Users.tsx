import { useCallback, useEffect, useState } from "react";
import { ApiError, type ApiClient } from "../lib/api";
import type { User } from "../lib/types";

const TIERS = ["free", "pro", "enterprise"];

export function Users({ client }: { client: ApiClient }) {
  const [users, setUsers] = useState<User[]>([]);
  const [next, setNext] = useState<number | null>(0);
  const [draft, setDraft] = useState<Record<number, string>>({});
  const [message, setMessage] = useState<{ text: string; error: boolean } | null>(null);

  const loadPage = useCallback(
    async (after: number) => {
      try {
        const page = await client.request<{ data: User[]; next_after: number | null }>(
          "GET",
          `/api/v1/admin/users?after=${after}&limit=50`,
        );
        setUsers((current) => (after === 0 ? page.data : [...current, ...page.data]));
        setNext(page.next_after);
      } catch (error) {
        setMessage({ text: error instanceof ApiError ? error.detail : String(error), error: true });
      }
    },
    [client],
  );

  useEffect(() => void loadPage(0), [loadPage]);

  async function save(user: User) {
    const tier = draft[user.id];
    if (tier === undefined || tier === user.tier) return;
    setMessage(null);
    try {
      const updated = await client.request<User>("PATCH", `/api/v1/admin/users/${user.id}`, { tier });
      setUsers((current) => current.map((u) => (u.id === updated.id ? updated : u)));
      setMessage({ text: `${updated.email} is now on the ${updated.tier} tier (from the next token refresh).`, error: false });
    } catch (error) {
      setMessage({ text: error instanceof ApiError ? error.detail : String(error), error: true });
    }
  }

  return (
    <section className="card" aria-labelledby="users-title">
      <h2 id="users-title">Users and tiers</h2>
      <div className="table-scroll" tabIndex={0} aria-label="Users table (scrolls sideways)">
        <table>
          <thead>
            <tr>
              <th scope="col">Email</th>
              <th scope="col">Role</th>
              <th scope="col">Tier</th>
              <th scope="col">
                <span className="visually-hidden">Save</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {users.map((user) => (
              <tr key={user.id} data-user={user.email}>
                <th scope="row">
                  {user.email}
                  {user.disabled && <span className="sub">disabled</span>}
                </th>
                <td>{user.role}</td>
                <td>
                  <select
                    aria-label={`Tier of ${user.email}`}
                    value={draft[user.id] ?? user.tier}
                    onChange={(event) => setDraft({ ...draft, [user.id]: event.target.value })}
                  >
                    {TIERS.map((tier) => (
                      <option key={tier} value={tier}>
                        {tier}
                      </option>
                    ))}
                  </select>
                </td>
                <td>
                  <button
                    type="button"
                    onClick={() => void save(user)}
                    disabled={(draft[user.id] ?? user.tier) === user.tier}
                    aria-label={`Save tier of ${user.email}`}
                  >
                    Save
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {next !== null && next !== 0 && (
        <button type="button" onClick={() => void loadPage(next)}>
          Load more
        </button>
      )}
      {message && (
        <p className={message.error ? "error" : "success"} role={message.error ? "alert" : "status"}>
          {message.text}
        </p>
      )}
    </section>
  );
}
