//! Storage upkeep for `usage_events`: daily partitions created ahead and dropped after the
//! retention period, or, where the TimescaleDB extension is installed, a hypertable with
//! compression and retention policies that do the same work.
//!
//! CI has no TimescaleDB (it is not packaged for Debian 12); that path is tested on the SQL
//! it generates. Upkeep runs under an advisory lock so replicas never race each other.

use time::{Date, Duration as Days, OffsetDateTime};
use tokio_postgres::Client;

/// Advisory lock held during upkeep ("meterpar").
const UPKEEP_LOCK: i64 = 0x6d65_7465_7270_6172;

/// How `usage_events` is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageMode {
    /// Native daily range partitions managed here.
    NativePartitions,
    /// A TimescaleDB hypertable with policies.
    Timescale,
}

/// What one upkeep run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpkeepReport {
    /// Partitions created.
    pub created: Vec<String>,
    /// Partitions dropped as older than the retention period.
    pub dropped: Vec<String>,
}

/// `usage_events_pYYYYMMDD`.
pub fn partition_name(day: Date) -> String {
    format!(
        "usage_events_p{:04}{:02}{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

fn parse_partition_name(name: &str) -> Option<Date> {
    let digits = name.strip_prefix("usage_events_p")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i32 = digits[..4].parse().ok()?;
    let month: u8 = digits[4..6].parse().ok()?;
    let day: u8 = digits[6..].parse().ok()?;
    Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()
}

/// Statements that create the partition for `day`, moving any of its rows out of the default
/// partition first (PostgreSQL refuses to attach a range the default partition holds rows of).
pub fn create_partition_sql(day: Date) -> Vec<String> {
    let name = partition_name(day);
    let (from, to) = (day, day.next_day().unwrap_or(day));
    vec![
        format!("CREATE TABLE {name} (LIKE usage_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"),
        format!(
            "WITH moved AS (DELETE FROM usage_events_default \
               WHERE event_time >= '{from}T00:00:00Z' AND event_time < '{to}T00:00:00Z' RETURNING *) \
             INSERT INTO {name} SELECT * FROM moved"
        ),
        format!(
            "ALTER TABLE usage_events ATTACH PARTITION {name} \
             FOR VALUES FROM ('{from}T00:00:00Z') TO ('{to}T00:00:00Z')"
        ),
    ]
}

/// Statements that turn the native partitioned `usage_events` into a TimescaleDB hypertable
/// with 1-day chunks, compression after `compress_after_days` and retention of
/// `retention_days`, keeping every stored row. Run once, in one transaction.
pub fn timescale_conversion_sql(retention_days: u32, compress_after_days: u32) -> Vec<String> {
    vec![
        "ALTER TABLE usage_events RENAME TO usage_events_native".into(),
        "CREATE TABLE usage_events (LIKE usage_events_native INCLUDING DEFAULTS INCLUDING CONSTRAINTS)".into(),
        "ALTER TABLE usage_events ADD PRIMARY KEY (event_id, event_time)".into(),
        "SELECT create_hypertable('usage_events', by_range('event_time', INTERVAL '1 day'))".into(),
        "CREATE INDEX usage_events_tenant_time_ht_idx ON usage_events (tenant_id, event_time)".into(),
        "INSERT INTO usage_events SELECT * FROM usage_events_native".into(),
        "DROP TABLE usage_events_native".into(),
        "ALTER TABLE usage_events SET (timescaledb.compress, \
         timescaledb.compress_segmentby = 'tenant_id', timescaledb.compress_orderby = 'event_time DESC')"
            .into(),
        format!(
            "SELECT add_compression_policy('usage_events', INTERVAL '{compress_after_days} days', if_not_exists => true)"
        ),
        format!(
            "SELECT add_retention_policy('usage_events', INTERVAL '{retention_days} days', if_not_exists => true)"
        ),
    ]
}

/// Which storage the database offers, converting to a hypertable the first time TimescaleDB
/// is found installed.
pub async fn prepare_storage(
    client: &mut Client,
    retention_days: u32,
    compress_after_days: u32,
) -> Result<StorageMode, tokio_postgres::Error> {
    let timescale = client
        .query_opt(
            "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'",
            &[],
        )
        .await?
        .is_some();
    if !timescale {
        return Ok(StorageMode::NativePartitions);
    }
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&UPKEEP_LOCK])
        .await?;
    let is_hypertable = tx
        .query_opt(
            "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'usage_events'",
            &[],
        )
        .await?
        .is_some();
    if !is_hypertable {
        for statement in timescale_conversion_sql(retention_days, compress_after_days) {
            tx.batch_execute(&statement).await?;
        }
        tracing::info!(
            retention_days,
            compress_after_days,
            "usage_events converted to a TimescaleDB hypertable."
        );
    }
    tx.commit().await?;
    Ok(StorageMode::Timescale)
}

