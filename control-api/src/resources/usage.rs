//! A tenant's usage: a gap-filled time series for charts, and the current billing period
//! against the plan's quota. Hour and day buckets read `usage_hour` for every hour the hourly
//! roll-up has closed and `usage_minute` for the hours still marked dirty (the current hour,
//! late events): exactly what `usage_minute` alone gives, at a sixtieth of the rows. Minute
//! buckets and the current period read `usage_minute`. Buckets are UTC, so a day is always
//! 86 400 s and bucket bounds can be computed here.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Transaction;
use tollgate_core::latency::LatencyHistogram;
use tollgate_core::plan::{Quota, QuotaCap};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::resources::plans;
use crate::resources::usage_range::{Granularity, UsageQuery};
use crate::state::AppState;

/// One bucket of the usage series.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageBucket {
    /// Start of the bucket (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// Requests.
    pub requests: i64,
    /// Requests counted toward the quota and the invoice.
    pub billable: i64,
    /// Request bytes.
    pub request_bytes: i64,
    /// Response bytes.
    pub response_bytes: i64,
    /// Mean total latency in µs, rounded; absent when there were no requests.
    pub average_latency_us: Option<i64>,
    /// 95th percentile of total latency in µs, estimated from the latency histogram (see
    /// [`UsageSeries::p95_latency_us`]); absent without requests that carry a distribution.
    pub p95_latency_us: Option<i64>,
}

/// A usage series: every bucket of `[from, to)`, zero-filled.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageSeries {
    /// Bucket width.
    pub granularity: Granularity,
    /// Start of the first bucket.
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    /// End of the last bucket (exclusive).
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    /// The buckets, oldest first.
    pub buckets: Vec<UsageBucket>,
    /// 95th percentile of total latency over the whole range in µs: an estimate, interpolated
    /// linearly inside the fixed histogram bucket that holds it (bounds 1, 2, 3, 5 … 600 000 ms).
    /// The true p95 is at least that bucket's lower edge and below `p95_latency_below_us`, which
    /// is the bound to rely on. Absent without requests that carry a distribution (usage stored
    /// before latency histograms existed has none).
    pub p95_latency_us: Option<i64>,
    /// Upper edge in µs of the histogram bucket holding the p95: the true p95 is below it.
    /// Absent without requests, or when the p95 lies beyond the last bound (600 s).
    pub p95_latency_below_us: Option<i64>,
    /// Requests the latency percentiles are computed from.
    pub latency_samples: i64,
}

