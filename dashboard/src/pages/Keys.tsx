import { useState, type FormEvent } from "react";
import { api, call, type ApiError, type Schemas } from "../api/client";
import { ConfirmDialog } from "../components/Dialog";
import { Badge, ErrorBanner, Loading, Notice, statusTone } from "../components/feedback";
import { formatTime } from "../format";
import { asApiError, useLoad } from "../hooks";
import { useSession } from "../session";

type ApiKey = Schemas["ApiKeyView"];

const OVERLAPS = [
  { seconds: 0, label: "None: the old key stops now" },
  { seconds: 300, label: "5 minutes" },
  { seconds: 3600, label: "1 hour" },
  { seconds: 86400, label: "1 day" },
  { seconds: 604800, label: "7 days" },
];

export function KeysPage({ tenantId }: { tenantId: string }) {
  const { zone, canWrite } = useSession();
  const keys = useLoad(
    () => call(() => api.GET("/api/v1/tenants/{tenant_id}/api-keys", { params: { path: { tenant_id: tenantId }, query: { limit: 100 } } })),
    [tenantId],
  );
  const [secret, setSecret] = useState<{ secret: string; name: string; previous?: string | undefined }>();
  const [actionError, setActionError] = useState<ApiError>();
  const [revoking, setRevoking] = useState<ApiKey>();
  const [rotating, setRotating] = useState<ApiKey>();
  const [overlap, setOverlap] = useState(3600);
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<string>();

  const run = async (action: () => Promise<void>) => {
    setBusy(true);
    setActionError(undefined);
    setDone(undefined);
    try {
      await action();
      keys.reload();
    } catch (e) {
      setActionError(asApiError(e));
    } finally {
      setBusy(false);
    }
  };

  const revoke = (key: ApiKey) =>
    run(async () => {
      await call(() => api.POST("/api/v1/tenants/{tenant_id}/api-keys/{key_id}/revoke", { params: { path: { tenant_id: tenantId, key_id: key.id } } }));
      setRevoking(undefined);
      setDone(`Key ${key.display_prefix} is revoked; the gateway refuses it within a second.`);
    });

  const rotate = (key: ApiKey) =>
    run(async () => {
      const created = await call(() =>
        api.POST("/api/v1/tenants/{tenant_id}/api-keys/{key_id}/rotate", {
          params: { path: { tenant_id: tenantId, key_id: key.id } },
          body: { overlap_seconds: overlap },
        }),
      );
      setRotating(undefined);
      setSecret({
        secret: created.secret,
        name: created.key.name,
        previous: created.previous ? `The old key ${created.previous.display_prefix} works until ${formatTime(created.previous.expires_at, zone)}.` : undefined,
      });
    });

  return (
    <>
      {canWrite ? (
        <CreateKey
          tenantId={tenantId}
          onCreated={(created) => {
            setSecret({ secret: created.secret, name: created.key.name });
            keys.reload();
          }}
        />
      ) : (
        <Notice>You have read-only access to this tenant: keys can be created, rotated and revoked by a tenant admin.</Notice>
      )}
      {secret !== undefined ? <SecretPanel {...secret} onDismiss={() => setSecret(undefined)} /> : null}
      <ErrorBanner error={actionError} />
      {done !== undefined ? <Notice tone="success">{done}</Notice> : null}
      <section className="panel" aria-labelledby="keys-title">
        <h2 id="keys-title">API keys</h2>
        <ErrorBanner error={keys.error} />
        {keys.data === undefined ? (
          keys.loading ? <Loading /> : null
        ) : keys.data.items.length === 0 ? (
          <p className="muted">No keys yet.</p>
        ) : (
          <div className="table-scroll" tabIndex={0} role="region" aria-label="API keys table">
            <table className="table" data-testid="keys-table">
              <caption className="visually-hidden">API keys of this tenant</caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Prefix</th>
                  <th scope="col">Status</th>
                  <th scope="col">Scopes</th>
                  <th scope="col">Created</th>
                  <th scope="col">Last used</th>
                  <th scope="col">Expires</th>
                  {canWrite ? (
                    <th scope="col">
                      <span className="visually-hidden">Actions</span>
                    </th>
                  ) : null}
                </tr>
              </thead>
              <tbody>
                {keys.data.items.map((key) => (
                  <tr key={key.id} data-key-prefix={key.display_prefix}>
                    <th scope="row">{key.name || <span className="muted">Unnamed</span>}</th>
                    <td>
                      <code>{key.display_prefix}</code>
                    </td>
                    <td>
                      <Badge tone={statusTone(key.status)}>{key.status}</Badge>
                    </td>
                    <td>{key.scopes.length > 0 ? key.scopes.map((s) => <code key={s} className="scope">{s}</code>) : <span className="muted">any route</span>}</td>
                    <td>{formatTime(key.created_at, zone)}</td>
                    <td>{formatTime(key.last_used_at, zone)}</td>
                    <td>{formatTime(key.expires_at, zone)}</td>
                    {canWrite ? (
                      <td>
<div className="actions">
                        {key.status === "active" ? (
                          <>
                            <button type="button" className="button button-small" onClick={() => setRotating(key)} aria-label={`Rotate ${key.display_prefix}`}>
                              Rotate
                            </button>
                            <button type="button" className="button button-small button-danger-outline" onClick={() => setRevoking(key)} aria-label={`Revoke ${key.display_prefix}`}>
                              Revoke
                            </button>
                          </>
                        ) : null}
                        </div>
                      </td>
                    ) : null}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>

      <ConfirmDialog
        open={revoking !== undefined}
        title="Revoke this key?"
        confirmLabel="Revoke key"
        danger
        busy={busy}
        onConfirm={() => revoking && void revoke(revoking)}
        onCancel={() => setRevoking(undefined)}
      >
        <p>
          Requests with <code>{revoking?.display_prefix}</code> will be refused by the gateway within a second. This cannot be undone.
        </p>
        <ErrorBanner error={actionError} />
      </ConfirmDialog>

      <ConfirmDialog
        open={rotating !== undefined}
        title="Rotate this key?"
        confirmLabel="Rotate key"
        busy={busy}
        onConfirm={() => rotating && void rotate(rotating)}
        onCancel={() => setRotating(undefined)}
      >
        <p>
          A new key replaces <code>{rotating?.display_prefix}</code>. The old one keeps working for the overlap, so clients can switch without downtime.
        </p>
        <label className="field">
          <span>Overlap</span>
          <select value={overlap} onChange={(e) => setOverlap(Number(e.target.value))}>
            {OVERLAPS.map((o) => (
              <option key={o.seconds} value={o.seconds}>
                {o.label}
              </option>
            ))}
          </select>
        </label>
        <ErrorBanner error={actionError} />
      </ConfirmDialog>
    </>
  );
}

function CreateKey({ tenantId, onCreated }: { tenantId: string; onCreated: (created: Schemas["CreatedApiKey"]) => void }) {
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState("");
  const [error, setError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const list = scopes
        .split(/[\s,]+/)
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
      const created = await call(() =>
        api.POST("/api/v1/tenants/{tenant_id}/api-keys", {
          params: { path: { tenant_id: tenantId } },
          body: { name: name.trim() || null, scopes: list.length > 0 ? list : null },
        }),
      );
      setName("");
      setScopes("");
      onCreated(created);
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="panel form-row" onSubmit={submit} aria-labelledby="create-key-title">
      <h2 id="create-key-title">Create a key</h2>
      <div className="form-fields">
        <label className="field">
          <span>Name</span>
          <input name="name" maxLength={200} value={name} onChange={(e) => setName(e.target.value)} placeholder="e.g. Production backend" />
        </label>
        <label className="field">
          <span>
            Scopes <span className="muted">(optional, comma-separated)</span>
          </span>
          <input name="scopes" value={scopes} onChange={(e) => setScopes(e.target.value)} placeholder="e.g. read:orders" />
        </label>
        <button type="submit" className="button button-primary" disabled={busy}>
          {busy ? "Creating…" : "Create key"}
        </button>
      </div>
      <ErrorBanner error={error} />
    </form>
  );
}

function SecretPanel({ secret, name, previous, onDismiss }: { secret: string; name: string; previous?: string | undefined; onDismiss: () => void }) {
  const [copied, setCopied] = useState<"yes" | "failed">();
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(secret);
      setCopied("yes");
    } catch {
      setCopied("failed");
    }
  };
  return (
    <section className="panel panel-highlight" aria-labelledby="secret-title" data-testid="secret-panel">
      <h2 id="secret-title">Copy the secret of {name || "the new key"} now</h2>
      <p>It is shown only once; Tollgate stores only a hash of it.</p>
      {previous !== undefined ? <p>{previous}</p> : null}
      <div className="secret">
        <code data-testid="secret-value">{secret}</code>
        <button type="button" className="button button-primary" onClick={() => void copy()}>
          Copy
        </button>
      </div>
      <p aria-live="polite" className="muted">
        {copied === "yes" ? "Copied to the clipboard." : copied === "failed" ? "The browser refused the clipboard: select the secret and copy it." : ""}
      </p>
      <button type="button" className="button" onClick={onDismiss}>
        I have stored it
      </button>
    </section>
  );
}
