//! Delivery of finalized invoices: Stripe, email, document store, one resumable step each.
//!
//! Each step is recorded (through a [`StepLedger`]) when it succeeds or fails, so a rerun does
//! only what is missing and a step that keeps failing stays visible with its error. Steps are
//! independent: an SMTP outage does not keep the invoice out of Stripe or the store. A
//! per-invoice advisory lock keeps two concurrent jobs from delivering the same invoice at
//! once (the loser skips it; the winner's records tell the next run what is left).

pub mod documents;
pub mod email;
mod error;
pub mod form;
mod http;
pub mod invoice;
pub mod pdf;
pub mod retry;
pub mod stripe;

use std::collections::HashSet;
use std::future::Future;

use tokio_postgres::Client;
use tollgate_core::invoice_document::{format_money, period_label, render_invoice_html};
use uuid::Uuid;

pub use documents::{DocumentStore, S3Settings, document_key};
pub use email::{InvoiceEmail, InvoiceMailer, SmtpSettings};
pub use error::DeliveryError;
pub use invoice::{BillingTenant, CollectionMethod, DeliveryInvoice, DeliveryLine};
pub use stripe::{PushedInvoice, StripeClient, StripeSettings};

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

/// Where step outcomes are recorded (the invoicing store's step records).
pub trait StepLedger {
    /// Names of the steps of `invoice_id` that have succeeded.
    fn completed(
        &self,
        invoice_id: Uuid,
    ) -> impl Future<Output = Result<HashSet<String>, DeliveryError>> + Send;
    /// Records that `step` succeeded.
    fn succeeded(
        &self,
        invoice_id: Uuid,
        step: &'static str,
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send;
    /// Records that `step` failed with `error` (the next run retries it).
    fn failed(
        &self,
        invoice_id: Uuid,
        step: &'static str,
        error: &str,
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send;
}

/// The configured delivery channels; a channel left out is a step that is not run.
#[derive(Debug, Clone, Default)]
pub struct Deliverer {
    /// Stripe, if configured.
    pub stripe: Option<StripeClient>,
    /// SMTP, if configured.
    pub mailer: Option<InvoiceMailer>,
    /// The object store, if configured.
    pub documents: Option<DocumentStore>,
}

/// What one delivery run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Steps run and succeeded now.
    pub done: Vec<DeliveryStep>,
    /// Steps that had succeeded before.
    pub already_done: Vec<DeliveryStep>,
    /// Steps that failed now, with the error recorded.
    pub failed: Vec<(DeliveryStep, String)>,
    /// Another process held the invoice's lock: nothing was done.
    pub locked_elsewhere: bool,
}

impl DeliveryReport {
    /// Every configured step has succeeded.
    pub fn complete(&self) -> bool {
        self.failed.is_empty() && !self.locked_elsewhere
    }
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
        ledger: &impl StepLedger,
        invoice_id: Uuid,
    ) -> Result<DeliveryReport, DeliveryError> {
        let mut report = DeliveryReport::default();
        let lock_key = advisory_key(invoice_id);
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&lock_key])
            .await?
            .get(0);
        if !locked {
            report.locked_elsewhere = true;
            return Ok(report);
        }
        let result = self.deliver_locked(client, ledger, invoice_id, &mut report).await;
        // Unlocked on every path; a crashed process's session ends and frees it too.
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&lock_key])
            .await?;
        result.map(|()| report)
    }

    async fn deliver_locked(
        &self,
        client: &Client,
        ledger: &impl StepLedger,
        invoice_id: Uuid,
        report: &mut DeliveryReport,
    ) -> Result<(), DeliveryError> {
        let done = ledger.completed(invoice_id).await?;
        let invoice = DeliveryInvoice::load(client, invoice_id)
            .await?
            .ok_or_else(|| DeliveryError::InvalidInvoice {
                invoice_id,
                message: "no such invoice".into(),
            })?;
        for step in self.steps() {
            if done.contains(step.name()) {
                report.already_done.push(step);
                continue;
            }
            let outcome = match step {
                DeliveryStep::Stripe => self.run_stripe(client, &invoice).await,
                DeliveryStep::Email => self.run_email(&invoice).await,
                DeliveryStep::Document => self.run_document(client, &invoice).await,
            };
            match outcome {
                Ok(()) => {
                    ledger.succeeded(invoice_id, step.name()).await?;
                    report.done.push(step);
                }
                Err(error) => {
                    let message = error.to_string();
                    tracing::warn!(%invoice_id, step = step.name(), error = %message, "Delivery step failed; the next run retries it.");
                    ledger.failed(invoice_id, step.name(), &message).await?;
                    report.failed.push((step, message));
                }
            }
        }
        Ok(())
    }

    async fn run_stripe(
        &self,
        client: &Client,
        invoice: &DeliveryInvoice,
    ) -> Result<(), DeliveryError> {
        let Some(stripe) = &self.stripe else {
            return Ok(());
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
                "UPDATE invoices SET stripe_invoice_id = $2, updated_at = now() \
                  WHERE id = $1 AND stripe_invoice_id IS DISTINCT FROM $2",
                &[&invoice.id, &pushed.stripe_invoice_id],
            )
            .await?;
        Ok(())
    }

    async fn run_email(&self, invoice: &DeliveryInvoice) -> Result<(), DeliveryError> {
        let Some(mailer) = &self.mailer else {
            return Ok(());
        };
        let to = invoice.tenant.billing_email.clone().ok_or_else(|| {
            DeliveryError::Email(format!(
                "tenant {} has no billing email; set it through the control API",
                invoice.tenant.slug
            ))
        })?;
        mailer.send(&invoice_email(invoice, to)).await
    }

    async fn run_document(
        &self,
        client: &Client,
        invoice: &DeliveryInvoice,
    ) -> Result<(), DeliveryError> {
        let Some(store) = &self.documents else {
            return Ok(());
        };
        let (pdf_key, html_key) = document_keys(invoice);
        let number = invoice.number();
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
                pdf::render_invoice_pdf(&document, &number),
            )
            .await?;
        client
            .execute(
                "UPDATE invoices SET document_key = $2, updated_at = now() \
                  WHERE id = $1 AND document_key IS DISTINCT FROM $2",
                &[&invoice.id, &pdf_key],
            )
            .await?;
        Ok(())
    }
}