/// A histogram read from the database; a malformed one is our fault (the schema checks its shape).
fn histogram(stored: Option<Vec<i64>>) -> Result<LatencyHistogram, ApiError> {
    stored.map_or(Ok(LatencyHistogram::default()), |counts| {
        LatencyHistogram::from_stored(&counts).map_err(|e| ApiError::Internal(e.to_string()))
    })
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Buckets of `[$2, $3)` of width `$4` s, gap-filled, from `usage`; shared tail of both queries.
macro_rules! series_sql {
    ($usage:expr) => {
        concat!(
            "WITH buckets AS ( \
                 SELECT generate_series($2::timestamptz, $3::timestamptz - $4::int8 * interval '1 second', \
                                        $4::int8 * interval '1 second') AS start \
             ), src AS (",
            $usage,
            "), usage AS ( \
                 SELECT date_trunc($5::text, at, 'UTC') AS start, \
                        sum(request_count) AS requests, sum(billable_count) AS billable, \
                        sum(request_bytes) AS request_bytes, sum(response_bytes) AS response_bytes, \
                        sum(latency_us_sum) AS latency_us, \
                        tollgate_latency_histogram_sum(latency_histogram) AS histogram \
                   FROM src GROUP BY 1 \
             ) \
             SELECT b.start, coalesce(u.requests, 0)::int8, coalesce(u.billable, 0)::int8, \
                    coalesce(u.request_bytes, 0)::int8, coalesce(u.response_bytes, 0)::int8, \
                    CASE WHEN u.requests > 0 THEN round(u.latency_us / u.requests)::int8 END, \
                    u.histogram \
               FROM buckets b LEFT JOIN usage u ON u.start = b.start \
              ORDER BY b.start"
        )
    };
}

/// Minute buckets: `usage_minute` alone.
const SERIES_FROM_MINUTES: &str = series_sql!(
    "SELECT minute AS at, request_count, billable_count, request_bytes, response_bytes, latency_us_sum, \
            latency_histogram \
       FROM usage_minute \
      WHERE tenant_id = $1 AND minute >= $2 AND minute < $3 \
        AND ($6::text IS NULL OR key_id = $6) AND ($7::uuid IS NULL OR route_id = $7) \
        AND ($8::int2 IS NULL OR status_class = $8)"
);

/// Hour and day buckets (whole hours): `usage_hour` for clean hours, `usage_minute` for dirty ones.
const SERIES_FROM_HOURS: &str = series_sql!(
    "SELECT h.hour AS at, h.request_count, h.billable_count, h.request_bytes, h.response_bytes, \
            h.latency_us_sum, h.latency_histogram \
       FROM usage_hour h \
      WHERE h.tenant_id = $1 AND h.hour >= $2 AND h.hour < $3 \
        AND NOT EXISTS (SELECT 1 FROM usage_hour_dirty d WHERE d.hour = h.hour) \
        AND ($6::text IS NULL OR h.key_id = $6) AND ($7::uuid IS NULL OR h.route_id = $7) \
        AND ($8::int2 IS NULL OR h.status_class = $8) \
     UNION ALL \
     SELECT m.minute, m.request_count, m.billable_count, m.request_bytes, m.response_bytes, \
            m.latency_us_sum, m.latency_histogram \
       FROM usage_hour_dirty d \
       JOIN usage_minute m ON m.tenant_id = $1 AND m.minute >= d.hour \
                          AND m.minute < d.hour + interval '1 hour' \
      WHERE d.hour >= $2 AND d.hour < $3 \
        AND ($6::text IS NULL OR m.key_id = $6) AND ($7::uuid IS NULL OR m.route_id = $7) \
        AND ($8::int2 IS NULL OR m.status_class = $8)"
);

/// 404 unless the tenant exists (platform admins may name any id).
async fn require_tenant(tx: &Transaction<'_>, tenant_id: Uuid) -> Result<(), ApiError> {
    tx.query_opt("SELECT 1 FROM tenants WHERE id = $1", &[&tenant_id])
        .await?
        .ok_or(ApiError::NotFound)
        .map(|_| ())
}

/// A tenant's usage in buckets of a minute, an hour or a UTC day, gap-filled with zeros.
#[utoipa::path(get, operation_id = "getUsageSeries", path = "/api/v1/tenants/{tenant_id}/usage", tag = "usage",
    security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id"), UsageQuery),
    responses((status = 200, body = UsageSeries),
        (status = 422, description = "A bad parameter, or too many buckets; names the field", body = ErrorBody),
        (status = "4XX", body = ErrorBody)))]
pub async fn series(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    query: web::Query<UsageQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = path.into_inner();
    principal.require_reader_of(tenant_id)?;
    let request = query.validate(OffsetDateTime::now_utc())?;
    let mut client = state.pool.get().await?;
    // One snapshot: the dirty marks, usage_hour and usage_minute agree.
    let tx = client
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await?;
    require_tenant(&tx, tenant_id).await?;
    let sql = if request.granularity == Granularity::Minute {
        SERIES_FROM_MINUTES
    } else {
        SERIES_FROM_HOURS
    };
    let rows = tx
        .query(
            sql,
            &[
                &tenant_id,
                &request.from,
                &request.to,
                &request.granularity.seconds(),
                &request.granularity.as_str(),
                &request.key_id,
                &request.route_id,
                &request.status_class,
            ],
        )
        .await?;
    tx.commit().await?;
    let mut range = LatencyHistogram::default();
    let mut buckets = Vec::with_capacity(rows.len());
    for row in &rows {
        let latencies = histogram(row.get(6))?;
        range.merge(&latencies);
        buckets.push(UsageBucket {
            start: row.get(0),
            requests: row.get(1),
            billable: row.get(2),
            request_bytes: row.get(3),
            response_bytes: row.get(4),
            average_latency_us: row.get(5),
            p95_latency_us: latencies.percentile(95).map(|p| signed(p.estimate_us)),
        });
    }
    let p95 = range.percentile(95);
    Ok(HttpResponse::Ok().json(UsageSeries {
        granularity: request.granularity,
        from: request.from,
        to: request.to,
        buckets,
        p95_latency_us: p95.map(|p| signed(p.estimate_us)),
        p95_latency_below_us: p95.and_then(|p| p.below_us).map(signed),
        latency_samples: signed(range.total()),
    }))
}

/// The plan behind the current period.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PeriodPlan {
    /// Plan id.
    pub id: Uuid,
    /// Plan name.
    pub name: String,
    /// Units the base fee covers before usage is priced.
    pub included_units: u64,
}

