//! Prometheus metrics of the metering pipeline. Labels are bounded: a dead-letter reason is
//! one of a few codes and a partition number is bounded by the topic's partition count.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tollgate_core::metrics_exposition::{self, Exposition};

/// Dead-letter reason label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Stable reason code.
    pub reason: &'static str,
}

/// Partition label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    /// Partition number.
    pub partition: i32,
}

/// Every metric the service exports, and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// Events stored.
    pub events_inserted: Counter,
    /// Events skipped as already stored.
    pub events_duplicate: Counter,
    /// Records sent to the dead-letter topic, by reason.
    pub dead_lettered: Family<ReasonLabel, Counter>,
    /// Batches committed.
    pub batches: Counter,
    /// Records per batch.
    pub batch_records: Histogram,
    /// Time from a batch's first record to its offset commit.
    pub batch_duration_seconds: Histogram,
    /// Failed PostgreSQL writes (each retried).
    pub db_errors: Counter,
    /// Failed offset commits (the records are re-read and deduplicated).
    pub commit_failures: Counter,
    /// Records dropped because their partition was revoked before commit.
    pub revoked_records: Counter,
    /// Consumer lag by partition, from librdkafka statistics.
    pub consumer_lag: Family<PartitionLabel, Gauge>,
    /// Partitions assigned to this consumer now.
    pub assigned_partitions: Gauge,
    /// Partitions of the usage topic (from metadata).
    pub topic_partitions: Gauge,
}

impl Metrics {
    /// Registers every metric under the `metering_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("metering");
        let metrics = Self {
            events_inserted: Counter::default(),
            events_duplicate: Counter::default(),
            dead_lettered: Family::default(),
            batches: Counter::default(),
            batch_records: Histogram::new(exponential_buckets(1.0, 4.0, 9)),
            batch_duration_seconds: Histogram::new(exponential_buckets(0.001, 4.0, 10)),
            db_errors: Counter::default(),
            commit_failures: Counter::default(),
            revoked_records: Counter::default(),
            consumer_lag: Family::default(),
            assigned_partitions: Gauge::default(),
            topic_partitions: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events_inserted",
            "Usage events stored",
            metrics.events_inserted.clone(),
        );
        registry.register(
            "events_duplicate",
            "Usage events skipped because they were already stored",
            metrics.events_duplicate.clone(),
        );
        registry.register(
            "dead_lettered",
            "Records sent to the dead-letter topic",
            metrics.dead_lettered.clone(),
        );
        registry.register("batches", "Batches committed", metrics.batches.clone());
        registry.register(
            "batch_records",
            "Records per batch",
            metrics.batch_records.clone(),
        );
        registry.register(
            "batch_duration_seconds",
            "Time from a batch's first record to its offset commit",
            metrics.batch_duration_seconds.clone(),
        );
        registry.register(
            "db_errors",
            "Failed PostgreSQL batch writes",
            metrics.db_errors.clone(),
        );
        registry.register(
            "commit_failures",
            "Failed Kafka offset commits",
            metrics.commit_failures.clone(),
        );
        registry.register(
            "revoked_records",
            "Records dropped before commit because their partition was revoked",
            metrics.revoked_records.clone(),
        );
        registry.register(
            "consumer_lag",
            "Records behind the partition's high watermark",
            metrics.consumer_lag.clone(),
        );
        registry.register(
            "assigned_partitions",
            "Partitions of the usage topic assigned to this consumer",
            metrics.assigned_partitions.clone(),
        );
        registry.register(
            "topic_partitions",
            "Partitions of the usage topic",
            metrics.topic_partitions.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// The exposition in `format` (empty if encoding failed).
    pub fn render(&self, format: Exposition) -> String {
        metrics_exposition::render(&self.registry, format).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
