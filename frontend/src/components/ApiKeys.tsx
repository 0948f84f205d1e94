import { type FormEvent, useCallback, useEffect, useState } from "react";
import { ApiError, type ApiClient } from "../lib/api";
import type { ApiKey } from "../lib/types";
import { ConfirmDialog } from "./ConfirmDialog";

function errorText(error: unknown): string {
  return error instanceof ApiError ? error.detail : "The gateway could not be reached.";
}

export function ApiKeys({ client }: { client: ApiClient }) {
  const [keys, setKeys] = useState<ApiKey[] | null>(null);
  const [name, setName] = useState("");
  const [created, setCreated] = useState<{ name: string; key: string } | null>(null);
  const [copied, setCopied] = useState(false);
  const [revoking, setRevoking] = useState<ApiKey | null>(null);
  const [message, setMessage] = useState<{ text: string; error: boolean } | null>(null);

  const load = useCallback(async () => {
    try {
      setKeys((await client.request<{ data: ApiKey[] }>("GET", "/api/v1/keys")).data);
    } catch (error) {
      setMessage({ text: errorText(error), error: true });
    }
  }, [client]);

  useEffect(() => void load(), [load]);

  async function create(event: FormEvent) {
    event.preventDefault();
    setMessage(null);
    setCopied(false);
    try {
      const answer = await client.request<ApiKey & { key: string }>("POST", "/api/v1/keys", { name: name.trim() });
      setCreated({ name: answer.name, key: answer.key });
      setName("");
      await load();
    } catch (error) {
      setMessage({ text: errorText(error), error: true });
    }
  }

  async function revoke(key: ApiKey) {
    setRevoking(null);
    try {
      await client.request("DELETE", `/api/v1/keys/${key.id}`);
      setMessage({ text: `Key “${key.name}” revoked.`, error: false });
      await load();
    } catch (error) {
      setMessage({ text: errorText(error), error: true });
    }
  }

  async function copy(text: string) {
    try {
      await navigator.clipboard.writeText(text);
      setCopied(true);
    } catch {
      setMessage({ text: "Copying was refused by the browser: select the key and copy it by hand.", error: true });
    }
  }

  return (
    <section className="card" aria-labelledby="keys-title">
      <h2 id="keys-title">My API keys</h2>
      <form onSubmit={(event) => void create(event)} className="inline-form">
        <label htmlFor="key-name">New key name</label>
        <div className="row">
          <input id="key-name" required maxLength={100} value={name} onChange={(event) => setName(event.target.value)} />
          <button type="submit">Create key</button>
        </div>
      </form>
      {created && (
        <div className="secret" role="status">
          <p>
            <strong>Key “{created.name}” created.</strong> Copy it now: it is shown only once.
          </p>
          <div className="row">
            <input aria-label="New API key" className="mono" readOnly value={created.key} onFocus={(e) => e.target.select()} />
            <button type="button" onClick={() => void copy(created.key)}>
              {copied ? "Copied" : "Copy"}
            </button>
            <button type="button" onClick={() => setCreated(null)}>
              Done
            </button>
          </div>
        </div>
      )}
      {message && (
        <p className={message.error ? "error" : "success"} role={message.error ? "alert" : "status"}>
          {message.text}
        </p>
      )}
      {keys !== null && keys.length === 0 && <p className="muted">No active keys.</p>}
      {keys !== null && keys.length > 0 && (
        <ul className="key-list" aria-label="Active API keys">
          {keys.map((key) => (
            <li key={key.id} data-key-id={key.id}>
              <span>
                <strong>{key.name}</strong> <span className="mono muted">{key.prefix}…</span>
                <span className="sub">
                  created {new Date(key.created_at).toLocaleString()}
                  {key.last_used_at ? `, last used ${new Date(key.last_used_at).toLocaleString()}` : ", never used"}
                </span>
              </span>
              <button type="button" className="danger" onClick={() => setRevoking(key)} aria-label={`Revoke key ${key.name}`}>
                Revoke
              </button>
            </li>
          ))}
        </ul>
      )}
      <ConfirmDialog
        open={revoking !== null}
        title="Revoke this API key?"
        confirmLabel="Revoke key"
        onConfirm={() => revoking && void revoke(revoking)}
        onCancel={() => setRevoking(null)}
      >
        <p>Requests using “{revoking?.name}” are refused from now on.</p>
      </ConfirmDialog>
    </section>
  );
}
