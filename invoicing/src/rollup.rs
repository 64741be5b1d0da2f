//! The hourly roll-up: `usage_hour` recomputed from `usage_minute` for closed hours, as an
//! idempotent upsert, so late events land in their hour. Latency histograms are summed slot by
//! slot like the counts (migration V7), so an hour's p95 is as exact as its minutes'.
//!
//! Which hours: every closed hour of the lookback window (48 h by default, a safety net) and
//! every closed hour marked dirty, whatever its age: metering's writes to `usage_minute` mark
//! their hours in `usage_hour_dirty` (a trigger of migration V3), so an event that arrives days
//! late is still rolled into its hour. Each hour is one transaction that first deletes the
//! mark, then recomputes the hour in a later statement (a fresh snapshot under READ COMMITTED):
//! a metering batch that commits meanwhile either waited for the mark's lock and is seen, or
//! marks the hour again. Readers can therefore trust `usage_hour` for every hour without a mark.

use time::OffsetDateTime;
use tokio_postgres::Client;

use crate::InvoicingError;

/// What one roll-up run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupReport {
    /// Hours recomputed.
    pub hours: usize,
    /// Of those, hours that were marked dirty.
    pub dirty_hours: usize,
    /// `usage_hour` rows inserted or changed.
    pub rows_changed: u64,
}

/// The start of the hour holding `at` (UTC).
pub fn hour_floor(at: OffsetDateTime) -> OffsetDateTime {
    let secs = at.unix_timestamp();
    OffsetDateTime::from_unix_timestamp(secs - secs.rem_euclid(3600)).unwrap_or(at)
}

/// Closed hours to recompute at `now`: the lookback window's and every dirty one, oldest first,
/// with whether each is dirty.
pub async fn hours_to_roll_up(
    client: &Client,
    now: OffsetDateTime,
    lookback_hours: u32,
) -> Result<Vec<(OffsetDateTime, bool)>, InvoicingError> {
    let current = hour_floor(now);
    let first = current - time::Duration::hours(i64::from(lookback_hours));
    let rows = client
        .query(
            "SELECT hour, bool_or(dirty) FROM ( \
                 SELECT generate_series($1::timestamptz, $2::timestamptz - interval '1 hour', \
                                        interval '1 hour') AS hour, false AS dirty \
                 UNION ALL \
                 SELECT hour, true FROM usage_hour_dirty WHERE hour < $2 \
             ) h GROUP BY hour ORDER BY hour",
            &[&first, &current],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Recomputes one hour in one transaction; returns the rows inserted or changed.
pub async fn roll_up_hour(
    client: &mut Client,
    hour: OffsetDateTime,
) -> Result<u64, InvoicingError> {
    let tx = client.transaction().await?;
    tx.execute("DELETE FROM usage_hour_dirty WHERE hour = $1", &[&hour])
        .await?;
    let changed = tx
        .execute(
            "INSERT INTO usage_hour AS h (hour, tenant_id, key_id, route_id, status_class, \
                                          request_count, billable_count, request_bytes, \
                                          response_bytes, latency_us_sum, latency_histogram) \
             SELECT $1::timestamptz, tenant_id, key_id, route_id, status_class, \
                    sum(request_count)::int8, sum(billable_count)::int8, sum(request_bytes)::int8, \
                    sum(response_bytes)::int8, sum(latency_us_sum)::int8, \
                    tollgate_latency_histogram_sum(latency_histogram) \
               FROM usage_minute \
              WHERE minute >= $1::timestamptz AND minute < $1::timestamptz + interval '1 hour' \
              GROUP BY tenant_id, key_id, route_id, status_class \
              ORDER BY tenant_id, key_id, route_id, status_class \
             ON CONFLICT ON CONSTRAINT usage_hour_key DO UPDATE SET \
                request_count = EXCLUDED.request_count, billable_count = EXCLUDED.billable_count, \
                request_bytes = EXCLUDED.request_bytes, response_bytes = EXCLUDED.response_bytes, \
                latency_us_sum = EXCLUDED.latency_us_sum, \
                latency_histogram = EXCLUDED.latency_histogram \
              WHERE (h.request_count, h.billable_count, h.request_bytes, h.response_bytes, \
                     h.latency_us_sum, h.latency_histogram) IS DISTINCT FROM \
                    (EXCLUDED.request_count, EXCLUDED.billable_count, EXCLUDED.request_bytes, \
                     EXCLUDED.response_bytes, EXCLUDED.latency_us_sum, \
                     EXCLUDED.latency_histogram)",
            &[&hour],
        )
        .await?;
    tx.commit().await?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn hours_are_utc_hours() {
        assert_eq!(
            hour_floor(datetime!(2026-11-27 10:59:59.9 UTC)),
            datetime!(2026-11-27 10:00 UTC)
        );
        assert_eq!(
            hour_floor(datetime!(2026-11-27 10:00 +05:30)),
            datetime!(2026-11-27 04:00 UTC)
        );
    }
}
