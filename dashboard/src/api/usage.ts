// Usage queries the pages share.
import { api, call, type Schemas } from "./client";

export type Granularity = Schemas["Granularity"];
export type UsageSeries = Schemas["UsageSeries"];

export interface UsageFilter {
  granularity: Granularity;
  from: Date;
  to: Date;
  keyId?: string | undefined;
  routeId?: string | undefined;
  statusClass?: string | undefined;
}

export function usageSeries(tenantId: string, filter: UsageFilter): Promise<UsageSeries> {
  return call(() =>
    api.GET("/api/v1/tenants/{tenant_id}/usage", {
      params: {
        path: { tenant_id: tenantId },
        query: {
          granularity: filter.granularity,
          from: filter.from.toISOString(),
          to: filter.to.toISOString(),
          ...(filter.keyId ? { key_id: filter.keyId } : {}),
          ...(filter.routeId ? { route_id: filter.routeId } : {}),
          ...(filter.statusClass ? { status_class: filter.statusClass } : {}),
        },
      },
    }),
  );
}

export interface Totals {
  requests: number;
  billable: number;
  requestBytes: number;
  responseBytes: number;
  /** Request-weighted mean latency in µs; undefined without requests. */
  meanLatencyUs: number | undefined;
}

export function totals(series: UsageSeries): Totals {
  let requests = 0;
  let billable = 0;
  let requestBytes = 0;
  let responseBytes = 0;
  let latencyWeighted = 0;
  for (const b of series.buckets) {
    requests += b.requests;
    billable += b.billable;
    requestBytes += b.request_bytes;
    responseBytes += b.response_bytes;
    if (b.average_latency_us !== null && b.average_latency_us !== undefined) latencyWeighted += b.average_latency_us * b.requests;
  }
  return { requests, billable, requestBytes, responseBytes, meanLatencyUs: requests > 0 ? Math.round(latencyWeighted / requests) : undefined };
}

/** Start of today in the chosen zone. */
export function startOfToday(utc: boolean): Date {
  const now = new Date();
  return utc ? new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate())) : new Date(now.getFullYear(), now.getMonth(), now.getDate());
}

export const STATUS_CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"] as const;
