//! Usage events: queued from the request path without waiting, produced to Kafka, spooled to
//! disk when the broker is unreachable.

pub mod spool;

pub use spool::{SpoolError, SpoolLimits, UsageSpool};
