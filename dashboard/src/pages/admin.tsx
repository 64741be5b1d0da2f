// Platform-admin pages: tenants, plans, subscriptions and the audit log.
import { useState, type FormEvent } from "react";
import { api, call, type ApiError, type Schemas } from "../api/client";
import { ConfirmDialog } from "../components/Dialog";
import { Badge, ErrorBanner, Loading, Notice, statusTone } from "../components/feedback";
import { formatCount, formatMoney, formatTime } from "../format";
import { asApiError, useLoad } from "../hooks";
import { useSession } from "../session";
import { CreatePlanForm } from "./PlanForm";

type Tenant = Schemas["Tenant"];

function listTenants() {
  return call(() => api.GET("/api/v1/tenants", { params: { query: { limit: 100 } } }));
}

export function TenantsPage() {
  const { zone } = useSession();
  const tenants = useLoad(listTenants, []);
  const [slug, setSlug] = useState("");
  const [name, setName] = useState("");
  const [error, setError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  const [confirm, setConfirm] = useState<{ tenant: Tenant; action: "suspend" | "reactivate" }>();
  const [done, setDone] = useState<string>();

  const create = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    setDone(undefined);
    try {
      const tenant = await call(() => api.POST("/api/v1/tenants", { body: { slug: slug.trim(), name: name.trim() } }));
      setSlug("");
      setName("");
      setDone(`Tenant ${tenant.slug} created.`);
      tenants.reload();
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
    }
  };

  const apply = async () => {
    if (confirm === undefined) return;
    setBusy(true);
    setError(undefined);
    try {
      const path = { params: { path: { tenant_id: confirm.tenant.id } } };
      if (confirm.action === "suspend") await call(() => api.POST("/api/v1/tenants/{tenant_id}/suspend", path));
      else await call(() => api.POST("/api/v1/tenants/{tenant_id}/reactivate", path));
      setDone(
        confirm.action === "suspend"
          ? `Tenant ${confirm.tenant.slug} is suspended: its keys are refused and its users cannot sign in.`
          : `Tenant ${confirm.tenant.slug} is active again.`,
      );
      setConfirm(undefined);
      tenants.reload();
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <>
      <form className="panel form-row" onSubmit={create} aria-labelledby="new-tenant-title">
        <h2 id="new-tenant-title">Create a tenant</h2>
        <div className="form-fields">
          <label className="field">
            <span>Slug</span>
            <input name="slug" required pattern="[a-z0-9][a-z0-9\-]{0,62}" value={slug} onChange={(e) => setSlug(e.target.value)} placeholder="acme" />
          </label>
          <label className="field">
            <span>Name</span>
            <input name="name" required maxLength={200} value={name} onChange={(e) => setName(e.target.value)} placeholder="Acme Corp." />
          </label>
          <button type="submit" className="button button-primary" disabled={busy}>
            Create tenant
          </button>
        </div>
      </form>
      {confirm === undefined ? <ErrorBanner error={error} /> : null}
      {done !== undefined ? <Notice tone="success">{done}</Notice> : null}
      <section className="panel" aria-labelledby="tenants-title">
        <h2 id="tenants-title">Tenants</h2>
        <ErrorBanner error={tenants.error} />
        {tenants.data === undefined ? (
          <Loading />
        ) : (
          <div className="table-scroll" tabIndex={0} role="region" aria-label="Tenants table">
            <table className="table" data-testid="tenants-table">
              <caption className="visually-hidden">Tenants</caption>
              <thead>
                <tr>
                  <th scope="col">Slug</th>
                  <th scope="col">Name</th>
                  <th scope="col">Status</th>
                  <th scope="col">Created</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {tenants.data.items.map((t) => (
                  <tr key={t.id} data-tenant-slug={t.slug}>
                    <th scope="row">
                      <code>{t.slug}</code>
                    </th>
                    <td>{t.name}</td>
                    <td>
                      <Badge tone={statusTone(t.status)}>{t.status}</Badge>
                    </td>
                    <td>{formatTime(t.created_at, zone)}</td>
                    <td>
<div className="actions">
                      {t.status === "active" ? (
                        <button type="button" className="button button-small button-danger-outline" onClick={() => setConfirm({ tenant: t, action: "suspend" })} aria-label={`Suspend ${t.slug}`}>
                          Suspend
                        </button>
                      ) : (
                        <button type="button" className="button button-small" onClick={() => setConfirm({ tenant: t, action: "reactivate" })} aria-label={`Reactivate ${t.slug}`}>
                          Reactivate
                        </button>
                      )}
                      </div>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
      <ConfirmDialog
        open={confirm !== undefined}
        title={confirm?.action === "suspend" ? `Suspend ${confirm.tenant.slug}?` : `Reactivate ${confirm?.tenant.slug ?? ""}?`}
        confirmLabel={confirm?.action === "suspend" ? "Suspend tenant" : "Reactivate tenant"}
        danger={confirm?.action === "suspend"}
        busy={busy}
        onConfirm={() => void apply()}
        onCancel={() => setConfirm(undefined)}
      >
        <p>
          {confirm?.action === "suspend"
            ? "The gateway refuses the tenant's API keys within a second, and its users cannot sign in until it is reactivated."
            : "The tenant's keys and users work again."}
        </p>
        <ErrorBanner error={error} />
      </ConfirmDialog>
    </>
  );
}

function pricingSummary(pricing: Schemas["Pricing"]): string {
  const base = formatMoney(pricing.base_fee_minor, pricing.currency) + " / month";
  const included = pricing.included_units ? `, ${formatCount(pricing.included_units)} included` : "";
  switch (pricing.model) {
    case "flat":
      return `${base} flat${included}`;
    case "package":
      return `${base}${included}, ${pricing.package_price} ${pricing.currency} per ${formatCount(pricing.package_size)}`;
    case "graduated":
    case "volume":
      return `${base}${included}, ${pricing.model}: ${pricing.tiers
        .map((t) => `${t.up_to === null || t.up_to === undefined ? "rest" : "≤" + formatCount(t.up_to)} @ ${t.unit_price}`)
        .join(", ")}`;
  }
}

export function PlansPage() {
  const { zone } = useSession();
  const plans = useLoad(() => call(() => api.GET("/api/v1/plans", { params: { query: { limit: 100 } } })), []);
  return (
    <>
    <CreatePlanForm onCreated={plans.reload} />
    <section className="panel" aria-labelledby="plans-title">
      <h2 id="plans-title">Plans</h2>
      <p className="muted">Pricing is immutable once a plan exists: create a new plan and switch subscriptions to it.</p>
      <ErrorBanner error={plans.error} />
      {plans.data === undefined ? (
        <Loading />
      ) : (
        <div className="table-scroll" tabIndex={0} role="region" aria-label="Plans table">
          <table className="table" data-testid="plans-table">
            <caption className="visually-hidden">Plans</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Rate</th>
                <th scope="col">Quota</th>
                <th scope="col">Pricing</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {plans.data.items.map((p) => (
                <tr key={p.id}>
                  <th scope="row">{p.name}</th>
                  <td>
                    {formatCount(p.rate.requests_per_second)}/s, burst {formatCount(p.rate.burst)}
                    {p.rate.strict ? " (strict)" : ""}
                  </td>
                  <td>{p.quota ? `${formatCount(p.quota.included_requests)} / month (${p.quota.cap})` : "Unlimited"}</td>
                  <td>{pricingSummary(p.pricing)}</td>
                  <td>{formatTime(p.created_at, zone)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
    </>
  );
}

export function SubscriptionsPage() {
  const { zone } = useSession();
  const tenants = useLoad(listTenants, []);
  const plans = useLoad(() => call(() => api.GET("/api/v1/plans", { params: { query: { limit: 100 } } })), []);
  const [tenantId, setTenantId] = useState("");
  const chosen = tenantId || tenants.data?.items[0]?.id || "";
  const history = useLoad(
    async () => (chosen ? call(() => api.GET("/api/v1/tenants/{tenant_id}/subscriptions", { params: { path: { tenant_id: chosen }, query: { limit: 100 } } })) : undefined),
    [chosen],
  );
  const [planId, setPlanId] = useState("");
  const [error, setError] = useState<ApiError>();
  const [done, setDone] = useState<string>();

  const switchPlan = async (event: FormEvent) => {
    event.preventDefault();
    setError(undefined);
    setDone(undefined);
    try {
      const target = planId || plans.data?.items[0]?.id;
      if (!chosen || !target) return;
      const created = await call(() => api.POST("/api/v1/tenants/{tenant_id}/subscription", { params: { path: { tenant_id: chosen } }, body: { plan_id: target } }));
      setDone(`Switched to ${created.plan_name} from ${formatTime(created.starts_at, zone)}.`);
      history.reload();
    } catch (e) {
      setError(asApiError(e));
    }
  };

  return (
    <>
      <form className="panel form-row" onSubmit={switchPlan} aria-labelledby="switch-title">
        <h2 id="switch-title">Switch a tenant's plan</h2>
        <div className="form-fields">
          <label className="field">
            <span>Tenant</span>
            <select value={chosen} onChange={(e) => setTenantId(e.target.value)}>
              {(tenants.data?.items ?? []).map((t) => (
                <option key={t.id} value={t.id}>
                  {t.slug}
                </option>
              ))}
            </select>
          </label>
          <label className="field">
            <span>Plan</span>
            <select value={planId || plans.data?.items[0]?.id || ""} onChange={(e) => setPlanId(e.target.value)}>
              {(plans.data?.items ?? []).map((p) => (
                <option key={p.id} value={p.id}>
                  {p.name}
                </option>
              ))}
            </select>
          </label>
          <button type="submit" className="button button-primary">
            Switch from now
          </button>
        </div>
        <ErrorBanner error={error ?? tenants.error ?? plans.error} />
        {done !== undefined ? <Notice tone="success">{done}</Notice> : null}
      </form>
      <section className="panel" aria-labelledby="history-title">
        <h2 id="history-title">Subscription history</h2>
        <ErrorBanner error={history.error} />
        {history.data === undefined ? (
          history.loading ? <Loading /> : <p className="muted">No tenant chosen.</p>
        ) : history.data.items.length === 0 ? (
          <p className="muted">This tenant has no subscription.</p>
        ) : (
          <div className="table-scroll" tabIndex={0} role="region" aria-label="Subscriptions table">
            <table className="table">
              <caption className="visually-hidden">Subscriptions, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Plan</th>
                  <th scope="col">Starts</th>
                  <th scope="col">Ends</th>
                  <th scope="col">In force</th>
                </tr>
              </thead>
              <tbody>
                {history.data.items.map((s) => (
                  <tr key={s.id}>
                    <th scope="row">{s.plan_name}</th>
                    <td>{formatTime(s.starts_at, zone)}</td>
                    <td>{s.ends_at ? formatTime(s.ends_at, zone) : "Open-ended"}</td>
                    <td>{s.current ? <Badge tone="green">current</Badge> : null}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </>
  );
}

export function AuditLogPage() {
  const { zone } = useSession();
  const [pages, setPages] = useState<Schemas["AuditLogEntry"][][]>([]);
  const [cursor, setCursor] = useState<string | undefined>();
  const [more, setMore] = useState<ApiError>();
  const first = useLoad(async () => {
    const page = await call(() => api.GET("/api/v1/audit-log", { params: { query: { limit: 50 } } }));
    setPages([page.items]);
    setCursor(page.next_cursor ?? undefined);
    return page;
  }, []);
  const loadMore = async () => {
    if (cursor === undefined) return;
    try {
      const page = await call(() => api.GET("/api/v1/audit-log", { params: { query: { limit: 50, cursor } } }));
      setPages((p) => [...p, page.items]);
      setCursor(page.next_cursor ?? undefined);
    } catch (e) {
      setMore(asApiError(e));
    }
  };
  const entries = pages.flat();
  return (
    <section className="panel" aria-labelledby="audit-title">
      <h2 id="audit-title">Audit log</h2>
      <ErrorBanner error={first.error ?? more} />
      {first.data === undefined ? (
        <Loading />
      ) : (
        <>
          <div className="table-scroll" tabIndex={0} role="region" aria-label="Audit log table">
            <table className="table" data-testid="audit-table">
              <caption className="visually-hidden">Audited writes, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">Who</th>
                  <th scope="col">Action</th>
                  <th scope="col">Resource</th>
                </tr>
              </thead>
              <tbody>
                {entries.map((e) => (
                  <tr key={e.id}>
                    <td>{formatTime(e.at, zone)}</td>
                    <td>{e.actor}</td>
                    <th scope="row">
                      <code>{e.action}</code>
                    </th>
                    <td>
                      {e.resource_type} <code className="muted">{e.resource_id ?? ""}</code>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {cursor !== undefined ? (
            <button type="button" className="button" onClick={() => void loadMore()}>
              Load older entries
            </button>
          ) : null}
        </>
      )}
    </section>
  );
}
