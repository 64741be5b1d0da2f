// The projected bill: GET /tenants/{id}/invoices/upcoming (the invoicing issue). Until that
// endpoint is in the OpenAPI document, it is read untyped and a 404 means "not available".
import { authorization, toApiError } from "./client";

export interface UpcomingLine {
  description: string;
  quantity: number;
  amount_minor: number;
}

export interface Upcoming {
  currency: string;
  total_minor: number;
  period_start?: string;
  period_end?: string;
  lines?: UpcomingLine[];
}

export async function upcomingInvoice(tenantId: string): Promise<Upcoming | "unavailable"> {
  const response = await fetch(`/api/v1/tenants/${encodeURIComponent(tenantId)}/invoices/upcoming`, {
    headers: { Accept: "application/json", ...authorization() },
    credentials: "same-origin",
  });
  if (response.status === 404) return "unavailable";
  const body: unknown = await response.json().catch(() => undefined);
  if (!response.ok) throw toApiError(response, body);
  const value = body as Partial<Upcoming> | undefined;
  if (value === undefined || typeof value.total_minor !== "number" || typeof value.currency !== "string") return "unavailable";
  return value as Upcoming;
}
