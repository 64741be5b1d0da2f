//! Invoices, their lines and their step records in PostgreSQL: the invoice state machine.
//!
//! An invoice walks `draft → finalized → paid / payment_failed / uncollectible / void`
//! ([`InvoiceStatus`]); the database refuses any other transition and any change to a finalized
//! invoice's amounts, number or lines (triggers of migration V3), and records every transition
//! in `invoice_transitions`. What happens to an invoice besides its status, the *steps* (`draft`
//! and `finalize` here; `stripe`, `email`, `document` and any later one), is one
//! `invoice_steps` row per invoice and step with its status, attempt count, times, last error
//! and a JSON `detail`, so an operator sees where an invoice is stuck and why.
//!
//! # How a delivery step uses this
//! A step is idempotent and resumable; its runner loops over the invoices that need it:
//!
//! ```text
//! for id in invoices_needing_step(&client, "email", &["finalize", "document"], LEASE, 100).await? {
//!     match start_step(&client, id, "email", LEASE).await? {
//!         StepStart::Started { attempt } => {
//!             let (invoice, lines) = load_invoice(&client, id).await?.ok_or(...)?;
//!             // Call the provider with an idempotency key derived from (invoice id, step),
//!             // so a retry after a crash cannot send twice where the provider dedups.
//!             match send(&invoice, &lines).await {
//!                 Ok(detail) => step_succeeded(&client, id, "email", Some(&detail)).await?,
//!                 Err(e) => step_failed(&client, id, "email", &e.to_string(), backoff(attempt)).await?,
//!             }
//!         }
//!         StepStart::AlreadySucceeded | StepStart::Busy => {}
//!     }
//! }
//! ```
//!
//! [`start_step`] claims the step with a lease: a second runner gets [`StepStart::Busy`] until
//! the lease ends, so a runner that crashed mid-step is retried after `LEASE` and two runners
//! never run one step at once. Payment results (webhooks) move the status with [`transition`].

use std::time::Duration;

use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient, Row, Transaction};
use tollgate_core::rating::{BillingPeriod, RatedInvoice};
use uuid::Uuid;

use crate::InvoicingError;

/// The step the monthly job records when it writes a draft.
pub const STEP_DRAFT: &str = "draft";
/// The step the monthly job records when it finalizes (numbers) an invoice.
pub const STEP_FINALIZE: &str = "finalize";

/// Where an invoice is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvoiceStatus {
    /// Rated, not yet final; may still be voided.
    Draft,
    /// Numbered and frozen; delivery steps run from here.
    Finalized,
    /// Paid.
    Paid,
    /// A payment attempt failed; may still be paid.
    PaymentFailed,
    /// Given up on collecting.
    Uncollectible,
    /// Cancelled.
    Void,
}

impl InvoiceStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 6] = [
        Self::Draft,
        Self::Finalized,
        Self::Paid,
        Self::PaymentFailed,
        Self::Uncollectible,
        Self::Void,
    ];

    /// The `invoices.status` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Finalized => "finalized",
            Self::Paid => "paid",
            Self::PaymentFailed => "payment_failed",
            Self::Uncollectible => "uncollectible",
            Self::Void => "void",
        }
    }

    /// Parses an `invoices.status` value.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Whether the database allows `self → to` (mirrors the `tollgate_guard_invoice` trigger).
    pub fn may_become(self, to: Self) -> bool {
        use InvoiceStatus::{Draft, Finalized, Paid, PaymentFailed, Uncollectible, Void};
        matches!(
            (self, to),
            (Draft, Finalized | Void)
                | (Finalized, Paid | PaymentFailed | Uncollectible | Void)
                | (PaymentFailed, Paid | Uncollectible | Void)
                | (Uncollectible, Paid | Void)
        )
    }
}

/// An invoice without its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceRecord {
    /// Id.
    pub id: Uuid,
    /// The billed tenant.
    pub tenant_id: Uuid,
    /// Start of the billed period.
    pub period_start: OffsetDateTime,
    /// End of the billed period (exclusive).
    pub period_end: OffsetDateTime,
    /// ISO 4217 code.
    pub currency: String,
    /// Status.
    pub status: InvoiceStatus,
    /// `TG-YYYY-NNNNNN`, once finalized.
    pub number: Option<String>,
    /// Sum of the lines, minor units.
    pub total_minor: i64,
    /// When it was finalized.
    pub finalized_at: Option<OffsetDateTime>,
}