/// The monthly quota and how much of it is used.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PeriodQuota {
    /// Requests included per month.
    pub included_requests: i64,
    /// `hard`: refused beyond the quota; `soft`: served and billed as overage.
    #[schema(value_type = String)]
    pub cap: QuotaCap,
    /// Requests left this month; never negative.
    pub remaining: i64,
    /// Billable requests beyond the quota (soft caps only, in practice).
    pub overage: i64,
    /// Whole percent of the quota used, rounded down; above 100 past a soft cap.
    pub percent_used: i64,
}

/// The current UTC calendar month's usage against the active plan.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CurrentPeriod {
    /// First instant of the month (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub period_start: OffsetDateTime,
    /// First instant of the next month (exclusive).
    #[serde(with = "time::serde::rfc3339")]
    pub period_end: OffsetDateTime,
    /// Billable requests so far this month.
    pub billable_requests: i64,
    /// The active subscription's plan; null without a subscription.
    pub plan: Option<PeriodPlan>,
    /// The plan's quota; null without a subscription or for an unlimited plan.
    pub quota: Option<PeriodQuota>,
}

fn period_quota(quota: Quota, used: i64) -> PeriodQuota {
    let included = i64::try_from(quota.included_requests).unwrap_or(i64::MAX);
    let percent = i128::from(used) * 100 / i128::from(included.max(1));
    PeriodQuota {
        included_requests: included,
        cap: quota.cap,
        remaining: included.saturating_sub(used).max(0),
        overage: used.saturating_sub(included).max(0),
        percent_used: i64::try_from(percent).unwrap_or(i64::MAX),
    }
}

/// The current UTC calendar month: billable requests so far, the plan and its quota.
#[utoipa::path(get, operation_id = "getCurrentUsage", path = "/api/v1/tenants/{tenant_id}/usage/current", tag = "usage",
    security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "Tenant id")),
    responses((status = 200, body = CurrentPeriod), (status = "4XX", body = ErrorBody)))]
pub async fn current(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = path.into_inner();
    principal.require_reader_of(tenant_id)?;
    let mut client = state.pool.get().await?;
    // One snapshot, one now(): the period, the usage and the plan agree.
    let tx = client.build_transaction().read_only(true).start().await?;
    require_tenant(&tx, tenant_id).await?;
    let period = tx
        .query_one(
            "WITH p AS (SELECT date_trunc('month', now() AT TIME ZONE 'UTC') AS start) \
             SELECT p.start AT TIME ZONE 'UTC', (p.start + interval '1 month') AT TIME ZONE 'UTC', \
                    (SELECT coalesce(sum(billable_count), 0)::int8 FROM usage_minute \
                      WHERE tenant_id = $1 AND minute >= p.start AT TIME ZONE 'UTC' \
                        AND minute < (p.start + interval '1 month') AT TIME ZONE 'UTC') \
               FROM p",
            &[&tenant_id],
        )
        .await?;
    // The subscription in force now, as the proxy picks it.
    let plan_row = tx
        .query_opt(
            &format!(
                "SELECT {} FROM plans WHERE id = ( \
                   SELECT plan_id FROM current_subscriptions WHERE tenant_id = $1)",
                plans::COLUMNS
            ),
            &[&tenant_id],
        )
        .await?;
    tx.commit().await?;
    let used: i64 = period.get(2);
    let plan = plan_row.as_ref().map(plans::view).transpose()?;
    Ok(HttpResponse::Ok().json(CurrentPeriod {
        period_start: period.get(0),
        period_end: period.get(1),
        billable_requests: used,
        quota: plan
            .as_ref()
            .and_then(|p| p.quota)
            .map(|q| period_quota(q, used)),
        plan: plan.map(|p| PeriodPlan {
            id: p.id,
            name: p.name,
            included_units: p.pricing.included_units,
        }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_use_is_integer_arithmetic() {
        let quota = |n| Quota {
            included_requests: n,
            cap: QuotaCap::Soft,
        };
        let q = period_quota(quota(1000), 333);
        assert_eq!((q.remaining, q.overage, q.percent_used), (667, 0, 33));
        let q = period_quota(quota(1000), 1500);
        assert_eq!((q.remaining, q.overage, q.percent_used), (0, 500, 150));
        let q = period_quota(quota(u64::MAX), i64::MAX);
        assert_eq!(q.percent_used, 100);
    }
}
