//! Delivery of finalized invoices: Stripe, email, document store, one resumable step each.
//!
//! Each step is an `invoice_steps` record of the invoicing store ([`crate::store`]): claimed
//! with a lease before it runs (a concurrent runner finds it busy, a crashed one's lease runs
//! out), marked succeeded with what it produced, or failed with the error, which the next run
//! retries. A rerun therefore does only what is missing. Steps are independent: an SMTP
//! outage does not keep the invoice out of Stripe or the store.

pub mod documents;
pub mod email;
mod error;
pub mod form;
mod http;
pub mod invoice;
pub mod pdf;
pub mod retry;
pub mod settings;
pub mod stripe;

use std::time::Duration;

use serde_json::json;
use tokio_postgres::Client;
use tollgate_core::invoice_document::{format_money, period_label, render_invoice_html};
use uuid::Uuid;

use crate::store::{self, StepStart};

pub use documents::{DocumentStore, S3Settings, document_key};
pub use email::{InvoiceEmail, InvoiceMailer, SmtpSettings};
pub use error::DeliveryError;
pub use invoice::{BillingTenant, CollectionMethod, DeliveryInvoice};
pub use stripe::{PushedInvoice, StripeClient, StripeSettings};

/// How long a claimed step is ours before another runner may take it over: longer than a
/// step with all its retries can take.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10 * 60);

/// One delivery step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeliveryStep {
    /// Customer, invoice, items, finalize (and send) in Stripe.
    Stripe,
    /// The email with the PDF attached.
    Email,
    /// PDF and HTML in the object store.
    Document,
}

impl DeliveryStep {
    /// Every step, in the order they run.
    pub const ALL: [Self; 3] = [Self::Stripe, Self::Email, Self::Document];

    /// The step's name in step records and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Stripe => "stripe",
            Self::Email => "email",
            Self::Document => "document",
        }
    }
}

/// The configured delivery channels; a channel left out is a step that is not run.
#[derive(Debug, Clone)]
pub struct Deliverer {
    /// Stripe, if configured.
    pub stripe: Option<StripeClient>,
    /// SMTP, if configured.
    pub mailer: Option<InvoiceMailer>,
    /// The object store, if configured.
    pub documents: Option<DocumentStore>,
    /// How long a claimed step stays ours.
    pub lease: Duration,
    /// How soon a failed step may be retried (zero: by the next run).
    pub retry_after: Duration,
}

impl Default for Deliverer {
    fn default() -> Self {
        Self {
            stripe: None,
            mailer: None,
            documents: None,
            lease: DEFAULT_LEASE,
            retry_after: Duration::ZERO,
        }
    }
}

/// What one delivery run did for one invoice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Steps run and succeeded now.
    pub done: Vec<DeliveryStep>,
    /// Steps that had succeeded before.
    pub already_done: Vec<DeliveryStep>,
    /// Steps that failed now, with the error recorded.
    pub failed: Vec<(DeliveryStep, String)>,
    /// Steps another runner holds (or whose retry is not due): left alone.
    pub busy: Vec<DeliveryStep>,
}

impl DeliveryReport {
    /// Every configured step has succeeded (now or before).
    pub fn complete(&self) -> bool {
        self.failed.is_empty() && self.busy.is_empty()
    }
}

/// What [`Deliverer::deliver_pending`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingSummary {
    /// Invoices looked at.
    pub invoices: usize,
    /// Steps that succeeded.
    pub steps_done: usize,
    /// Steps that failed (recorded; the next run retries them).
    pub steps_failed: usize,
}

impl Deliverer {
    /// The steps this deliverer runs.
    pub fn steps(&self) -> Vec<DeliveryStep> {
        DeliveryStep::ALL
            .into_iter()
            .filter(|step| match step {
                DeliveryStep::Stripe => self.stripe.is_some(),
                DeliveryStep::Email => self.mailer.is_some(),
                DeliveryStep::Document => self.documents.is_some(),
            })
            .collect()
    }

