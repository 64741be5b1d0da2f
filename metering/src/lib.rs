//! Metering: usage events from Kafka into PostgreSQL exactly once, with per-minute roll-ups
//! and a dead-letter topic (`tollgate-metering`).
//!
//! The [`Aggregator`] consumes the `usage-events` topic in batches; each batch is one
//! PostgreSQL transaction (events deduplicated on `(event_id, event_time)`, `usage_minute`
//! updated from exactly the inserted rows) followed by the offset commit. Records that do not
//! decode go to the dead-letter topic with the reason and their origin in headers.

pub mod admin;
pub mod assignment;
pub mod config;
pub mod metrics;
pub mod partitions;
pub mod service;
pub mod store;

pub use admin::Health;
pub use assignment::PartitionAssignment;
pub use config::MeteringConfig;
pub use metrics::Metrics;
pub use service::{Aggregator, Exit, HookAction, Hooks, MeteringError};
pub use store::{StoredBatch, UsageStore};
