import { useMemo } from "react";
import { api, call } from "../api/client";
import { upcomingInvoice, type Upcoming } from "../api/upcoming";
import { startOfToday, totals, usageSeries } from "../api/usage";
import { ErrorBanner, Loading } from "../components/feedback";
import { QuotaMeter } from "../components/Meter";
import { UsageChart } from "../components/UsageChart";
import { formatCount, formatLatency, formatMoney, formatPercent, formatPeriod, formatTime } from "../format";
import { useLoad } from "../hooks";
import { useSession } from "../session";

export function OverviewPage({ tenantId }: { tenantId: string }) {
  const { zone } = useSession();
  const today = useLoad(async () => {
    const from = startOfToday(zone === "utc");
    const to = new Date();
    const filter = { granularity: "hour" as const, from, to };
    const [all, clientErrors, serverErrors] = await Promise.all([
      usageSeries(tenantId, filter),
      usageSeries(tenantId, { ...filter, statusClass: "4xx" }),
      usageSeries(tenantId, { ...filter, statusClass: "5xx" }),
    ]);
    return { all, clientErrors: totals(clientErrors), serverErrors: totals(serverErrors) };
  }, [tenantId, zone]);
  const period = useLoad(() => call(() => api.GET("/api/v1/tenants/{tenant_id}/usage/current", { params: { path: { tenant_id: tenantId } } })), [tenantId]);
  const upcoming = useLoad(() => upcomingInvoice(tenantId), [tenantId]);

  const sum = today.data ? totals(today.data.all) : undefined;
  const chart = useMemo(() => {
    if (today.data === undefined) return undefined;
    const buckets = today.data.all.buckets;
    return {
      times: buckets.map((b) => Date.parse(b.start) / 1000),
      series: [{ label: "Requests", color: "#4f46e5", values: buckets.map((b) => b.requests) }],
    };
  }, [today.data]);

  return (
    <>
      <section aria-labelledby="today-title">
        <h2 id="today-title" className="section-title">
          Today
        </h2>
        <ErrorBanner error={today.error} />
        <div className="cards">
          <Stat label="Requests today" value={sum ? formatCount(sum.requests) : "…"} testId="stat-requests" />
          <Stat
            label="Error rate (5xx)"
            value={sum && today.data ? (sum.requests > 0 ? formatPercent(today.data.serverErrors.requests / sum.requests) : "—") : "…"}
            hint={sum && today.data ? `${formatCount(today.data.clientErrors.requests)} client errors (4xx)` : undefined}
            testId="stat-error-rate"
          />
          <Stat
            label="p95 latency"
            value={today.data ? formatLatency(today.data.all.p95_latency_us) : "…"}
            hint={today.data && sum ? p95Hint(today.data.all.p95_latency_us, today.data.all.p95_latency_below_us, sum.meanLatencyUs) : undefined}
            testId="stat-latency"
          />
          <Stat label="Billable today" value={sum ? formatCount(sum.billable) : "…"} testId="stat-billable" />
        </div>
        {chart !== undefined ? <UsageChart times={chart.times} series={chart.series} zone={zone} height={200} label="Requests per hour today" /> : today.loading ? <Loading /> : null}
      </section>

      <div className="grid-2">
        <section className="panel" aria-labelledby="quota-title">
          <h2 id="quota-title">This month</h2>
          <ErrorBanner error={period.error} />
          {period.data === undefined ? (
            period.loading ? <Loading /> : null
          ) : (
            <>
              <p className="muted">
                {formatPeriod(period.data.period_start, period.data.period_end)} ·{" "}
                {period.data.plan ? `Plan ${period.data.plan.name}` : "No subscription"}
              </p>
              {period.data.quota ? (
                <>
                  <QuotaMeter used={period.data.billable_requests} included={period.data.quota.included_requests} label="Monthly quota used" />
                  <p className="muted">
                    {period.data.quota.cap === "hard" ? "Hard cap: requests beyond the quota are refused." : "Soft cap: requests beyond the quota are billed as overage."}{" "}
                    {formatCount(period.data.quota.remaining)} left
                    {period.data.quota.overage > 0 ? `, ${formatCount(period.data.quota.overage)} over` : ""}.
                  </p>
                </>
              ) : (
                <p>
                  <strong data-testid="quota-used">{formatCount(period.data.billable_requests)}</strong> billable requests; the plan has no quota.
                </p>
              )}
            </>
          )}
        </section>

        <section className="panel" aria-labelledby="bill-title">
          <h2 id="bill-title">Projected bill</h2>
          <ErrorBanner error={upcoming.error} />
          {upcoming.data === undefined ? (
            upcoming.loading ? <Loading /> : null
          ) : "unavailable" in upcoming.data ? (
            <p className="muted" data-testid="projected-unavailable">
              {upcoming.data.unavailable}
            </p>
          ) : (
            <ProjectedBill bill={upcoming.data} />
          )}
        </section>
      </div>
    </>
  );
}

function ProjectedBill({ bill }: { bill: Upcoming }) {
  const { zone } = useSession();
  return (
    <>
      <p className="big-number" data-testid="projected-total">
        {formatMoney(bill.total_minor, bill.currency)}
      </p>
      <p className="muted">
        The invoice this month would produce if it closed now, rated like the monthly run; computed {formatTime(bill.computed_at, zone, "time")}.
      </p>
      {bill.lines.length > 0 ? (
        <table className="table table-compact" data-testid="projected-lines">
          <caption className="visually-hidden">Projected invoice lines</caption>
          <thead>
            <tr>
              <th scope="col">Line</th>
              <th scope="col" className="num">
                Quantity
              </th>
              <th scope="col" className="num">
                Amount
              </th>
            </tr>
          </thead>
          <tbody>
            {bill.lines.map((line, i) => (
              <tr key={i}>
                <th scope="row">{line.description}</th>
                <td className="num">{formatCount(line.quantity)}</td>
                <td className="num">{formatMoney(line.amount_minor, bill.currency)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </>
  );
}

/**
 * The p95 is interpolated inside a histogram bucket: say what it is certainly not above, unless
 * that reads the same as the estimate (it can be the bucket's edge itself).
 */
function p95Hint(p95Us: number | null | undefined, belowUs: number | null | undefined, meanUs: number | undefined): string {
  const bound =
    belowUs === null || belowUs === undefined || formatLatency(belowUs) === formatLatency(p95Us)
      ? ""
      : `estimate, at most ${formatLatency(belowUs)} · `;
  return `${bound}mean ${formatLatency(meanUs)}`;
}

function Stat({ label, value, hint, testId }: { label: string; value: string; hint?: string | undefined; testId: string }) {
  return (
    <div className="card">
      <p className="card-label">{label}</p>
      <p className="card-value" data-testid={testId}>
        {value}
      </p>
      {hint !== undefined ? (
        <p className="card-hint" data-testid={`${testId}-hint`}>
          {hint}
        </p>
      ) : null}
    </div>
  );
}
