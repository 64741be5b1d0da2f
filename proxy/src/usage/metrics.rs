//! Prometheus metrics of the usage pipeline. Every event submitted ends in exactly one of
//! produced, replayed (after being spooled) or dropped; `spooled − replayed` is what the spool
//! still holds. The drop reason is one of a few fixed codes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why an event was dropped.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum DropReason {
    /// The producer queue and the spool queue were both full.
    QueueFull,
    /// The spool reached its size cap.
    SpoolFull,
    /// The spool could not be written.
    SpoolError,
    /// A spooled record failed its checksum or could not be decoded.
    Corrupt,
    /// Submitted after the pipeline shut down.
    Shutdown,
}

impl DropReason {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::SpoolFull => "spool_full",
            Self::SpoolError => "spool_error",
            Self::Corrupt => "corrupt",
            Self::Shutdown => "shutdown",
        }
    }
}

/// The `reason` label of dropped events.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabel {
    /// A [`DropReason`] code.
    pub reason: &'static str,
}

/// The pipeline's metrics. Clones share the same series.
#[derive(Debug, Clone, Default)]
pub struct UsageMetrics {
    /// Events Kafka acknowledged on the first attempt.
    pub produced: Counter,
    /// Events written to the spool.
    pub spooled: Counter,
    /// Spooled events Kafka acknowledged.
    pub replayed: Counter,
    /// Events lost, by reason.
    pub dropped: Family<DropLabel, Counter>,
    /// Bytes in the spool.
    pub spool_bytes: Gauge,
    /// Events waiting in the in-memory queue for the producer.
    pub queue_depth: Gauge,
    /// Events inside librdkafka (queued or in flight to the broker).
    pub producer_queue_depth: Gauge,
}

impl UsageMetrics {
    /// Adds every metric to `registry` (names start with `usage_`; counters end in `_total`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "usage_events_produced",
            "Usage events acknowledged by Kafka on the first attempt",
            self.produced.clone(),
        );
        registry.register(
            "usage_events_spooled",
            "Usage events written to the on-disk spool",
            self.spooled.clone(),
        );
        registry.register(
            "usage_events_replayed",
            "Spooled usage events acknowledged by Kafka",
            self.replayed.clone(),
        );
        registry.register(
            "usage_events_dropped",
            "Usage events lost, by reason",
            self.dropped.clone(),
        );
        registry.register(
            "usage_spool_bytes",
            "Bytes held in the usage spool",
            self.spool_bytes.clone(),
        );
        registry.register(
            "usage_queue_depth",
            "Usage events waiting in memory for the producer",
            self.queue_depth.clone(),
        );
        registry.register(
            "usage_producer_queue_depth",
            "Usage events queued in or in flight from the Kafka producer",
            self.producer_queue_depth.clone(),
        );
    }

    /// Counts `n` dropped events.
    pub fn drop_events(&self, reason: DropReason, n: u64) {
        self.dropped
            .get_or_create(&DropLabel {
                reason: reason.as_str(),
            })
            .inc_by(n);
    }

    /// Dropped events for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped
            .get_or_create(&DropLabel {
                reason: reason.as_str(),
            })
            .get()
    }

    /// Dropped events over all reasons.
    pub fn dropped_total(&self) -> u64 {
        [
            DropReason::QueueFull,
            DropReason::SpoolFull,
            DropReason::SpoolError,
            DropReason::Corrupt,
            DropReason::Shutdown,
        ]
        .into_iter()
        .map(|reason| self.dropped(reason))
        .sum()
    }
}

pub(crate) fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_conventional_names() {
        let metrics = UsageMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.produced.inc();
        metrics.drop_events(DropReason::SpoolFull, 2);
        metrics.spool_bytes.set(42);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "usage_events_produced_total 1",
            "usage_events_spooled_total 0",
            "usage_events_replayed_total 0",
            "usage_events_dropped_total{reason=\"spool_full\"} 2",
            "usage_spool_bytes 42",
            "usage_queue_depth 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert_eq!(metrics.dropped_total(), 2);
    }
}
