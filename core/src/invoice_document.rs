//! The invoice document: a self-contained HTML page rendered from an invoice and its lines.
//!
//! Rendering is a pure function of its input, so the control API's download and the monthly
//! invoicing job (which stores the document in S3) produce the same bytes for the same
//! invoice. Every piece of text is HTML-escaped; amounts are formatted from integer minor
//! units with the currency's exponent, never through floats.

use std::fmt::Write as _;

use time::OffsetDateTime;
use time::macros::format_description;
use uuid::Uuid;

use crate::money::Money;

/// An invoice as its document shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceDocument {
    /// Invoice id.
    pub invoice_id: Uuid,
    /// The invoice number (`TG-2026-000042`), once finalized.
    pub number: Option<String>,
    /// The billed tenant's display name.
    pub tenant_name: String,
    /// The billed tenant's slug.
    pub tenant_slug: String,
    /// Start of the billed period (inclusive).
    pub period_start: OffsetDateTime,
    /// End of the billed period (exclusive).
    pub period_end: OffsetDateTime,
    /// `finalized`, `paid`, `payment_failed`, `uncollectible` or `void`.
    pub status: String,
    /// When the invoice was finalized.
    pub finalized_at: Option<OffsetDateTime>,
    /// Sum of the lines.
    pub subtotal: Money,
    /// Amount due.
    pub total: Money,
    /// Lines, in the order they are printed.
    pub lines: Vec<InvoiceDocumentLine>,
}

/// One line of an invoice document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceDocumentLine {
    /// `base_fee`, `usage`, `overage` or `correction`.
    pub kind: String,
    /// What is charged.
    pub description: String,
    /// Units.
    pub quantity: i64,
    /// Exact decimal unit price in major units, as rated (display only).
    pub unit_price: String,
    /// Amount of the line; authoritative.
    pub amount: Money,
}

/// Escapes `text` for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Formats an amount in major units with thousands separators and exactly the currency's
/// number of decimals: `1,234.50` (USD), `1,200` (JPY), `-0.005` (KWD).
pub fn format_amount(money: Money) -> String {
    let exponent = money.currency().exponent();
    // i128 holds |i64::MIN|.
    let minor = i128::from(money.amount_minor());
    let digits = minor.unsigned_abs().to_string();
    let exponent = usize::try_from(exponent).unwrap_or(0);
    let padded = format!("{digits:0>width$}", width = exponent + 1);
    let (integer, fraction) = padded.split_at(padded.len() - exponent);
    let mut grouped = String::with_capacity(integer.len() + integer.len() / 3);
    for (i, digit) in integer.chars().enumerate() {
        if i > 0 && (integer.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let sign = if minor < 0 { "-" } else { "" };
    if fraction.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{fraction}")
    }
}

/// `format_amount` followed by the currency code: `1,234.50 USD`.
pub fn format_money(money: Money) -> String {
    format!("{} {}", format_amount(money), money.currency())
}

/// The `YYYY-MM` of the month an invoice period starts in (UTC).
pub fn period_label(period_start: OffsetDateTime) -> String {
    let start = period_start.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}", start.year(), u8::from(start.month()))
}