/// One stored line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRecord {
    /// Id (stable: delivery idempotency keys may derive from it).
    pub id: Uuid,
    /// Order, from 0.
    pub position: i32,
    /// `base_fee`, `usage` or `correction`.
    pub kind: String,
    /// Printed description.
    pub description: String,
    /// Units.
    pub quantity: i64,
    /// Exact unit price as text (display only).
    pub unit_price: String,
    /// Amount, minor units; authoritative.
    pub amount_minor: i64,
    /// For corrections: the invoice corrected.
    pub corrects_invoice_id: Option<Uuid>,
    /// For corrections: the start of the period corrected.
    pub corrects_period_start: Option<OffsetDateTime>,
}

const INVOICE_COLUMNS: &str = "id, tenant_id, period_start, period_end, currency::text, status, number, total_minor, finalized_at";

fn invoice(row: &Row) -> Result<InvoiceRecord, InvoicingError> {
    let status: String = row.get(5);
    Ok(InvoiceRecord {
        id: row.get(0),
        tenant_id: row.get(1),
        period_start: row.get(2),
        period_end: row.get(3),
        currency: row.get(4),
        status: InvoiceStatus::parse(&status)
            .ok_or_else(|| InvoicingError::BadRow(format!("invoice status {status:?}")))?,
        number: row.get(6),
        total_minor: row.get(7),
        finalized_at: row.get(8),
    })
}

/// Locks the tenant for this transaction, so runs for the same tenant (two monthly processes,
/// a manual run beside the scheduled one) take turns; returns its status, `None` if it is gone.
/// `FOR NO KEY UPDATE` leaves inserts that reference the tenant (keys, usage) unblocked.
pub async fn lock_tenant(
    tx: &Transaction<'_>,
    tenant_id: Uuid,
) -> Result<Option<String>, InvoicingError> {
    Ok(tx
        .query_opt(
            "SELECT status FROM tenants WHERE id = $1 FOR NO KEY UPDATE",
            &[&tenant_id],
        )
        .await?
        .map(|row| row.get(0)))
}

/// The tenant's invoice for the period starting at `period_start`, if any.
pub async fn invoice_for_period(
    client: &impl GenericClient,
    tenant_id: Uuid,
    period_start: OffsetDateTime,
) -> Result<Option<InvoiceRecord>, InvoicingError> {
    client
        .query_opt(
            &format!(
                "SELECT {INVOICE_COLUMNS} FROM invoices WHERE tenant_id = $1 AND period_start = $2"
            ),
            &[&tenant_id, &period_start],
        )
        .await?
        .as_ref()
        .map(invoice)
        .transpose()
}

fn signed(value: u64) -> Result<i64, InvoicingError> {
    i64::try_from(value).map_err(|_| InvoicingError::BadRow(format!("{value} exceeds bigint")))
}

