import { useMemo, useState } from "react";
import { api, call } from "../api/client";
import { STATUS_CLASSES, totals, usageSeries, type Granularity, type UsageFilter, type UsageSeries } from "../api/usage";
import { ErrorBanner, Loading } from "../components/feedback";
import { UsageChart } from "../components/UsageChart";
import { formatBytes, formatCount, formatLatency, formatTime, zoneName, type Zone } from "../format";
import { useLoad } from "../hooks";
import { useSession } from "../session";

const RANGES = [
  { id: "1h", label: "Last hour", hours: 1, granularity: "minute" },
  { id: "24h", label: "Last 24 hours", hours: 24, granularity: "hour" },
  { id: "7d", label: "Last 7 days", hours: 24 * 7, granularity: "hour" },
  { id: "30d", label: "Last 30 days", hours: 24 * 30, granularity: "day" },
] as const;
type RangeId = (typeof RANGES)[number]["id"];

/** Most buckets the API returns per granularity. */
const MAX_BUCKETS: Record<Granularity, number> = { minute: 1440, hour: 744, day: 400 };
const BUCKET_HOURS: Record<Granularity, number> = { minute: 1 / 60, hour: 1, day: 24 };
/** Breakdowns by key or route ask once per item; beyond this, the filter is the way. */
const BREAKDOWN_LIMIT = 20;

type Breakdown = "status" | "key" | "route";
const BREAKDOWN_LABEL: Record<Breakdown, string> = { status: "Status class", key: "API key", route: "Route" };