/// The PDF and HTML object keys of an invoice.
pub fn document_keys(invoice: &DeliveryInvoice) -> (String, String) {
    let period = period_label(invoice.period_start);
    let number = invoice.number();
    (
        document_key(invoice.tenant.id, &period, &number, "pdf"),
        document_key(invoice.tenant.id, &period, &number, "html"),
    )
}

/// The email of an invoice: subject with number and total, HTML body, PDF attached.
pub fn invoice_email(invoice: &DeliveryInvoice, to: String) -> InvoiceEmail {
    let number = invoice.number();
    let document = invoice.document();
    InvoiceEmail {
        to,
        subject: format!(
            "Invoice {number} from Tollgate: {}",
            format_money(document.total)
        ),
        html: render_invoice_html(&document),
        pdf_name: format!("invoice-{number}.pdf"),
        pdf: pdf::render_invoice_pdf(&document, &number),
        message_id: format!("invoice-{}@tollgate.invoicing", invoice.id),
    }
}

/// The advisory-lock key of an invoice's delivery: both halves of the UUID folded together.
fn advisory_key(invoice_id: Uuid) -> i64 {
    let (high, low) = invoice_id.as_u64_pair();
    i64::from_ne_bytes((high ^ low ^ 0x7467_6465_6c69_7672).to_ne_bytes())
}

async fn stored_customer(client: &Client, tenant_id: Uuid) -> Result<Option<String>, DeliveryError> {
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
    fn step_names_are_stable_and_lock_keys_differ() {
        let names: Vec<_> = DeliveryStep::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["stripe", "email", "document"]);
        assert_ne!(
            advisory_key(Uuid::from_u128(1)),
            advisory_key(Uuid::from_u128(2))
        );
        assert!(Deliverer::default().steps().is_empty());
    }
}
