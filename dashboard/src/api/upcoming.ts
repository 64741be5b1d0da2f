// The projected bill: the invoice the current period would produce if it closed now
// (GET /tenants/{id}/invoices/upcoming, rated by the same code as the monthly job).
import { api, call, ApiError, type Schemas } from "./client";

export type Upcoming = Schemas["UpcomingInvoice"];

/** The projection, or the reason there is none (404: no subscription this period). */
export async function upcomingInvoice(tenantId: string): Promise<Upcoming | { unavailable: string }> {
  try {
    return await call(() => api.GET("/api/v1/tenants/{tenant_id}/invoices/upcoming", { params: { path: { tenant_id: tenantId } } }));
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return { unavailable: "No projection: the tenant has no subscription this period." };
    throw e;
  }
}