/// Writes `rated` as a draft invoice with its lines, billed usage and a succeeded `draft` step.
/// Call inside the transaction that holds [`lock_tenant`] and found no invoice for the period;
/// the unique key `(tenant_id, period_start)` refuses a second one regardless.
pub async fn insert_draft(
    tx: &Transaction<'_>,
    tenant_id: Uuid,
    period: &BillingPeriod,
    rated: &RatedInvoice,
) -> Result<Uuid, InvoicingError> {
    let id = Uuid::now_v7();
    let subscription_id = rated
        .usage
        .iter()
        .rev()
        .find(|u| u.corrects_invoice_id.is_none())
        .map(|u| u.subscription_id);
    tx.execute(
        "INSERT INTO invoices (id, tenant_id, subscription_id, period_start, period_end, currency, \
                               status, subtotal_minor, total_minor) \
         VALUES ($1, $2, $3, $4, $5, $6, 'draft', $7, $7)",
        &[
            &id,
            &tenant_id,
            &subscription_id,
            &period.start(),
            &period.end(),
            &rated.currency.code(),
            &rated.total.amount_minor(),
        ],
    )
    .await?;
    let line = tx
        .prepare(
            "INSERT INTO invoice_lines (id, invoice_id, position, kind, description, quantity, \
                                        unit_price, amount_minor, subscription_id, \
                                        corrects_invoice_id, corrects_period_start) \
             VALUES ($1, $2, $3, $4, $5, $6, $7::text::numeric, $8, $9, $10, $11)",
        )
        .await?;
    for (position, l) in rated.lines.iter().enumerate() {
        let position =
            i32::try_from(position).map_err(|_| InvoicingError::BadRow("too many lines".into()))?;
        let unit_price = l.unit_price.round_dp(12).normalize().to_string();
        tx.execute(
            &line,
            &[
                &Uuid::now_v7(),
                &id,
                &position,
                &l.kind.as_str(),
                &l.description,
                &signed(l.quantity)?,
                &unit_price,
                &l.amount.amount_minor(),
                &l.subscription_id,
                &l.corrects.map(|c| c.0),
                &l.corrects.map(|c| c.1),
            ],
        )
        .await?;
    }
    let usage = tx
        .prepare(
            "INSERT INTO invoice_usage (invoice_id, subscription_id, plan_id, plan_name, pricing, \
                                        included_units, slice_start, slice_end, \
                                        corrects_invoice_id, units, usage_minor) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .await?;
    for u in &rated.usage {
        let pricing = serde_json::to_value(&u.pricing)
            .map_err(|e| InvoicingError::BadRow(format!("pricing: {e}")))?;
        tx.execute(
            &usage,
            &[
                &id,
                &u.subscription_id,
                &u.plan_id,
                &u.plan_name,
                &pricing,
                &signed(u.included_units)?,
                &u.slice_start,
                &u.slice_end,
                &u.corrects_invoice_id,
                &signed(u.units)?,
                &u.usage_minor,
            ],
        )
        .await?;
    }
    tx.execute(
        "INSERT INTO invoice_steps (invoice_id, step, status, attempts, first_attempt_at, \
                                    last_attempt_at, succeeded_at) \
         VALUES ($1, $2, 'succeeded', 1, now(), now(), now())",
        &[&id, &STEP_DRAFT],
    )
    .await?;
    Ok(id)
}

/// What [`finalize`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finalized {
    /// The invoice number.
    pub number: String,
    /// `false` when an earlier run had already finalized it.
    pub now: bool,
}

/// Finalizes a draft: takes the next number of the year's gapless counter and freezes the
/// invoice, in one transaction, so a crash or a concurrent finalizer cannot skip or reuse a
/// number. Finalizing an already finalized invoice returns its number.
pub async fn finalize(client: &mut Client, invoice_id: Uuid) -> Result<Finalized, InvoicingError> {
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT status, number FROM invoices WHERE id = $1 FOR UPDATE",
            &[&invoice_id],
        )
        .await?
        .ok_or(InvoicingError::InvoiceNotFound(invoice_id))?;
    let status: String = row.get(0);
    if status != InvoiceStatus::Draft.as_str() {
        let number: Option<String> = row.get(1);
        tx.commit().await?;
        return number.map(|number| Finalized { number, now: false }).ok_or(
            InvoicingError::TransitionRefused {
                invoice_id,
                from: status,
                to: InvoiceStatus::Finalized.as_str(),
            },
        );
    }
    let row = tx
        .query_one(
            "WITH y AS (SELECT extract(year FROM now() AT TIME ZONE 'UTC')::int AS year), \
                  n AS (INSERT INTO invoice_number_counters AS c (year, last_seq) \
                        SELECT year, 1 FROM y \
                        ON CONFLICT (year) DO UPDATE SET last_seq = c.last_seq + 1 \
                        RETURNING year, last_seq) \
             UPDATE invoices SET status = 'finalized', finalized_at = now(), \
                    number = format('TG-%s-%s', n.year, lpad(n.last_seq::text, 6, '0')) \
               FROM n WHERE id = $1 RETURNING number",
            &[&invoice_id],
        )
        .await?;
    let number: String = row.get(0);
    record_success(&tx, invoice_id, STEP_FINALIZE, None).await?;
    tx.commit().await?;
    Ok(Finalized { number, now: true })
}

