//! The two runs: `hourly` rolls usage up; `monthly` invoices every tenant with a subscription in
//! force during the period, one invoice per tenant and period, exactly once.
//!
//! Exactly once, decided in the database: each tenant is invoiced in a transaction that locks
//! the tenant's row, looks for the period's invoice and writes the draft only if there is none
//! (the unique key `(tenant_id, period_start)` backs this up), then a second transaction
//! finalizes it with the next gapless number. A concurrent run waits for the lock and finds the
//! invoice; a run after a crash finds the draft and finalizes it, or finds nothing (the crash
//! rolled the draft back) and rates again from the same data. Late usage and corrections for
//! the same tenant are decided under the same lock, so they are billed once.
//!
//! Tenant rules: a tenant with no subscription in force during the period gets no invoice; a
//! suspended tenant is invoiced like an active one (suspension stops service, not billing for
//! what was used); zero usage still gives an invoice (with only the base fee, or a zero total),
//! so every subscribed period has exactly one numbered invoice to correct later.

use std::fmt::Write as _;

use time::OffsetDateTime;
use tokio_postgres::Client;
use tollgate_core::invoice_document::format_money;
use tollgate_core::rating::{BillingPeriod, RatedInvoice};
use tollgate_core::rating_inputs::rate_tenant_period;
use uuid::Uuid;

use crate::InvoicingError;
use crate::config::{FaultPoint, MonthlyConfig};
use crate::rollup::{self, RollupReport};
use crate::store::{self, InvoiceStatus};

/// Test-only stop points (see [`crate::config::ENV_TEST_FAULT`]).
#[derive(Debug, Default)]
pub struct Faults {
    point: Option<FaultPoint>,
    seen: u32,
}

impl Faults {
    /// Stops at `point`, if configured.
    pub fn new(point: Option<FaultPoint>) -> Self {
        Self { point, seen: 0 }
    }

    /// Called at each named point: when it is the configured one (for the n-th time), says so
    /// on stderr and blocks forever, so the test can kill the process exactly here.
    pub fn reached(&mut self, name: &str) {
        let Some(point) = &self.point else { return };
        if point.name != name {
            return;
        }
        self.seen += 1;
        if self.seen == point.nth {
            eprintln!("TEST FAULT POINT REACHED: {name}:{}", point.nth);
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
    }
}

/// Runs `hourly`: every closed hour of the lookback window and every dirty closed hour.
pub async fn run_hourly(
    client: &mut Client,
    now: OffsetDateTime,
    lookback_hours: u32,
    faults: &mut Faults,
) -> Result<RollupReport, InvoicingError> {
    let hours = rollup::hours_to_roll_up(client, now, lookback_hours).await?;
    let total = hours.len();
    tracing::info!(
        hours = total,
        lookback_hours,
        "Rolling usage up into hours."
    );
    let mut report = RollupReport::default();
    for (n, (hour, dirty)) in hours.into_iter().enumerate() {
        let changed = rollup::roll_up_hour(client, hour).await?;
        report.hours += 1;
        report.dirty_hours += usize::from(dirty);
        report.rows_changed += changed;
        if dirty || changed > 0 {
            tracing::info!(hour = %hour, n = n + 1, of = total, dirty, rows_changed = changed, "Hour rolled up.");
        }
        faults.reached("hour-rolled");
    }
    Ok(report)
}

/// What happened to one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantOutcome {
    /// A new invoice, finalized.
    Created {
        /// The invoice.
        invoice_id: Uuid,
        /// Its number.
        number: String,
    },
    /// The period's invoice existed; a draft left by an interrupted run was finalized now.
    Existing {
        /// The invoice.
        invoice_id: Uuid,
        /// Its number (`None` for a void draft).
        number: Option<String>,
        /// Whether this run finalized it.
        finalized_now: bool,
    },
    /// Dry run: what would be created.
    WouldCreate(Box<RatedInvoice>),
    /// Nothing to invoice: the tenant is gone or had no subscription in the period.
    NoSubscription,
}

/// The monthly run's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonthlySummary {
    /// Tenants with a subscription in the period.
    pub tenants: usize,
    /// Invoices created (and finalized).
    pub created: usize,
    /// Invoices that existed already.
    pub existing: usize,
    /// Of those, drafts of an interrupted run finalized now.
    pub resumed: usize,
    /// Tenants skipped (no subscription after all).
    pub skipped: usize,
    /// Tenants that failed.
    pub failed: usize,
    /// Of those, failures a later run may fix (database errors).
    pub retryable: usize,
}

