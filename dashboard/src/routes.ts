// The app's pages. The control API serves index.html at exactly these paths
// (control-api/src/dashboard/mod.rs, CLIENT_ROUTES; a Rust test compares the two lists).

export type Section = "tenant" | "admin" | "none";

export interface RouteDef {
  path: string;
  title: string;
  section: Section;
}

export const ROUTES: readonly RouteDef[] = [
  { path: "/", title: "Overview", section: "tenant" },
  { path: "/login", title: "Sign in", section: "none" },
  { path: "/usage", title: "Usage", section: "tenant" },
  { path: "/keys", title: "API keys", section: "tenant" },
  { path: "/invoices", title: "Invoices", section: "tenant" },
  { path: "/invoices/:id", title: "Invoice", section: "none" },
  { path: "/admin/tenants", title: "Tenants", section: "admin" },
  { path: "/admin/plans", title: "Plans", section: "admin" },
  { path: "/admin/subscriptions", title: "Subscriptions", section: "admin" },
  { path: "/admin/audit-log", title: "Audit log", section: "admin" },
];

/** The route matching `pathname` and its parameters, or undefined. */
export function matchRoute(pathname: string): { route: RouteDef; params: Record<string, string> } | undefined {
  const parts = pathname.replace(/\/+$/, "").split("/");
  for (const route of ROUTES) {
    const pattern = route.path.replace(/\/+$/, "").split("/");
    if (pattern.length !== parts.length) continue;
    const params: Record<string, string> = {};
    const ok = pattern.every((segment, i) => {
      const part = parts[i] ?? "";
      if (segment.startsWith(":")) {
        params[segment.slice(1)] = decodeURIComponent(part);
        return part.length > 0;
      }
      return segment === part;
    });
    if (ok) return { route, params };
  }
  return undefined;
}