/// Creates the partitions for yesterday through `ahead_days` after `today` and drops those
/// wholly older than `retention_days`.
pub async fn upkeep(
    client: &mut Client,
    today: Date,
    ahead_days: u32,
    retention_days: u32,
) -> Result<UpkeepReport, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&UPKEEP_LOCK])
        .await?;
    let existing: Vec<String> = tx
        .query(
            "SELECT c.relname FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'usage_events'::regclass",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();

    let mut report = UpkeepReport::default();
    let first = today - Days::days(1);
    for offset in 0..=i64::from(ahead_days) + 1 {
        let day = first + Days::days(offset);
        let name = partition_name(day);
        if !existing.contains(&name) {
            for statement in create_partition_sql(day) {
                tx.batch_execute(&statement).await?;
            }
            report.created.push(name);
        }
    }

    let cutoff = today - Days::days(i64::from(retention_days));
    for name in &existing {
        if let Some(day) = parse_partition_name(name)
            && day.next_day().is_some_and(|end| end <= cutoff)
        {
            tx.batch_execute(&format!("DROP TABLE {name}")).await?;
            report.dropped.push(name.clone());
        }
    }
    let cutoff_time = cutoff.midnight().assume_utc();
    tx.execute(
        "DELETE FROM usage_events_default WHERE event_time < $1",
        &[&cutoff_time],
    )
    .await?;
    tx.commit().await?;
    Ok(report)
}

/// Today in UTC.
pub fn today_utc() -> Date {
    OffsetDateTime::now_utc().date()
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn partition_names_round_trip() {
        let day = date!(2026 - 02 - 03);
        assert_eq!(partition_name(day), "usage_events_p20260203");
        assert_eq!(parse_partition_name("usage_events_p20260203"), Some(day));
        assert_eq!(parse_partition_name("usage_events_default"), None);
        assert_eq!(parse_partition_name("usage_events_p20261332"), None);
    }

    #[test]
    fn partition_sql_covers_exactly_one_utc_day_and_rescues_default_rows() {
        let sql = create_partition_sql(date!(2026 - 12 - 31)).join(";\n");
        assert!(sql.contains("CREATE TABLE usage_events_p20261231"));
        assert!(sql.contains("DELETE FROM usage_events_default"));
        assert!(
            sql.contains("FOR VALUES FROM ('2026-12-31T00:00:00Z') TO ('2027-01-01T00:00:00Z')")
        );
    }

    #[test]
    fn timescale_sql_builds_a_daily_hypertable_with_policies_and_keeps_rows() {
        let sql = timescale_conversion_sql(400, 7);
        let all = sql.join(";\n");
        assert!(all.contains(
            "create_hypertable('usage_events', by_range('event_time', INTERVAL '1 day'))"
        ));
        assert!(all.contains("add_compression_policy('usage_events', INTERVAL '7 days'"));
        assert!(all.contains("add_retention_policy('usage_events', INTERVAL '400 days'"));
        assert!(all.contains("timescaledb.compress_segmentby = 'tenant_id'"));
        // Rows are copied before the old table goes, and the dedup key survives.
        let copy = sql
            .iter()
            .position(|s| s.starts_with("INSERT INTO usage_events SELECT"))
            .unwrap();
        let drop = sql
            .iter()
            .position(|s| s.starts_with("DROP TABLE usage_events_native"))
            .unwrap();
        assert!(copy < drop);
        assert!(all.contains("ADD PRIMARY KEY (event_id, event_time)"));
    }
}
