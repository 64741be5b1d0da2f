//! An invoice as the delivery steps see it: finalized, with its lines and the billed tenant's
//! delivery details. Loaded in one read so every step of a run works on the same data.

use time::OffsetDateTime;
use tokio_postgres::GenericClient;
use tollgate_core::invoice_document::{InvoiceDocument, InvoiceDocumentLine};
use tollgate_core::{Currency, Money};
use uuid::Uuid;

use super::error::DeliveryError;
use crate::store::{LineRecord, load_lines};

/// How Stripe collects an invoice (the tenant's setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectionMethod {
    /// Charge the customer's saved payment method.
    ChargeAutomatically,
    /// Email the invoice; the customer pays it.
    SendInvoice,
}

impl CollectionMethod {
    /// Stripe's name, also the database value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChargeAutomatically => "charge_automatically",
            Self::SendInvoice => "send_invoice",
        }
    }

    /// Parses the database value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "charge_automatically" => Some(Self::ChargeAutomatically),
            "send_invoice" => Some(Self::SendInvoice),
            _ => None,
        }
    }
}

/// The billed tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingTenant {
    /// Tenant id.
    pub id: Uuid,
    /// Slug.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Where invoices are emailed; `None`: no email can be sent.
    pub billing_email: Option<String>,
    /// How Stripe collects.
    pub collection_method: CollectionMethod,
}

/// A finalized invoice ready for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryInvoice {
    /// Invoice id.
    pub id: Uuid,
    /// The billed tenant.
    pub tenant: BillingTenant,
    /// Start of the period (inclusive).
    pub period_start: OffsetDateTime,
    /// End of the period (exclusive).
    pub period_end: OffsetDateTime,
    /// Currency of every amount.
    pub currency: Currency,
    /// `TG-YYYY-NNNNNN`, assigned at finalization.
    pub number: String,
    /// Status (`finalized`, `paid`, …).
    pub status: String,
    /// When it was finalized.
    pub finalized_at: Option<OffsetDateTime>,
    /// Sum of the lines.
    pub subtotal_minor: i64,
    /// Amount due.
    pub total_minor: i64,
    /// Lines by position.
    pub lines: Vec<LineRecord>,
}

impl DeliveryInvoice {
    /// The same document the control API renders as HTML.
    pub fn document(&self) -> InvoiceDocument {
        let money = |minor| Money::from_minor(minor, self.currency);
        InvoiceDocument {
            invoice_id: self.id,
            number: Some(self.number.clone()),
            tenant_name: self.tenant.name.clone(),
            tenant_slug: self.tenant.slug.clone(),
            period_start: self.period_start,
            period_end: self.period_end,
            status: self.status.clone(),
            finalized_at: self.finalized_at,
            subtotal: money(self.subtotal_minor),
            total: money(self.total_minor),
            lines: self
                .lines
                .iter()
                .map(|line| InvoiceDocumentLine {
                    kind: line.kind.clone(),
                    description: line.description.clone(),
                    quantity: line.quantity,
                    unit_price: trim_decimal(&line.unit_price),
                    amount: money(line.amount_minor),
                })
                .collect(),
        }
    }

    /// Loads an invoice with its lines and tenant; `None` if there is no such invoice.
    pub async fn load(
        client: &impl GenericClient,
        invoice_id: Uuid,
    ) -> Result<Option<Self>, DeliveryError> {
        let Some(row) = client
            .query_opt(
                "SELECT i.id, i.period_start, i.period_end, i.currency::text, i.status, \
                        i.finalized_at, i.subtotal_minor, i.total_minor, \
                        t.id, t.slug, t.name, t.billing_email, t.collection_method, i.number \
                   FROM invoices i JOIN tenants t ON t.id = i.tenant_id WHERE i.id = $1",
                &[&invoice_id],
            )
            .await?
        else {
            return Ok(None);
        };
        let invalid = |message: String| DeliveryError::InvalidInvoice {
            invoice_id,
            message,
        };
        let currency_code: String = row.get(3);
        let currency = Currency::from_code(&currency_code).map_err(|e| invalid(e.to_string()))?;
        let method: String = row.get(12);
        let number: Option<String> = row.get(13);
        let number = number.ok_or_else(|| invalid("not finalized: it has no number".into()))?;
        let collection_method = CollectionMethod::parse(&method)
            .ok_or_else(|| invalid(format!("unknown collection method {method:?}")))?;
        let lines = load_lines(client, invoice_id).await?;
        Ok(Some(Self {
            id: row.get(0),
            period_start: row.get(1),
            period_end: row.get(2),
            currency,
            number,
            status: row.get(4),
            finalized_at: row.get(5),
            subtotal_minor: row.get(6),
            total_minor: row.get(7),
            tenant: BillingTenant {
                id: row.get(8),
                slug: row.get(9),
                name: row.get(10),
                billing_email: row.get(11),
                collection_method,
            },
            lines,
        }))
    }
}

/// `numeric` text without the scale's trailing zeros, as the control API shows it.
fn trim_decimal(text: &str) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn the_document_carries_the_tenant_and_decimals_are_trimmed() {
        let invoice = DeliveryInvoice {
            id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_dead_beef),
            tenant: BillingTenant {
                id: Uuid::nil(),
                slug: "acme".into(),
                name: "Acme".into(),
                billing_email: None,
                collection_method: CollectionMethod::SendInvoice,
            },
            period_start: datetime!(2026-10-01 00:00 UTC),
            period_end: datetime!(2026-11-01 00:00 UTC),
            currency: Currency::USD,
            number: "TG-2026-000001".into(),
            status: "finalized".into(),
            finalized_at: None,
            subtotal_minor: 0,
            total_minor: 0,
            lines: vec![],
        };
        assert_eq!(invoice.document().tenant_slug, "acme");
        assert_eq!(trim_decimal("0.000400000000"), "0.0004");
        assert_eq!(
            CollectionMethod::parse("send_invoice"),
            Some(CollectionMethod::SendInvoice)
        );
    }
}
