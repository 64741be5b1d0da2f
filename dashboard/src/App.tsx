import { useEffect, useRef } from "react";
import { api, call } from "./api/client";
import { ErrorBanner, Loading } from "./components/feedback";
import { useLoad } from "./hooks";
import { AuditLogPage, PlansPage, SubscriptionsPage, TenantsPage } from "./pages/admin";
import { InvoiceDetailPage, InvoicesPage } from "./pages/Invoices";
import { KeysPage } from "./pages/Keys";
import { LoginPage } from "./pages/Login";
import { OverviewPage } from "./pages/Overview";
import { UsagePage } from "./pages/Usage";
import { ROUTES, matchRoute } from "./routes";
import { Link, navigate, useLocation } from "./router";
import { useSession } from "./session";

const ROLE_LABEL = { platform_admin: "Platform admin", tenant_admin: "Tenant admin", tenant_viewer: "Tenant viewer" } as const;

export function App() {
  const session = useSession();
  const { pathname } = useLocation();
  const match = matchRoute(pathname);

  useEffect(() => {
    if (!session.restoring && session.me === undefined && pathname !== "/login") navigate("/login", { replace: true });
    if (!session.restoring && session.me !== undefined && pathname === "/login") navigate("/", { replace: true });
  }, [session.restoring, session.me, pathname]);

  useEffect(() => {
    document.title = match ? `${match.route.title} · Tollgate` : "Not found · Tollgate";
  }, [match]);

  if (session.restoring) {
    return (
      <main className="login" id="main">
        <Loading label="Restoring your session…" />
      </main>
    );
  }
  if (session.me === undefined) return <LoginPage />;
  return <Shell />;
}

function Shell() {
  const session = useSession();
  const { pathname } = useLocation();
  const match = matchRoute(pathname);
  const heading = useRef<HTMLHeadingElement>(null);
  const me = session.me;

  // Move focus to the new page's heading, so keyboard and screen-reader users know it changed.
  useEffect(() => {
    heading.current?.focus();
  }, [pathname]);

  if (me === undefined) return null;
  const adminOnly = match?.route.section === "admin";
  const needsTenant = match !== undefined && (match.route.section === "tenant" || match.route.path === "/invoices/:id");

  let page: React.ReactNode;
  if (match === undefined) page = <p>This page does not exist.</p>;
  else if (adminOnly && !session.isPlatformAdmin) page = <p>Only platform admins can see this page.</p>;
  else if (needsTenant && session.tenantId === undefined) page = <TenantPicker prompt />;
  else {
    const tenantId = session.tenantId ?? "";
    switch (match.route.path) {
      case "/":
        page = <OverviewPage tenantId={tenantId} />;
        break;
      case "/usage":
        page = <UsagePage tenantId={tenantId} />;
        break;
      case "/keys":
        page = <KeysPage tenantId={tenantId} />;
        break;
      case "/invoices":
        page = <InvoicesPage tenantId={tenantId} />;
        break;
      case "/invoices/:id":
        page = <InvoiceDetailPage tenantId={tenantId} invoiceId={match.params.id ?? ""} />;
        break;
      case "/admin/tenants":
        page = <TenantsPage />;
        break;
      case "/admin/plans":
        page = <PlansPage />;
        break;
      case "/admin/subscriptions":
        page = <SubscriptionsPage />;
        break;
      case "/admin/audit-log":
        page = <AuditLogPage />;
        break;
      default:
        page = null;
    }
  }

  const navFor = (section: "tenant" | "admin") =>
    ROUTES.filter((r) => r.section === section).map((r) => {
      const active = r.path === "/" ? pathname === "/" : pathname.startsWith(r.path);
      return (
        <li key={r.path}>
          <Link href={r.path} className={active ? "nav-link nav-active" : "nav-link"} aria-current={active ? "page" : undefined}>
            {r.title}
          </Link>
        </li>
      );
    });

  return (
    <div className="shell">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <div className="brand">
          <span className="brand-mark" aria-hidden="true">
            T
          </span>
          Tollgate
        </div>
        <div className="topbar-tools">
          {session.isPlatformAdmin ? <TenantPicker /> : null}
          <div className="segmented" role="group" aria-label="Show times in">
            <button type="button" className={session.zone === "local" ? "segment segment-on" : "segment"} aria-pressed={session.zone === "local"} onClick={() => session.setZone("local")}>
              Local time
            </button>
            <button type="button" className={session.zone === "utc" ? "segment segment-on" : "segment"} aria-pressed={session.zone === "utc"} onClick={() => session.setZone("utc")}>
              UTC
            </button>
          </div>
          <span className="whoami">
            <span className="whoami-email">{me.email}</span>
            <span className="whoami-role" data-testid="role">
              {ROLE_LABEL[me.role]}
            </span>
          </span>
          <button type="button" className="button button-small" onClick={() => void session.signOut()}>
            Sign out
          </button>
        </div>
      </header>
      <nav className="sidebar" aria-label="Main">
        <p className="nav-heading">Tenant</p>
        <ul>{navFor("tenant")}</ul>
        {session.isPlatformAdmin ? (
          <>
            <p className="nav-heading">Platform</p>
            <ul>{navFor("admin")}</ul>
          </>
        ) : null}
      </nav>
      <main className="content" id="main">
        <h1 ref={heading} tabIndex={-1} className="page-title">
          {match?.route.title ?? "Not found"}
        </h1>
        {page}
      </main>
    </div>
  );
}

/** Platform admins have no tenant of their own: they pick the one the tenant pages show. */
function TenantPicker({ prompt = false }: { prompt?: boolean }) {
  const session = useSession();
  const tenants = useLoad(() => call(() => api.GET("/api/v1/tenants", { params: { query: { limit: 100 } } })), []);
  const items = tenants.data?.items ?? [];
  useEffect(() => {
    const first = items[0];
    if (session.tenantId === undefined && first !== undefined) session.setTenantId(first.id);
  }, [items, session]);
  if (tenants.error) return <ErrorBanner error={tenants.error} />;
  if (prompt) return items.length === 0 && !tenants.loading ? <p>There are no tenants yet: create one under Tenants.</p> : <Loading />;
  return (
    <label className="field-inline tenant-picker">
      <span>Tenant</span>
      <select value={session.tenantId ?? ""} onChange={(e) => session.setTenantId(e.target.value)} data-testid="tenant-picker">
        {items.map((t) => (
          <option key={t.id} value={t.id}>
            {t.slug}
            {t.status === "suspended" ? " (suspended)" : ""}
          </option>
        ))}
      </select>
    </label>
  );
}