/// Moves an invoice to `to` (a payment result, a void), refused unless the transition is
/// allowed; returns the status it had. Moving to the status it already has is a no-op, so a
/// redelivered webhook is harmless.
pub async fn transition(
    client: &impl GenericClient,
    invoice_id: Uuid,
    to: InvoiceStatus,
) -> Result<InvoiceStatus, InvoicingError> {
    let row = client
        .query_opt(
            "WITH old AS (SELECT id, status FROM invoices WHERE id = $1 FOR UPDATE) \
             UPDATE invoices i SET status = $2 FROM old WHERE i.id = old.id RETURNING old.status",
            &[&invoice_id, &to.as_str()],
        )
        .await;
    match row {
        Ok(Some(row)) => {
            let from: String = row.get(0);
            InvoiceStatus::parse(&from)
                .ok_or_else(|| InvoicingError::BadRow(format!("invoice status {from:?}")))
        }
        Ok(None) => Err(InvoicingError::InvoiceNotFound(invoice_id)),
        Err(e) if e.code() == Some(&SqlState::CHECK_VIOLATION) => {
            let from = client
                .query_opt("SELECT status FROM invoices WHERE id = $1", &[&invoice_id])
                .await?
                .map(|r| r.get::<_, String>(0))
                .unwrap_or_default();
            Err(InvoicingError::TransitionRefused {
                invoice_id,
                from,
                to: to.as_str(),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// An invoice and its lines by position.
pub async fn load_invoice(
    client: &impl GenericClient,
    invoice_id: Uuid,
) -> Result<Option<(InvoiceRecord, Vec<LineRecord>)>, InvoicingError> {
    let Some(row) = client
        .query_opt(
            &format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = $1"),
            &[&invoice_id],
        )
        .await?
    else {
        return Ok(None);
    };
    let record = invoice(&row)?;
    let lines = load_lines(client, invoice_id).await?;
    Ok(Some((record, lines)))
}

/// An invoice's lines by position (what delivery sends and prints, too).
pub async fn load_lines(
    client: &impl GenericClient,
    invoice_id: Uuid,
) -> Result<Vec<LineRecord>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT id, position, kind, description, quantity, unit_price::text, amount_minor, \
                    corrects_invoice_id, corrects_period_start \
               FROM invoice_lines WHERE invoice_id = $1 ORDER BY position",
            &[&invoice_id],
        )
        .await?
        .iter()
        .map(|l| LineRecord {
            id: l.get(0),
            position: l.get(1),
            kind: l.get(2),
            description: l.get(3),
            quantity: l.get(4),
            unit_price: l.get(5),
            amount_minor: l.get(6),
            corrects_invoice_id: l.get(7),
            corrects_period_start: l.get(8),
        })
        .collect())
}

/// A step's state on one invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    /// Step name.
    pub step: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i32,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// First attempt.
    pub first_attempt_at: Option<OffsetDateTime>,
    /// Latest attempt.
    pub last_attempt_at: Option<OffsetDateTime>,
    /// When it succeeded.
    pub succeeded_at: Option<OffsetDateTime>,
    /// Earliest retry of a failed step.
    pub next_attempt_at: Option<OffsetDateTime>,
    /// What the step recorded on success.
    pub detail: serde_json::Value,
}

/// Every step record of an invoice, by first attempt.
pub async fn steps(
    client: &impl GenericClient,
    invoice_id: Uuid,
) -> Result<Vec<StepRecord>, InvoicingError> {
    Ok(client
        .query(
            "SELECT step, status, attempts, last_error, first_attempt_at, last_attempt_at, \
                    succeeded_at, next_attempt_at, detail \
               FROM invoice_steps WHERE invoice_id = $1 ORDER BY first_attempt_at, step",
            &[&invoice_id],
        )
        .await?
        .iter()
        .map(|r| StepRecord {
            step: r.get(0),
            status: r.get(1),
            attempts: r.get(2),
            last_error: r.get(3),
            first_attempt_at: r.get(4),
            last_attempt_at: r.get(5),
            succeeded_at: r.get(6),
            next_attempt_at: r.get(7),
            detail: r.get(8),
        })
        .collect())
}

/// What [`start_step`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStart {
    /// The step is yours; this is attempt number `attempt` (from 1).
    Started {
        /// Attempt number.
        attempt: i32,
    },
    /// It succeeded before: nothing to do.
    AlreadySucceeded,
    /// Another runner holds it (its lease has not run out), or its retry is not due yet.
    Busy,
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

fn check_step_name(step: &str) -> Result<(), InvoicingError> {
    let valid = step.len() <= 40
        && step.starts_with(|c: char| c.is_ascii_lowercase())
        && step
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(InvoicingError::BadRow(format!(
            "step name {step:?} must match ^[a-z][a-z0-9_]{{0,39}}$"
        )))
    }
}

