//! Billing gauges for the Billing Revenue dashboard, read from PostgreSQL.
//!
//! They live in the control API because it runs all the time: the invoicing job is a CronJob
//! whose pod is gone before any scrape. A refresher task re-reads them on an interval (one
//! query per gauge, all cheap aggregates), so a scrape never waits for the database and a
//! burst of scrapes costs no queries. Names are unprefixed and fixed: the Helm chart's
//! dashboards and alerts use them.
//!
//! - `billing_invoices{status}`: invoices by status (`finalized`, `paid`, …).
//! - `billing_invoiced_amount_minor{currency}`: total invoiced for the last closed UTC month.
//! - `billing_mrr_minor{currency}`: base fees of the subscriptions in force now.
//! - `billing_invoice_steps_failed{step}`: invoices whose delivery step last failed.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_postgres::GenericClient;

/// How often the gauges are re-read.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// `status` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// Invoice status.
    pub status: String,
}

/// `currency` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CurrencyLabel {
    /// ISO 4217 code.
    pub currency: String,
}

/// `step` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabel {
    /// Delivery step name.
    pub step: String,
}

/// The billing gauges.
#[derive(Debug, Clone, Default)]
pub struct BillingMetrics {
    /// `billing_invoices{status}`.
    pub invoices: Family<StatusLabel, Gauge>,
    /// `billing_invoiced_amount_minor{currency}`.
    pub invoiced_amount_minor: Family<CurrencyLabel, Gauge>,
    /// `billing_mrr_minor{currency}`.
    pub mrr_minor: Family<CurrencyLabel, Gauge>,
    /// `billing_invoice_steps_failed{step}`.
    pub steps_failed: Family<StepLabel, Gauge>,
}

/// Invoices by status (`draft`, `finalized`, `paid`, `payment_failed`, `uncollectible`, `void`).
const INVOICES_BY_STATUS: &str = "SELECT status, count(*)::bigint FROM invoices GROUP BY 1";

/// The last closed UTC month's invoices that were issued (not drafts, not voided by us).
const INVOICED_LAST_PERIOD: &str = "SELECT currency::text, sum(total_minor)::bigint FROM invoices \
     WHERE period_start = (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '1 month') \
                          AT TIME ZONE 'UTC' \
       AND status NOT IN ('draft', 'void') GROUP BY 1";

/// Base fees of the subscriptions in force now, by the plan's currency.
const MRR: &str = "SELECT p.pricing->>'currency', sum((p.pricing->>'base_fee_minor')::bigint)::bigint \
       FROM subscriptions s JOIN plans p ON p.id = s.plan_id \
      WHERE s.starts_at <= now() AND (s.ends_at IS NULL OR s.ends_at > now()) \
        AND p.pricing ? 'currency' GROUP BY 1";

/// Invoices whose delivery step's last attempt failed, by step.
const STEPS_FAILED: &str = "SELECT step, count(*)::bigint FROM invoice_steps \
                              WHERE status = 'failed' GROUP BY 1";

impl BillingMetrics {
    /// Registers the gauges on `registry` (unprefixed: the names are fixed).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "billing_invoices",
            "Invoices by status",
            metrics.invoices.clone(),
        );
        registry.register(
            "billing_invoiced_amount_minor",
            "Amount invoiced in the last closed UTC month, in minor units",
            metrics.invoiced_amount_minor.clone(),
        );
        registry.register(
            "billing_mrr_minor",
            "Monthly recurring revenue: base fees of the subscriptions in force, in minor units",
            metrics.mrr_minor.clone(),
        );
        registry.register(
            "billing_invoice_steps_failed",
            "Invoices whose delivery step last failed, by step",
            metrics.steps_failed.clone(),
        );
        metrics
    }

    /// Re-reads every gauge. A label that no longer has rows disappears.
    pub async fn refresh(&self, client: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
        let invoices = pairs(client, INVOICES_BY_STATUS).await?;
        let invoiced = pairs(client, INVOICED_LAST_PERIOD).await?;
        let mrr = pairs(client, MRR).await?;
        let failed = pairs(client, STEPS_FAILED).await?;
        // Swapped in only after every query succeeded, so a failed refresh keeps the old values.
        set(&self.invoices, invoices, |status| StatusLabel { status });
        set(&self.invoiced_amount_minor, invoiced, |currency| {
            CurrencyLabel { currency }
        });
        set(&self.mrr_minor, mrr, |currency| CurrencyLabel { currency });
        set(&self.steps_failed, failed, |step| StepLabel { step });
        Ok(())
    }
}

async fn pairs(
    client: &impl GenericClient,
    sql: &str,
) -> Result<Vec<(String, i64)>, tokio_postgres::Error> {
    Ok(client
        .query(sql, &[])
        .await?
        .iter()
        .filter_map(|row| {
            Some((
                row.get::<_, Option<String>>(0)?,
                row.get::<_, Option<i64>>(1)?,
            ))
        })
        .collect())
}

fn set<L>(family: &Family<L, Gauge>, values: Vec<(String, i64)>, label: impl Fn(String) -> L)
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    family.clear();
    for (key, value) in values {
        family.get_or_create(&label(key)).set(value);
    }
}

/// Refreshes `metrics` every [`REFRESH_INTERVAL`] until the process ends; a failed refresh
/// is logged and keeps the previous values.
pub fn spawn_refresher(metrics: Arc<crate::metrics::ApiMetrics>, pool: deadpool_postgres::Pool) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(REFRESH_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let result = match pool.get().await {
                Ok(client) => metrics
                    .billing
                    .refresh(&**client)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(error) = result {
                tracing::warn!(%error, "Billing metrics not refreshed; keeping the last values.");
            }
        }
    });
}
