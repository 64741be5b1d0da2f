//! The limiter's clocks: a process-wide monotonic clock for rates and the UTC month for quotas.

use std::sync::OnceLock;
use std::time::Instant;

/// Nanoseconds on a process-wide monotonic clock.
pub fn monotonic_nanos() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// `year × 12 + month − 1` of a UTC time: the quota period.
pub(super) fn current_month(now: time::OffsetDateTime) -> u32 {
    let year = u32::try_from(now.year()).unwrap_or(0);
    year * 12 + u32::from(u8::from(now.month())) - 1
}

/// Seconds from `now` to the start of the next UTC month: when quotas reset.
pub fn seconds_until_next_month(now: time::OffsetDateTime) -> u64 {
    let (year, month) = match now.month() {
        time::Month::December => (now.year() + 1, time::Month::January),
        month => (now.year(), month.next()),
    };
    let Ok(start) = time::Date::from_calendar_date(year, month, 1) else {
        return 0;
    };
    let next = start.midnight().assume_utc();
    u64::try_from((next - now).whole_seconds()).unwrap_or(0)
}