/// Claims `step` of an invoice: counts an attempt and marks it running for `lease`, unless it
/// succeeded already, another runner's lease is live, or a failed attempt's retry is not due.
pub async fn start_step(
    client: &impl GenericClient,
    invoice_id: Uuid,
    step: &str,
    lease: Duration,
) -> Result<StepStart, InvoicingError> {
    check_step_name(step)?;
    let row = client
        .query_opt(
            "INSERT INTO invoice_steps AS s (invoice_id, step, status, attempts, first_attempt_at, \
                                             last_attempt_at) \
             VALUES ($1, $2, 'running', 1, now(), now()) \
             ON CONFLICT (invoice_id, step) DO UPDATE \
                SET status = 'running', attempts = s.attempts + 1, last_attempt_at = now(), \
                    next_attempt_at = NULL, updated_at = now() \
              WHERE s.status <> 'succeeded' \
                AND NOT (s.status = 'running' \
                         AND s.last_attempt_at > now() - make_interval(secs => $3)) \
                AND (s.status <> 'failed' OR s.next_attempt_at IS NULL OR s.next_attempt_at <= now()) \
             RETURNING attempts",
            &[&invoice_id, &step, &seconds(lease)],
        )
        .await?;
    if let Some(row) = row {
        return Ok(StepStart::Started {
            attempt: row.get(0),
        });
    }
    let status: Option<String> = client
        .query_opt(
            "SELECT status FROM invoice_steps WHERE invoice_id = $1 AND step = $2",
            &[&invoice_id, &step],
        )
        .await?
        .map(|r| r.get(0));
    Ok(match status.as_deref() {
        Some("succeeded") => StepStart::AlreadySucceeded,
        _ => StepStart::Busy,
    })
}

async fn record_success(
    client: &impl GenericClient,
    invoice_id: Uuid,
    step: &str,
    detail: Option<&serde_json::Value>,
) -> Result<(), InvoicingError> {
    check_step_name(step)?;
    client
        .execute(
            "INSERT INTO invoice_steps AS s (invoice_id, step, status, attempts, first_attempt_at, \
                                             last_attempt_at, succeeded_at, detail) \
             VALUES ($1, $2, 'succeeded', 1, now(), now(), now(), coalesce($3, '{}'::jsonb)) \
             ON CONFLICT (invoice_id, step) DO UPDATE \
                SET status = 'succeeded', succeeded_at = now(), next_attempt_at = NULL, \
                    attempts = CASE WHEN s.status = 'running' THEN s.attempts ELSE s.attempts + 1 END, \
                    last_attempt_at = CASE WHEN s.status = 'running' THEN s.last_attempt_at ELSE now() END, \
                    detail = coalesce($3, s.detail), updated_at = now()",
            &[&invoice_id, &step, &detail],
        )
        .await?;
    Ok(())
}

/// Records that `step` succeeded, with what it produced (kept when `detail` is `None`).
pub async fn step_succeeded(
    client: &impl GenericClient,
    invoice_id: Uuid,
    step: &str,
    detail: Option<&serde_json::Value>,
) -> Result<(), InvoicingError> {
    record_success(client, invoice_id, step, detail).await
}