    /// Runs the steps of `invoice_id` that have not succeeded yet.
    pub async fn deliver(
        &self,
        client: &Client,
        invoice_id: Uuid,
    ) -> Result<DeliveryReport, DeliveryError> {
        let mut report = DeliveryReport::default();
        let invoice = DeliveryInvoice::load(client, invoice_id)
            .await?
            .ok_or_else(|| DeliveryError::InvalidInvoice {
                invoice_id,
                message: "no such invoice".into(),
            })?;
        if matches!(invoice.status.as_str(), "draft" | "void") {
            return Err(DeliveryError::InvalidInvoice {
                invoice_id,
                message: format!("a {} invoice is not delivered", invoice.status),
            });
        }
        for step in self.steps() {
            match store::start_step(client, invoice_id, step.name(), self.lease).await? {
                StepStart::AlreadySucceeded => {
                    report.already_done.push(step);
                    continue;
                }
                StepStart::Busy => {
                    report.busy.push(step);
                    continue;
                }
                StepStart::Started { .. } => {}
            }
            let outcome = match step {
                DeliveryStep::Stripe => self.run_stripe(client, &invoice).await,
                DeliveryStep::Email => self.run_email(&invoice).await,
                DeliveryStep::Document => self.run_document(client, &invoice).await,
            };
            match outcome {
                Ok(detail) => {
                    store::step_succeeded(client, invoice_id, step.name(), Some(&detail)).await?;
                    report.done.push(step);
                }
                Err(error) => {
                    let message = error.to_string();
                    tracing::warn!(%invoice_id, step = step.name(), error = %message, "Delivery step failed; the next run retries it.");
                    store::step_failed(client, invoice_id, step.name(), &message, self.retry_after)
                        .await?;
                    report.failed.push((step, message));
                }
            }
        }
        Ok(report)
    }

    /// Delivers every finalized invoice with a configured step still to do, at most `limit`
    /// invoices, oldest first. Progress is logged per invoice.
    pub async fn deliver_pending(
        &self,
        client: &Client,
        limit: i64,
    ) -> Result<PendingSummary, DeliveryError> {
        let mut pending: Vec<Uuid> = Vec::new();
        for step in self.steps() {
            for id in store::invoices_needing_step(
                client,
                step.name(),
                &[store::STEP_FINALIZE],
                self.lease,
                limit,
            )
            .await?
            {
                if !pending.contains(&id) {
                    pending.push(id);
                }
            }
        }
        pending.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let mut summary = PendingSummary {
            invoices: pending.len(),
            ..PendingSummary::default()
        };
        for (n, invoice_id) in pending.iter().copied().enumerate() {
            let report = self.deliver(client, invoice_id).await?;
            summary.steps_done += report.done.len();
            summary.steps_failed += report.failed.len();
            let done: Vec<&str> = report.done.iter().map(|s| s.name()).collect();
            let failed: Vec<&str> = report.failed.iter().map(|(s, _)| s.name()).collect();
            tracing::info!(n = n + 1, of = pending.len(), %invoice_id, ?done, ?failed, "Invoice delivered.");
        }
        Ok(summary)
    }

    async fn run_stripe(
        &self,
        client: &Client,
        invoice: &DeliveryInvoice,
    ) -> Result<serde_json::Value, DeliveryError> {
        let Some(stripe) = &self.stripe else {
            return Ok(json!({}));
        };
        let known = stored_customer(client, invoice.tenant.id).await?;
        let customer = stripe.ensure_customer(&invoice.tenant, known).await?;
        let customer = store_customer(client, invoice.tenant.id, &customer).await?;
        let known_invoice: Option<String> = client
            .query_one(
                "SELECT stripe_invoice_id FROM invoices WHERE id = $1",
                &[&invoice.id],
            )
            .await?
            .get(0);
        let pushed = stripe
            .push_invoice(&customer, invoice, known_invoice)
            .await?;
        client
            .execute(
                "UPDATE invoices SET stripe_invoice_id = $2 \
                  WHERE id = $1 AND stripe_invoice_id IS DISTINCT FROM $2",
                &[&invoice.id, &pushed.stripe_invoice_id],
            )
            .await?;
        Ok(json!({
            "customer_id": pushed.customer_id,
            "stripe_invoice_id": pushed.stripe_invoice_id,
            "stripe_status": pushed.stripe_status,
        }))
    }

