import { useState } from "react";
import { api, authorization, call, toApiError, type ApiError } from "../api/client";
import { Badge, ErrorBanner, Loading, statusTone } from "../components/feedback";
import { formatCount, formatMoney, formatPeriod, formatTime } from "../format";
import { asApiError, useLoad } from "../hooks";
import { Link } from "../router";
import { useSession } from "../session";

export function InvoicesPage({ tenantId }: { tenantId: string }) {
  const { zone } = useSession();
  const invoices = useLoad(
    () => call(() => api.GET("/api/v1/tenants/{tenant_id}/invoices", { params: { path: { tenant_id: tenantId }, query: { limit: 100 } } })),
    [tenantId],
  );
  return (
    <section className="panel" aria-labelledby="invoices-title">
      <h2 id="invoices-title">Invoices</h2>
      <ErrorBanner error={invoices.error} />
      {invoices.data === undefined ? (
        invoices.loading ? <Loading /> : null
      ) : invoices.data.items.length === 0 ? (
        <p className="muted">No invoices yet: the first is issued after the first calendar month.</p>
      ) : (
        <div className="table-scroll" tabIndex={0} role="region" aria-label="Invoices table">
          <table className="table" data-testid="invoices-table">
            <caption className="visually-hidden">Invoices, newest period first</caption>
            <thead>
              <tr>
                <th scope="col">Period</th>
                <th scope="col">Number</th>
                <th scope="col">Status</th>
                <th scope="col">Payment</th>
                <th scope="col" className="num">
                  Total
                </th>
                <th scope="col">Finalized</th>
              </tr>
            </thead>
            <tbody>
              {invoices.data.items.map((invoice) => (
                <tr key={invoice.id}>
                  <th scope="row">
                    <Link href={`/invoices/${invoice.id}`}>{periodLabel(invoice.period_start)}</Link>
                  </th>
                  <td>{invoice.number ? <code>{invoice.number}</code> : <span className="muted">—</span>}</td>
                  <td>
                    <Badge tone={statusTone(invoice.status)}>{invoice.status.replace("_", " ")}</Badge>
                  </td>
                  <td>{paymentLabel(invoice.status)}</td>
                  <td className="num">{formatMoney(invoice.total_minor, invoice.currency)}</td>
                  <td>{formatTime(invoice.finalized_at, zone)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

/** The billed month, named in UTC (periods are UTC calendar months). */
function periodLabel(start: string): string {
  return new Intl.DateTimeFormat(undefined, { month: "long", year: "numeric", timeZone: "UTC" }).format(new Date(start));
}

/** What the invoice's status says about payment. */
function paymentLabel(status: string): string {
  switch (status) {
    case "draft":
      return "Not issued";
    case "finalized":
      return "Due";
    case "paid":
      return "Paid";
    case "payment_failed":
      return "Payment failed";
    case "uncollectible":
      return "Uncollectible";
    case "void":
      return "Void";
    default:
      return status;
  }
}

export function InvoiceDetailPage({ tenantId, invoiceId }: { tenantId: string; invoiceId: string }) {
  const { zone } = useSession();
  const invoice = useLoad(
    () => call(() => api.GET("/api/v1/tenants/{tenant_id}/invoices/{invoice_id}", { params: { path: { tenant_id: tenantId, invoice_id: invoiceId } } })),
    [tenantId, invoiceId],
  );
  const [downloadError, setDownloadError] = useState<ApiError>();
  const [downloading, setDownloading] = useState(false);

  const download = async () => {
    setDownloading(true);
    setDownloadError(undefined);
    try {
      const url = `/api/v1/tenants/${encodeURIComponent(tenantId)}/invoices/${encodeURIComponent(invoiceId)}/document`;
      let response = await fetch(url, { headers: authorization() });
      if (response.status === 401) {
        // The same refresh-and-retry as every other call.
        await call(() => api.GET("/api/v1/me"));
        response = await fetch(url, { headers: authorization() });
      }
      if (!response.ok) throw toApiError(response, await response.json().catch(() => undefined));
      const blob = await response.blob();
      const href = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = href;
      a.download = `invoice-${invoice.data ? invoice.data.period_start.slice(0, 7) : invoiceId}.html`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 1000);
    } catch (e) {
      setDownloadError(asApiError(e));
    } finally {
      setDownloading(false);
    }
  };

  return (
    <>
      <p>
        <Link href="/invoices">← All invoices</Link>
      </p>
      <ErrorBanner error={invoice.error} />
      {invoice.data === undefined ? (
        invoice.loading ? <Loading /> : null
      ) : (
        <section className="panel" aria-labelledby="invoice-title">
          <div className="panel-head">
            <h2 id="invoice-title">
              Invoice for {periodLabel(invoice.data.period_start)} <Badge tone={statusTone(invoice.data.status)}>{invoice.data.status}</Badge>
            </h2>
            <button type="button" className="button button-primary" onClick={() => void download()} disabled={downloading}>
              {downloading ? "Downloading…" : "Download"}
            </button>
          </div>
          <ErrorBanner error={downloadError} title="The invoice could not be downloaded." />
          <dl className="facts">
            <div>
              <dt>Period</dt>
              <dd>{formatPeriod(invoice.data.period_start, invoice.data.period_end)}</dd>
            </div>
            <div>
              <dt>Number</dt>
              <dd>{invoice.data.number ?? "—"}</dd>
            </div>
            <div>
              <dt>Finalized</dt>
              <dd>{formatTime(invoice.data.finalized_at, zone)}</dd>
            </div>
            <div>
              <dt>Payment</dt>
              <dd>{paymentLabel(invoice.data.status)}</dd>
            </div>
            <div>
              <dt>Total</dt>
              <dd className="big-number" data-testid="invoice-total">
                {formatMoney(invoice.data.total_minor, invoice.data.currency)}
              </dd>
            </div>
          </dl>
          <div className="table-scroll" tabIndex={0} role="region" aria-label="Invoice lines">
            <table className="table" data-testid="invoice-lines">
              <caption className="visually-hidden">Invoice lines</caption>
              <thead>
                <tr>
                  <th scope="col">Description</th>
                  <th scope="col">Kind</th>
                  <th scope="col" className="num">
                    Quantity
                  </th>
                  <th scope="col" className="num">
                    Unit price
                  </th>
                  <th scope="col" className="num">
                    Amount
                  </th>
                </tr>
              </thead>
              <tbody>
                {invoice.data.lines.map((line) => (
                  <tr key={line.id}>
                    <th scope="row">{line.description}</th>
                    <td>{line.kind.replace("_", " ")}</td>
                    <td className="num">{formatCount(line.quantity)}</td>
                    <td className="num">
                      {line.unit_price} {invoice.data?.currency}
                    </td>
                    <td className="num">{formatMoney(line.amount_minor, invoice.data?.currency ?? "USD")}</td>
                  </tr>
                ))}
              </tbody>
              <tfoot>
                <tr>
                  <th scope="row" colSpan={4}>
                    Subtotal
                  </th>
                  <td className="num">{formatMoney(invoice.data.subtotal_minor, invoice.data.currency)}</td>
                </tr>
                <tr>
                  <th scope="row" colSpan={4}>
                    Total
                  </th>
                  <td className="num">
                    <strong>{formatMoney(invoice.data.total_minor, invoice.data.currency)}</strong>
                  </td>
                </tr>
              </tfoot>
            </table>
          </div>
        </section>
      )}
    </>
  );
}