fn format_instant(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// Renders the document. Deterministic: the same input always gives the same bytes.
pub fn render_invoice_html(invoice: &InvoiceDocument) -> String {
    let e = escape_html;
    let mut html = String::with_capacity(4096);
    let title = format!(
        "Invoice {} for {}",
        period_label(invoice.period_start),
        invoice.tenant_name
    );
    // write! into a String cannot fail.
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>\n\
         body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}\n\
         table{{border-collapse:collapse;width:100%}}\n\
         th,td{{border-bottom:1px solid #ddd;padding:.4rem;text-align:left}}\n\
         td.num,th.num{{text-align:right;font-variant-numeric:tabular-nums}}\n\
         tfoot td{{font-weight:bold;border-bottom:none}}\n\
         </style>\n</head>\n<body>\n<h1>Invoice{heading}</h1>\n<dl>\n\
         <dt>Invoice</dt><dd>{id}</dd>\n\
         <dt>Customer</dt><dd>{tenant} ({slug})</dd>\n\
         <dt>Period</dt><dd>{start} to {end} (exclusive)</dd>\n\
         <dt>Status</dt><dd>{status}</dd>\n",
        title = e(&title),
        heading = invoice
            .number
            .as_deref()
            .map(|n| format!(" {}", e(n)))
            .unwrap_or_default(),
        id = e(&invoice.invoice_id.to_string()),
        tenant = e(&invoice.tenant_name),
        slug = e(&invoice.tenant_slug),
        start = e(&format_instant(invoice.period_start)),
        end = e(&format_instant(invoice.period_end)),
        status = e(&invoice.status),
    );
    if let Some(at) = invoice.finalized_at {
        let _ = writeln!(
            html,
            "<dt>Finalized</dt><dd>{}</dd>",
            e(&format_instant(at))
        );
    }
    let _ = write!(
        html,
        "</dl>\n<table>\n<thead><tr><th>#</th><th>Description</th><th>Kind</th>\
         <th class=\"num\">Quantity</th><th class=\"num\">Unit price</th>\
         <th class=\"num\">Amount</th></tr></thead>\n<tbody>\n"
    );
    for (n, line) in invoice.lines.iter().enumerate() {
        let _ = writeln!(
            html,
            "<tr><td>{n}</td><td>{description}</td><td>{kind}</td>\
             <td class=\"num\">{quantity}</td><td class=\"num\">{unit_price}</td>\
             <td class=\"num\">{amount}</td></tr>",
            n = n + 1,
            description = e(&line.description),
            kind = e(&line.kind),
            quantity = line.quantity,
            unit_price = e(&line.unit_price),
            amount = e(&format_money(line.amount)),
        );
    }
    let _ = write!(
        html,
        "</tbody>\n<tfoot>\n\
         <tr><td colspan=\"5\">Subtotal</td><td class=\"num\">{subtotal}</td></tr>\n\
         <tr><td colspan=\"5\">Total</td><td class=\"num\">{total}</td></tr>\n\
         </tfoot>\n</table>\n</body>\n</html>\n",
        subtotal = e(&format_money(invoice.subtotal)),
        total = e(&format_money(invoice.total)),
    );
    html
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::money::Currency;

    fn usd(minor: i64) -> Money {
        Money::from_minor(minor, Currency::USD)
    }

    fn document() -> InvoiceDocument {
        InvoiceDocument {
            invoice_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
            number: Some("TG-2026-000042".into()),
            tenant_name: "Acme & Sons".into(),
            tenant_slug: "acme".into(),
            period_start: datetime!(2026-10-01 00:00 UTC),
            period_end: datetime!(2026-11-01 00:00 UTC),
            status: "finalized".into(),
            finalized_at: Some(datetime!(2026-11-01 00:05 UTC)),
            subtotal: usd(123_456_789),
            total: usd(123_456_789),
            lines: vec![
                InvoiceDocumentLine {
                    kind: "base_fee".into(),
                    description: "Growth plan <script>alert(\"x\")</script>".into(),
                    quantity: 1,
                    unit_price: "49.00".into(),
                    amount: usd(4900),
                },
                InvoiceDocumentLine {
                    kind: "usage".into(),
                    description: "Requests 'over' quota".into(),
                    quantity: 2_500_000,
                    unit_price: "0.0004".into(),
                    amount: usd(123_451_889),
                },
            ],
        }
    }

    #[test]
    fn amounts_use_the_currency_exponent_and_group_thousands() {
        assert_eq!(format_amount(usd(0)), "0.00");
        assert_eq!(format_amount(usd(5)), "0.05");
        assert_eq!(format_amount(usd(-105)), "-1.05");
        assert_eq!(format_amount(usd(100_000)), "1,000.00");
        assert_eq!(format_amount(usd(123_456_789)), "1,234,567.89");
        assert_eq!(format_money(usd(4900)), "49.00 USD");
        let jpy = Money::from_minor(1_234_567, Currency::JPY);
        assert_eq!(format_money(jpy), "1,234,567 JPY");
        let kwd = Currency::from_code("KWD").unwrap();
        assert_eq!(format_amount(Money::from_minor(-5, kwd)), "-0.005");
        assert_eq!(
            format_amount(Money::from_minor(1_000_001, kwd)),
            "1,000.001"
        );
        assert_eq!(
            format_amount(Money::from_minor(i64::MIN, Currency::USD)),
            "-92,233,720,368,547,758.08"
        );
    }

    #[test]
    fn text_is_escaped_and_never_injected() {
        let html = render_invoice_html(&document());
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("Growth plan &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
        assert!(html.contains("Acme &amp; Sons (acme)"));
        assert!(html.contains("Requests &#39;over&#39; quota"));
        assert_eq!(escape_html("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn the_document_shows_exact_amounts_and_is_deterministic() {
        let html = render_invoice_html(&document());
        assert!(html.contains(
            "<tr><td colspan=\"5\">Total</td><td class=\"num\">1,234,567.89 USD</td></tr>"
        ));
        assert!(html.contains("<td class=\"num\">49.00 USD</td>"));
        assert!(html.contains("<td class=\"num\">2500000</td><td class=\"num\">0.0004</td>"));
        assert!(html.contains("2026-10-01 00:00 UTC to 2026-11-01 00:00 UTC"));
        assert!(html.contains("<title>Invoice 2026-10 for Acme &amp; Sons</title>"));
        assert!(html.contains("<h1>Invoice TG-2026-000042</h1>"));
        assert_eq!(html, render_invoice_html(&document()));
        assert_eq!(period_label(document().period_start), "2026-10");
    }
}
