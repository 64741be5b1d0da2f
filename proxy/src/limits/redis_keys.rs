//! What the node and Redis agree on: key names, the number format of times, and how long a
//! quota counter outlives its month. Shared by the delayed-sync and the strict scripts.

use tollgate_core::TenantId;

/// Quota counters outlive their month by a few days so late flushes still land.
pub(super) const QUOTA_TTL_SECONDS: u64 = 35 * 24 * 3600;

pub(super) fn rate_key(prefix: &str, tenant: TenantId) -> String {
    format!("{prefix}rate:{tenant}")
}

pub(super) fn quota_key(prefix: &str, tenant: TenantId, month: u32) -> String {
    format!(
        "{prefix}quota:{tenant}:{:04}-{:02}",
        month / 12,
        month % 12 + 1
    )
}

/// Nanoseconds as a decimal number of microseconds, without floating point.
pub(super) fn micros(nanos: u64) -> String {
    format!("{}.{:03}", nanos / 1000, nanos % 1000)
}
