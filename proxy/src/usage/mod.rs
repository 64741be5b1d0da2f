//! Usage events: one per request that reached authentication, queued from the request path
//! without waiting, produced to Kafka by a background service, spooled to disk when the broker
//! is unreachable or the queue is full, and replayed in order once it is back.
//!
//! Construct a [`UsagePipeline`] at start-up, hand its [`UsageSink`] to the gateway (which
//! calls [`UsageSink::submit`] in the `logging` phase), register [`UsageMetrics`] with the
//! metrics registry, and call [`UsagePipeline::shutdown`] after the server stopped serving.

mod config;
mod metrics;
mod pipeline;
pub mod spool;
mod spool_writer;

pub use config::{UsageConfig, UsageConfigError};
pub use metrics::{DropLabel, DropReason, UsageMetrics};
pub use pipeline::{Submitted, UsageError, UsagePipeline, UsageSink};
pub use spool::{SpoolError, SpoolLimits, UsageSpool};