/// Records that an attempt at `step` failed with `error` (cut to 2000 characters; never put
/// secrets in it), to be retried after `retry_after`. A succeeded step stays succeeded.
pub async fn step_failed(
    client: &impl GenericClient,
    invoice_id: Uuid,
    step: &str,
    error: &str,
    retry_after: Duration,
) -> Result<(), InvoicingError> {
    check_step_name(step)?;
    let error: String = error.chars().take(2000).collect();
    client
        .execute(
            "INSERT INTO invoice_steps AS s (invoice_id, step, status, attempts, first_attempt_at, \
                                             last_attempt_at, last_error, next_attempt_at) \
             VALUES ($1, $2, 'failed', 1, now(), now(), $3, now() + make_interval(secs => $4)) \
             ON CONFLICT (invoice_id, step) DO UPDATE \
                SET status = 'failed', last_error = $3, \
                    next_attempt_at = now() + make_interval(secs => $4), \
                    attempts = CASE WHEN s.status = 'running' THEN s.attempts ELSE s.attempts + 1 END, \
                    last_attempt_at = CASE WHEN s.status = 'running' THEN s.last_attempt_at ELSE now() END, \
                    updated_at = now() \
              WHERE s.status <> 'succeeded'",
            &[&invoice_id, &step, &error, &seconds(retry_after)],
        )
        .await?;
    Ok(())
}

/// Invoices that need `step`: finalized or later (not void), every step in `requires`
/// succeeded, and `step` itself not succeeded, not running under a live `lease`, and not
/// waiting for a retry. Oldest finalized first, at most `limit`.
pub async fn invoices_needing_step(
    client: &impl GenericClient,
    step: &str,
    requires: &[&str],
    lease: Duration,
    limit: i64,
) -> Result<Vec<Uuid>, InvoicingError> {
    check_step_name(step)?;
    let requires: Vec<String> = requires.iter().map(|s| (*s).to_owned()).collect();
    Ok(client
        .query(
            "SELECT i.id FROM invoices i \
               LEFT JOIN invoice_steps s ON s.invoice_id = i.id AND s.step = $1 \
              WHERE i.status NOT IN ('draft', 'void') \
                AND (s.status IS NULL \
                     OR (s.status = 'failed' AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= now())) \
                     OR (s.status = 'running' AND s.last_attempt_at <= now() - make_interval(secs => $3))) \
                AND (SELECT count(*) FROM invoice_steps r \
                      WHERE r.invoice_id = i.id AND r.step = ANY($2) AND r.status = 'succeeded') \
                    = cardinality($2::text[]) \
              ORDER BY i.finalized_at, i.id LIMIT $4",
            &[&step, &requires, &seconds(lease), &limit],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// One recorded status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRecord {
    /// Previous status; `None` at creation.
    pub from: Option<String>,
    /// New status.
    pub to: String,
    /// When.
    pub at: OffsetDateTime,
}

/// An invoice's status history, oldest first.
pub async fn transitions(
    client: &impl GenericClient,
    invoice_id: Uuid,
) -> Result<Vec<TransitionRecord>, InvoicingError> {
    Ok(client
        .query(
            "SELECT from_status, to_status, at FROM invoice_transitions \
              WHERE invoice_id = $1 ORDER BY id",
            &[&invoice_id],
        )
        .await?
        .iter()
        .map(|r| TransitionRecord {
            from: r.get(0),
            to: r.get(1),
            at: r.get(2),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_transitions_follow_the_state_machine() {
        for status in InvoiceStatus::ALL {
            assert_eq!(InvoiceStatus::parse(status.as_str()), Some(status));
        }
        use InvoiceStatus::{Draft, Finalized, Paid, PaymentFailed, Void};
        assert!(Draft.may_become(Finalized));
        assert!(Finalized.may_become(Paid));
        assert!(PaymentFailed.may_become(Paid));
        assert!(!Draft.may_become(Paid));
        assert!(!Paid.may_become(Void));
        assert!(!Void.may_become(Draft));
        assert!(!Finalized.may_become(Draft));
    }

    #[test]
    fn step_names_are_checked() {
        assert!(check_step_name("stripe").is_ok());
        assert!(check_step_name("document_v2").is_ok());
        assert!(check_step_name("Stripe").is_err());
        assert!(check_step_name("").is_err());
        assert!(check_step_name("a-b").is_err());
    }
}