    async fn run_email(
        &self,
        invoice: &DeliveryInvoice,
    ) -> Result<serde_json::Value, DeliveryError> {
        let Some(mailer) = &self.mailer else {
            return Ok(json!({}));
        };
        let to = invoice.tenant.billing_email.clone().ok_or_else(|| {
            DeliveryError::Email(format!(
                "tenant {} has no billing email; set it through the control API",
                invoice.tenant.slug
            ))
        })?;
        let email = invoice_email(invoice, to);
        mailer.send(&email).await?;
        Ok(json!({ "to": email.to, "message_id": email.message_id }))
    }

    async fn run_document(
        &self,
        client: &Client,
        invoice: &DeliveryInvoice,
    ) -> Result<serde_json::Value, DeliveryError> {
        let Some(store) = &self.documents else {
            return Ok(json!({}));
        };
        let (pdf_key, html_key) = document_keys(invoice);
        let document = invoice.document();
        store
            .put(
                &html_key,
                "text/html; charset=utf-8",
                render_invoice_html(&document).into_bytes(),
            )
            .await?;
        store
            .put(
                &pdf_key,
                "application/pdf",
                pdf::render_invoice_pdf(&document, &invoice.number),
            )
            .await?;
        client
            .execute(
                "UPDATE invoices SET document_key = $2 \
                  WHERE id = $1 AND document_key IS DISTINCT FROM $2",
                &[&invoice.id, &pdf_key],
            )
            .await?;
        Ok(json!({ "pdf_key": pdf_key, "html_key": html_key }))
    }
}

/// The PDF and HTML object keys of an invoice.
pub fn document_keys(invoice: &DeliveryInvoice) -> (String, String) {
    let period = period_label(invoice.period_start);
    (
        document_key(invoice.tenant.id, &period, &invoice.number, "pdf"),
        document_key(invoice.tenant.id, &period, &invoice.number, "html"),
    )
}

/// The email of an invoice: subject with number and total, HTML body, PDF attached.
pub fn invoice_email(invoice: &DeliveryInvoice, to: String) -> InvoiceEmail {
    let number = &invoice.number;
    let document = invoice.document();
    InvoiceEmail {
        to,
        subject: format!(
            "Invoice {number} from Tollgate: {}",
            format_money(document.total)
        ),
        html: render_invoice_html(&document),
        pdf_name: format!("invoice-{number}.pdf"),
        pdf: pdf::render_invoice_pdf(&document, number),
        message_id: format!("invoice-{}@tollgate.invoicing", invoice.id),
    }
}

async fn stored_customer(
    client: &Client,
    tenant_id: Uuid,
) -> Result<Option<String>, DeliveryError> {
    Ok(client
        .query_opt(
            "SELECT customer_id FROM stripe_customers WHERE tenant_id = $1",
            &[&tenant_id],
        )
        .await?
        .map(|row| row.get(0)))
}

/// Stores the tenant's customer id, keeping the first one stored if two jobs raced.
async fn store_customer(
    client: &Client,
    tenant_id: Uuid,
    customer_id: &str,
) -> Result<String, DeliveryError> {
    client
        .execute(
            "INSERT INTO stripe_customers (tenant_id, customer_id) VALUES ($1, $2) \
             ON CONFLICT (tenant_id) DO NOTHING",
            &[&tenant_id, &customer_id],
        )
        .await?;
    Ok(client
        .query_one(
            "SELECT customer_id FROM stripe_customers WHERE tenant_id = $1",
            &[&tenant_id],
        )
        .await?
        .get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_are_stable_and_valid_step_records() {
        let names: Vec<_> = DeliveryStep::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["stripe", "email", "document"]);
        assert!(Deliverer::default().steps().is_empty());
    }
}
