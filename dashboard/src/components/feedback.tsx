import type { ApiError } from "../api/client";

/** An API error, as the server explained it; nothing is swallowed. */
export function ErrorBanner({ error, title }: { error: ApiError | undefined; title?: string }) {
  if (error === undefined) return null;
  return (
    <div className="banner banner-error" role="alert">
      <strong>{title ?? explain(error)}</strong>
      <span>
        {error.message}
        {error.field !== undefined ? ` (field: ${error.field})` : ""}
      </span>
      <code className="banner-code">{error.status > 0 ? `${error.status} ${error.code}` : error.code}</code>
    </div>
  );
}

function explain(error: ApiError): string {
  switch (error.status) {
    case 403:
      return "You are not allowed to do this.";
    case 404:
      return "Not found.";
    case 409:
      return "Conflict.";
    case 422:
      return "Please check the form.";
    case 429:
      return "Too many requests.";
    case 0:
      return "The server could not be reached.";
    default:
      return error.status >= 500 ? "The server failed." : "The request was refused.";
  }
}

export function Notice({ children, tone = "info" }: { children: React.ReactNode; tone?: "info" | "success" | "warning" }) {
  return (
    <div className={`banner banner-${tone}`} role="status">
      {children}
    </div>
  );
}

export function Loading({ label = "Loading…" }: { label?: string }) {
  return (
    <p className="muted" aria-live="polite">
      {label}
    </p>
  );
}

export type Tone = "green" | "red" | "gray" | "amber" | "blue";

export function Badge({ tone, children }: { tone: Tone; children: React.ReactNode }) {
  return <span className={`badge badge-${tone}`}>{children}</span>;
}

export function statusTone(status: string): Tone {
  switch (status) {
    case "active":
    case "paid":
      return "green";
    case "revoked":
    case "suspended":
    case "payment_failed":
    case "uncollectible":
      return "red";
    case "void":
    case "expired":
    case "draft":
      return "gray";
    case "finalized":
    case "open":
      return "blue";
    default:
      return "amber";
  }
}