export function UsagePage({ tenantId }: { tenantId: string }) {
  const { zone } = useSession();
  const [rangeId, setRangeId] = useState<RangeId>("24h");
  const [granularity, setGranularity] = useState<Granularity>("hour");
  const [keyId, setKeyId] = useState("");
  const [routeId, setRouteId] = useState("");
  const [statusClass, setStatusClass] = useState("");
  const [breakdown, setBreakdown] = useState<Breakdown>("status");
  const [anchor, setAnchor] = useState(() => Date.now());

  const range = RANGES.find((r) => r.id === rangeId) ?? RANGES[1];
  const tooMany = range.hours / BUCKET_HOURS[granularity] > MAX_BUCKETS[granularity];
  const filter: UsageFilter = useMemo(
    () => ({ granularity, from: new Date(anchor - range.hours * 3600_000), to: new Date(anchor), keyId, routeId, statusClass }),
    [granularity, anchor, range.hours, keyId, routeId, statusClass],
  );

  const keys = useLoad(
    () => call(() => api.GET("/api/v1/tenants/{tenant_id}/api-keys", { params: { path: { tenant_id: tenantId }, query: { limit: 100 } } })),
    [tenantId],
  );
  const routes = useLoad(
    () => call(() => api.GET("/api/v1/tenants/{tenant_id}/routes", { params: { path: { tenant_id: tenantId }, query: { limit: 100 } } })),
    [tenantId],
  );
  const series = useLoad(async () => (tooMany ? undefined : usageSeries(tenantId, filter)), [tenantId, filter, tooMany]);

  const breakdownRows = useLoad(async () => {
    if (tooMany) return [];
    if (breakdown === "status") {
      const parts = await Promise.all(STATUS_CLASSES.map((c) => usageSeries(tenantId, { ...filter, statusClass: c })));
      return STATUS_CLASSES.map((c, i) => ({ id: c, label: c, requests: parts[i] ? totals(parts[i]).requests : 0 }));
    }
    if (breakdown === "key") {
      const items = (keys.data?.items ?? []).slice(0, BREAKDOWN_LIMIT);
      const parts = await Promise.all(items.map((k) => usageSeries(tenantId, { ...filter, keyId: k.id })));
      return items.map((k, i) => ({ id: k.id, label: `${k.name || "Unnamed"} (${k.display_prefix})`, requests: parts[i] ? totals(parts[i]).requests : 0 }));
    }
    const items = (routes.data?.items ?? []).slice(0, BREAKDOWN_LIMIT);
    const parts = await Promise.all(items.map((r) => usageSeries(tenantId, { ...filter, routeId: r.id })));
    return items.map((r, i) => ({ id: r.id, label: `${r.host ?? "*"}${r.path_prefix}`, requests: parts[i] ? totals(parts[i]).requests : 0 }));
  }, [tenantId, filter, breakdown, keys.data, routes.data, tooMany]);

  const chart = useMemo(() => {
    const data = series.data;
    if (data === undefined) return undefined;
    return {
      times: data.buckets.map((b) => Date.parse(b.start) / 1000),
      series: [
        { label: "Requests", color: "#4f46e5", values: data.buckets.map((b) => b.requests) },
        { label: "Billable", color: "#0e9384", values: data.buckets.map((b) => b.billable) },
      ],
    };
  }, [series.data]);

  const breakdownTotal = (breakdownRows.data ?? []).reduce((n, r) => n + r.requests, 0);

  return (
    <>
      <form
        className="toolbar"
        aria-label="Usage filters"
        onSubmit={(e) => {
          e.preventDefault();
          setAnchor(Date.now());
        }}
      >
        <label className="field-inline">
          <span>Range</span>
          <select
            value={rangeId}
            onChange={(e) => {
              const next = RANGES.find((r) => r.id === e.target.value) ?? RANGES[1];
              setRangeId(next.id);
              setGranularity(next.granularity);
              setAnchor(Date.now());
            }}
          >
            {RANGES.map((r) => (
              <option key={r.id} value={r.id}>
                {r.label}
              </option>
            ))}
          </select>
        </label>
        <label className="field-inline">
          <span>Granularity</span>
          <select value={granularity} onChange={(e) => setGranularity(e.target.value as Granularity)}>
            <option value="minute">Minute</option>
            <option value="hour">Hour</option>
            <option value="day">Day</option>
          </select>
        </label>
        <label className="field-inline">
          <span>API key</span>
          <select value={keyId} onChange={(e) => setKeyId(e.target.value)}>
            <option value="">All keys</option>
            {(keys.data?.items ?? []).map((k) => (
              <option key={k.id} value={k.id}>
                {k.name || k.display_prefix}
              </option>
            ))}
          </select>
        </label>
        <label className="field-inline">
          <span>Route</span>
          <select value={routeId} onChange={(e) => setRouteId(e.target.value)}>
            <option value="">All routes</option>
            {(routes.data?.items ?? []).map((r) => (
              <option key={r.id} value={r.id}>{`${r.host ?? "*"}${r.path_prefix}`}</option>
            ))}
          </select>
        </label>
        <label className="field-inline">
          <span>Status</span>
          <select value={statusClass} onChange={(e) => setStatusClass(e.target.value)}>
            <option value="">All statuses</option>
            {STATUS_CLASSES.map((c) => (
              <option key={c} value={c}>
                {c}
              </option>
            ))}
          </select>
        </label>
        <div className="toolbar-actions">
          <button type="submit" className="button">
            Refresh
          </button>
          <button type="button" className="button" disabled={series.data === undefined} onClick={() => series.data && downloadCsv(series.data, zone)}>
            Export CSV
          </button>
        </div>
      </form>
      <ErrorBanner error={keys.error ?? routes.error} />
      {tooMany ? (
        <div className="banner banner-warning" role="status">
          {range.label} by {granularity} is more than the {formatCount(MAX_BUCKETS[granularity])} buckets one query may return: choose a coarser granularity.
        </div>
      ) : null}
      <ErrorBanner error={series.error} />

      <section className="panel" aria-labelledby="usage-chart-title">
        <h2 id="usage-chart-title">
          Requests per {granularity} <span className="muted">({zoneName(zone)})</span>
        </h2>
        {chart !== undefined ? (
          <UsageChart times={chart.times} series={chart.series} zone={zone} label={`Requests and billable requests per ${granularity}`} />
        ) : series.loading ? (
          <Loading />
        ) : null}
        {series.data !== undefined ? <SeriesTable series={series.data} zone={zone} /> : null}
      </section>

      <section className="panel" aria-labelledby="breakdown-title">
        <div className="panel-head">
          <h2 id="breakdown-title">Breakdown</h2>
          <div className="segmented" role="group" aria-label="Break down by">
            {(["status", "key", "route"] as const).map((b) => (
              <button key={b} type="button" className={breakdown === b ? "segment segment-on" : "segment"} aria-pressed={breakdown === b} onClick={() => setBreakdown(b)}>
                {BREAKDOWN_LABEL[b]}
              </button>
            ))}
          </div>
        </div>
        <ErrorBanner error={breakdownRows.error} />
        {breakdownRows.data === undefined ? (
          <Loading />
        ) : breakdownRows.data.length === 0 ? (
          <p className="muted">Nothing to break down.</p>
        ) : (
          <table className="table" data-testid="breakdown">
            <caption className="visually-hidden">Requests by {BREAKDOWN_LABEL[breakdown]}</caption>
            <thead>
              <tr>
                <th scope="col">{BREAKDOWN_LABEL[breakdown]}</th>
                <th scope="col" className="num">
                  Requests
                </th>
                <th scope="col" className="share-col">
                  Share
                </th>
              </tr>
            </thead>
            <tbody>
              {breakdownRows.data.map((row) => {
                const share = breakdownTotal > 0 ? row.requests / breakdownTotal : 0;
                return (
                  <tr key={row.id}>
                    <th scope="row">{row.label}</th>
                    <td className="num">{formatCount(row.requests)}</td>
                    <td className="share-col">
                      <span className="share" aria-hidden="true">
                        <span className="share-bar" style={{ width: `${share * 100}%` }} />
                      </span>
                      <span className="share-text">{Math.round(share * 100)}%</span>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
      </section>
    </>
  );
}

function SeriesTable({ series, zone }: { series: UsageSeries; zone: Zone }) {
  const sum = totals(series);
  const style = series.granularity === "day" ? "date" : "datetime";
  return (
    <div className="table-scroll" tabIndex={0} role="region" aria-label="Usage numbers">
      <table className="table" data-testid="usage-table">
        <caption className="visually-hidden">Usage per {series.granularity}, the numbers of the chart</caption>
        <thead>
          <tr>
            <th scope="col">Time ({zoneName(zone)})</th>
            <th scope="col" className="num">
              Requests
            </th>
            <th scope="col" className="num">
              Billable
            </th>
            <th scope="col" className="num">
              Request bytes
            </th>
            <th scope="col" className="num">
              Response bytes
            </th>
            <th scope="col" className="num">
              Mean latency
            </th>
            <th scope="col" className="num">
              p95 latency (estimate)
            </th>
          </tr>
        </thead>
        <tbody>
          {[...series.buckets].reverse().map((b) => (
            <tr key={b.start}>
              <th scope="row">{formatTime(b.start, zone, style)}</th>
              <td className="num">{formatCount(b.requests)}</td>
              <td className="num">{formatCount(b.billable)}</td>
              <td className="num">{formatBytes(b.request_bytes)}</td>
              <td className="num">{formatBytes(b.response_bytes)}</td>
              <td className="num">{formatLatency(b.average_latency_us)}</td>
              <td className="num">{formatLatency(b.p95_latency_us)}</td>
            </tr>
          ))}
        </tbody>
        <tfoot>
          <tr>
            <th scope="row">Total</th>
            <td className="num" data-testid="usage-total">
              {formatCount(sum.requests)}
            </td>
            <td className="num">{formatCount(sum.billable)}</td>
            <td className="num">{formatBytes(sum.requestBytes)}</td>
            <td className="num">{formatBytes(sum.responseBytes)}</td>
            <td className="num">{formatLatency(sum.meanLatencyUs)}</td>
            <td className="num">{formatLatency(series.p95_latency_us)}</td>
          </tr>
        </tfoot>
      </table>
    </div>
  );
}

function downloadCsv(series: UsageSeries, zone: Zone): void {
  const header = ["start_utc", `start_${zone}`, "requests", "billable", "request_bytes", "response_bytes", "average_latency_us", "p95_latency_us"];
  const rows = series.buckets.map((b) => [b.start, formatTime(b.start, zone), b.requests, b.billable, b.request_bytes, b.response_bytes, b.average_latency_us ?? "", b.p95_latency_us ?? ""]);
  const csv = [header, ...rows].map((row) => row.map((cell) => csvCell(String(cell))).join(",")).join("\r\n") + "\r\n";
  const url = URL.createObjectURL(new Blob([csv], { type: "text/csv;charset=utf-8" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = `usage-${series.granularity}-${series.from.slice(0, 10)}.csv`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function csvCell(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}