/// Tenants with a subscription in force at some point of `period`.
pub async fn tenants_to_invoice(
    client: &Client,
    period: &BillingPeriod,
    only: Option<Uuid>,
) -> Result<Vec<Uuid>, InvoicingError> {
    Ok(client
        .query(
            "SELECT DISTINCT tenant_id FROM subscriptions \
              WHERE starts_at < $2 AND (ends_at IS NULL OR ends_at > $1) \
                AND ($3::uuid IS NULL OR tenant_id = $3) \
              ORDER BY tenant_id",
            &[&period.start(), &period.end(), &only],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

fn corrections_since(period: &BillingPeriod, months: u32) -> OffsetDateTime {
    let mut since = *period;
    for _ in 0..months {
        match since.previous() {
            Ok(p) => since = p,
            Err(_) => break,
        }
    }
    since.start()
}

/// Invoices one tenant for the period (see the module docs for the exactly-once argument).
pub async fn invoice_tenant(
    client: &mut Client,
    tenant_id: Uuid,
    config: &MonthlyConfig,
    faults: &mut Faults,
) -> Result<TenantOutcome, InvoicingError> {
    let period = config.period;
    let tx = client.transaction().await?;
    if store::lock_tenant(&tx, tenant_id).await?.is_none() {
        return Ok(TenantOutcome::NoSubscription);
    }
    if let Some(existing) = store::invoice_for_period(&tx, tenant_id, period.start()).await? {
        tx.commit().await?;
        if existing.status != InvoiceStatus::Draft || config.dry_run {
            return Ok(TenantOutcome::Existing {
                invoice_id: existing.id,
                number: existing.number,
                finalized_now: false,
            });
        }
        let finalized = store::finalize(client, existing.id).await?;
        faults.reached("finalized");
        return Ok(TenantOutcome::Existing {
            invoice_id: existing.id,
            number: Some(finalized.number),
            finalized_now: finalized.now,
        });
    }
    let since = corrections_since(&period, config.correction_lookback_months);
    let Some(rated) = rate_tenant_period(&tx, tenant_id, &period, since).await? else {
        return Ok(TenantOutcome::NoSubscription);
    };
    if config.dry_run {
        tx.rollback().await?;
        return Ok(TenantOutcome::WouldCreate(Box::new(rated)));
    }
    let invoice_id = store::insert_draft(&tx, tenant_id, &period, &rated).await?;
    faults.reached("draft-uncommitted");
    tx.commit().await?;
    faults.reached("draft-committed");
    let finalized = store::finalize(client, invoice_id).await?;
    faults.reached("finalized");
    Ok(TenantOutcome::Created {
        invoice_id,
        number: finalized.number,
    })
}

/// What one worker did: its counts, its dry-run rows by tenant index, and the error that
/// stopped it (a lost connection).
struct WorkerReport {
    summary: MonthlySummary,
    rows: Vec<(usize, String)>,
    stopped: Option<InvoicingError>,
}

/// Invoices the tenants at `indices` of `tenants` on one connection.
async fn worker(
    client: &mut Client,
    tenants: &[Uuid],
    indices: impl Iterator<Item = usize>,
    config: &MonthlyConfig,
    faults: &mut Faults,
) -> WorkerReport {
    let mut report = WorkerReport {
        summary: MonthlySummary::default(),
        rows: Vec::new(),
        stopped: None,
    };
    let summary = &mut report.summary;
    let of = tenants.len();
    for index in indices {
        let (tenant_id, n) = (tenants[index], index + 1);
        match invoice_tenant(client, tenant_id, config, faults).await {
            Ok(TenantOutcome::Created { invoice_id, number }) => {
                summary.created += 1;
                tracing::info!(n, of, %tenant_id, %invoice_id, number, "Invoice created.");
            }
            Ok(TenantOutcome::Existing {
                invoice_id,
                number,
                finalized_now,
            }) => {
                summary.existing += 1;
                summary.resumed += usize::from(finalized_now);
                tracing::info!(n, of, %tenant_id, %invoice_id, number, finalized_now, "Invoice already exists.");
            }
            Ok(TenantOutcome::WouldCreate(rated)) => {
                summary.created += 1;
                tracing::info!(n, of, %tenant_id, total = %rated.total, "Invoice would be created.");
                let mut rows = String::new();
                dry_run_rows(&mut rows, tenant_id, &config.period, &rated);
                report.rows.push((index, rows));
            }
            Ok(TenantOutcome::NoSubscription) => {
                summary.skipped += 1;
                tracing::info!(n, of, %tenant_id, "No subscription in the period; skipped.");
            }
            Err(error) => {
                summary.failed += 1;
                let retryable = error.is_retryable();
                summary.retryable += usize::from(retryable);
                tracing::error!(n, of, %tenant_id, %error, retryable, "Invoicing the tenant failed.");
                if client.is_closed() {
                    report.stopped = Some(error);
                    break;
                }
            }
        }
    }
    report
}

/// Runs `monthly` over every tenant to invoice, spread over `clients` (one worker per
/// connection; tenant `n` goes to worker `n mod workers`), logging progress (tenant N of M) and
/// each outcome. A tenant's failure is counted and the run goes on, unless a connection is
/// gone. Fault points only stop a single-connection run. A dry run appends a table of what it
/// would create to `table`, in tenant order.
pub async fn run_monthly(
    clients: &mut [Client],
    config: &MonthlyConfig,
    faults: &mut Faults,
    table: &mut String,
) -> Result<MonthlySummary, InvoicingError> {
    let Some(first) = clients.first() else {
        return Ok(MonthlySummary::default());
    };
    let tenants = tenants_to_invoice(first, &config.period, config.tenant).await?;
    tracing::info!(period = %config.period, tenants = tenants.len(), workers = clients.len(), dry_run = config.dry_run, "Monthly invoicing started.");
    let workers = clients.len();
    let reports = if workers == 1 {
        let client = &mut clients[0];
        vec![worker(client, &tenants, 0..tenants.len(), config, faults).await]
    } else {
        let tenants = &tenants;
        futures_util::future::join_all(clients.iter_mut().enumerate().map(
            |(w, client)| async move {
                let mut none = Faults::default();
                worker(
                    client,
                    tenants,
                    (w..tenants.len()).step_by(workers),
                    config,
                    &mut none,
                )
                .await
            },
        ))
        .await
    };
    let mut summary = MonthlySummary {
        tenants: tenants.len(),
        ..MonthlySummary::default()
    };
    let mut rows = Vec::new();
    let mut stopped = None;
    for report in reports {
        let r = report.summary;
        summary.created += r.created;
        summary.existing += r.existing;
        summary.resumed += r.resumed;
        summary.skipped += r.skipped;
        summary.failed += r.failed;
        summary.retryable += r.retryable;
        rows.extend(report.rows);
        stopped = stopped.or(report.stopped);
    }
    rows.sort_by_key(|(index, _)| *index);
    for (i, (_, text)) in rows.into_iter().enumerate() {
        // One header for the whole table: each tenant's rows start with their own.
        let body = if i == 0 {
            text.as_str()
        } else {
            text.split_once('\n').map_or("", |(_, rest)| rest)
        };
        table.push_str(body);
    }
    match stopped {
        Some(error) => Err(error),
        None => Ok(summary),
    }
}

/// Appends one tenant's would-be invoice to the dry-run table.
pub fn dry_run_rows(
    table: &mut String,
    tenant_id: Uuid,
    period: &BillingPeriod,
    rated: &RatedInvoice,
) {
    if table.is_empty() {
        let _ = writeln!(
            table,
            "{:<36}  {:<7}  {:<10}  {:>10}  {:>14}  {:>16}  DESCRIPTION",
            "TENANT", "PERIOD", "KIND", "QUANTITY", "UNIT PRICE", "AMOUNT"
        );
    }
    for line in &rated.lines {
        let _ = writeln!(
            table,
            "{tenant_id:<36}  {period:<7}  {:<10}  {:>10}  {:>14}  {:>16}  {}",
            line.kind.as_str(),
            line.quantity,
            line.unit_price.round_dp(6).normalize().to_string(),
            format_money(line.amount),
            line.description
        );
    }
    let _ = writeln!(
        table,
        "{tenant_id:<36}  {period:<7}  {:<10}  {:>10}  {:>14}  {:>16}",
        "TOTAL",
        "",
        "",
        format_money(rated.total)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrections_look_back_whole_months() {
        let period = BillingPeriod::parse("2026-03").unwrap();
        assert_eq!(
            corrections_since(&period, 3),
            BillingPeriod::parse("2025-12").unwrap().start()
        );
        assert_eq!(corrections_since(&period, 0), period.start());
    }

    #[test]
    fn faults_elsewhere_or_unset_do_not_stop() {
        let mut faults = Faults::new(None);
        faults.reached("finalized");
        let mut faults = Faults::new(Some(FaultPoint {
            name: "finalized".into(),
            nth: 2,
        }));
        faults.reached("draft-committed");
        faults.reached("finalized");
    }
}
