//! Reading what [`crate::rating::rate_invoice`] needs from PostgreSQL: a tenant's subscription
//! slices of a period with their exact usage, and the earlier slices whose usage has grown since
//! they were invoiced. Shared by the monthly invoicing job and the control API's upcoming
//! invoice, so both rate the same inputs.
//!
//! Usage comes from the `usage_billable_units` SQL function (migration V3), exact whether or not
//! the hourly roll-up has caught up. A subscription is in force from its start until it ends or
//! a later-started one begins, as the proxy picks "the latest started that has not ended".

use time::OffsetDateTime;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::plan::Pricing;
use crate::rating::{
    BillingPeriod, CorrectionInput, RatedInvoice, RatingError, Slice, rate_invoice,
};

/// A row that cannot be rated, or the database failed.
#[derive(Debug, thiserror::Error)]
pub enum RatingInputError {
    /// The query failed.
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// The inputs could not be rated.
    #[error("rating: {0}")]
    Rating(#[from] RatingError),
    /// A plan's stored pricing is not valid pricing.
    #[error("plan {plan_id}: stored pricing is invalid: {message}")]
    BadPricing {
        /// The plan.
        plan_id: Uuid,
        /// Why.
        message: String,
    },
}

fn pricing(plan_id: Uuid, value: serde_json::Value) -> Result<Pricing, RatingInputError> {
    let pricing: Pricing =
        serde_json::from_value(value).map_err(|e| RatingInputError::BadPricing {
            plan_id,
            message: e.to_string(),
        })?;
    pricing
        .validate()
        .map_err(|e| RatingInputError::BadPricing {
            plan_id,
            message: e.to_string(),
        })?;
    Ok(pricing)
}

fn units(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// The tenant's subscription slices of `period`, oldest first, each with its billable units.
pub async fn load_slices(
    client: &impl GenericClient,
    tenant_id: Uuid,
    period: &BillingPeriod,
) -> Result<Vec<Slice>, RatingInputError> {
    let rows = client
        .query(
            "WITH effective AS ( \
                 SELECT s.id, s.plan_id, s.starts_at, \
                        least(coalesce(s.ends_at, 'infinity'), \
                              coalesce(lead(s.starts_at) OVER (ORDER BY s.starts_at, s.id), 'infinity')) AS ends_at \
                   FROM subscriptions s WHERE s.tenant_id = $1 \
             ), sliced AS ( \
                 SELECT e.id, e.plan_id, greatest(e.starts_at, $2) AS slice_start, \
                        least(e.ends_at, $3) AS slice_end \
                   FROM effective e WHERE e.starts_at < $3 AND e.ends_at > $2 \
             ) \
             SELECT x.id, x.plan_id, p.name, p.pricing, x.slice_start, x.slice_end, \
                    usage_billable_units($1, x.slice_start, x.slice_end) \
               FROM sliced x JOIN plans p ON p.id = x.plan_id \
              WHERE x.slice_end > x.slice_start \
              ORDER BY x.slice_start, x.id",
            &[&tenant_id, &period.start(), &period.end()],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let plan_id: Uuid = row.get(1);
            Ok(Slice {
                subscription_id: row.get(0),
                plan_id,
                plan_name: row.get(2),
                pricing: pricing(plan_id, row.get(3))?,
                start: row.get(4),
                end: row.get(5),
                units: units(row.get(6)),
            })
        })
        .collect()
}

/// Slices of the tenant's non-void invoices for periods in `[since, before)` whose measured
/// usage now exceeds what was billed for them (originals plus corrections on non-void invoices).
pub async fn load_corrections(
    client: &impl GenericClient,
    tenant_id: Uuid,
    since: OffsetDateTime,
    before: OffsetDateTime,
) -> Result<Vec<CorrectionInput>, RatingInputError> {
    let rows = client
        .query(
            "WITH billed AS ( \
                 SELECT i.id AS invoice_id, i.period_start, u.subscription_id, u.plan_id, \
                        u.plan_name, u.pricing, u.included_units, u.slice_start, u.slice_end, \
                        u.units + coalesce(c.units, 0) AS billed_units, \
                        u.usage_minor + coalesce(c.usage_minor, 0) AS billed_minor \
                   FROM invoices i \
                   JOIN invoice_usage u ON u.invoice_id = i.id AND u.corrects_invoice_id IS NULL \
                   LEFT JOIN LATERAL ( \
                        SELECT sum(cu.units)::int8 AS units, sum(cu.usage_minor)::int8 AS usage_minor \
                          FROM invoice_usage cu JOIN invoices ci ON ci.id = cu.invoice_id \
                         WHERE cu.corrects_invoice_id = i.id \
                           AND cu.subscription_id = u.subscription_id AND ci.status <> 'void') c ON true \
                  WHERE i.tenant_id = $1 AND i.status <> 'void' \
                    AND i.period_start >= $2 AND i.period_start < $3 \
             ) \
             SELECT invoice_id, period_start, subscription_id, plan_id, plan_name, pricing, \
                    included_units, slice_start, slice_end, billed_units, billed_minor, measured \
               FROM (SELECT b.*, usage_billable_units($1, b.slice_start, b.slice_end) AS measured \
                       FROM billed b) m \
              WHERE measured > billed_units \
              ORDER BY period_start, slice_start, subscription_id",
            &[&tenant_id, &since, &before],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let plan_id: Uuid = row.get(3);
            let period_start: OffsetDateTime = row.get(1);
            let period = BillingPeriod::containing(period_start).map_err(|e| {
                RatingInputError::BadPricing {
                    plan_id,
                    message: e.to_string(),
                }
            })?;
            Ok(CorrectionInput {
                invoice_id: row.get(0),
                period,
                slice: Slice {
                    subscription_id: row.get(2),
                    plan_id,
                    plan_name: row.get(4),
                    pricing: pricing(plan_id, row.get(5))?,
                    start: row.get(7),
                    end: row.get(8),
                    units: units(row.get(11)),
                },
                included_units: units(row.get(6)),
                billed_units: units(row.get(9)),
                billed_usage_minor: row.get(10),
            })
        })
        .collect()
}

/// Rates the tenant's `period` as it stands now: its slices, plus corrections of its invoices for
/// periods from `corrections_since` up to `period`. `None` without a subscription in the period.
pub async fn rate_tenant_period(
    client: &impl GenericClient,
    tenant_id: Uuid,
    period: &BillingPeriod,
    corrections_since: OffsetDateTime,
) -> Result<Option<RatedInvoice>, RatingInputError> {
    let slices = load_slices(client, tenant_id, period).await?;
    if slices.is_empty() {
        return Ok(None);
    }
    let corrections =
        load_corrections(client, tenant_id, corrections_since, period.start()).await?;
    Ok(Some(rate_invoice(period, &slices, &corrections)?))
}
