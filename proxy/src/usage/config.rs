//! Settings of the usage pipeline, with the defaults production runs on and a check that
//! names the bad setting.

use std::path::PathBuf;

use serde::Deserialize;

use super::spool::SpoolLimits;

/// How the usage pipeline queues, produces and spools events.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageConfig {
    /// Kafka bootstrap servers (`host:port,…`).
    pub brokers: String,
    /// Topic usage events are produced to.
    pub topic: String,
    /// librdkafka `client.id`.
    pub client_id: String,
    /// Directory of the on-disk spool (created if missing). One proxy process per directory.
    pub spool_dir: PathBuf,
    /// The spool refuses appends past this many bytes; such events are dropped and counted.
    pub spool_max_bytes: u64,
    /// A new spool segment starts past this many bytes.
    pub spool_segment_bytes: u64,
    /// Events the request path can queue for the producer before they go to the spool path.
    pub queue_capacity: usize,
    /// Events the request path can queue for the spool writer when the producer queue is
    /// full; beyond both, events are dropped and counted.
    pub spool_queue_capacity: usize,
    /// librdkafka `queue.buffering.max.messages`: events waiting in the producer (queued or
    /// in flight, unacknowledged); more go to the spool (`QueueFull`). Events there are in
    /// memory only, so this also caps what a hard crash can lose.
    pub producer_queue_messages: u32,
    /// How long Kafka may leave every produced event unacknowledged before new events go to
    /// the spool instead of the producer (until Kafka acknowledges again). The longest an
    /// event waits in memory for a stalled or unreachable broker: a hard crash then loses at
    /// most the events of this window (see `docs/architecture.md`, "Crash safety").
    pub stall_ms: u32,
    /// librdkafka `compression.type`: `lz4` (default), `snappy`, `gzip` or `none`.
    pub compression: String,
    /// librdkafka `linger.ms`: how long a batch may wait to fill.
    pub linger_ms: u32,
    /// librdkafka `message.timeout.ms`: how long the producer keeps retrying an event before
    /// handing it back for the spool. Longer than any outage we want to ride out in memory, so
    /// a paused broker does not cause time-outs and re-sends.
    pub message_timeout_ms: u32,
    /// librdkafka `request.timeout.ms` and `socket.timeout.ms`: how long a produce request may
    /// go unanswered before librdkafka gives up on the connection and sends again. A re-send
    /// after a broker stall can duplicate events on brokers that do not deduplicate
    /// idempotent retries (metering deduplicates by event id either way).
    pub request_timeout_ms: u32,
    /// Spooled events in flight to Kafka at once during replay.
    pub replay_window: usize,
    /// Further librdkafka properties, applied last (e.g. security settings).
    pub producer_overrides: Vec<(String, String)>,
}

impl Default for UsageConfig {
    fn default() -> Self {
        let spool = SpoolLimits::default();
        Self {
            brokers: String::new(),
            topic: "usage-events".into(),
            client_id: "tollgate-proxy".into(),
            spool_dir: PathBuf::from("/var/lib/tollgate/usage-spool"),
            spool_max_bytes: spool.max_bytes,
            spool_segment_bytes: spool.segment_bytes,
            queue_capacity: 16_384,
            spool_queue_capacity: 65_536,
            // At 50k events/s a healthy broker keeps well under 1k unacknowledged.
            producer_queue_messages: 10_000,
            stall_ms: 500,
            compression: "lz4".into(),
            linger_ms: 5,
            message_timeout_ms: 300_000,
            request_timeout_ms: 120_000,
            replay_window: 1_000,
            producer_overrides: Vec::new(),
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("usage.{setting}: {problem}")]
pub struct UsageConfigError {
    /// The setting's name.
    pub setting: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl UsageConfig {
    /// Defaults, producing to `brokers` and spooling in `spool_dir`.
    pub fn new(brokers: impl Into<String>, spool_dir: impl Into<PathBuf>) -> Self {
        Self {
            brokers: brokers.into(),
            spool_dir: spool_dir.into(),
            ..Self::default()
        }
    }

    /// Checks every setting; the error names the first bad one.
    pub fn validate(&self) -> Result<(), UsageConfigError> {
        let bad = |setting, problem: &str| {
            Err(UsageConfigError {
                setting,
                problem: problem.to_owned(),
            })
        };
        if self.brokers.trim().is_empty() {
            return bad("brokers", "must name at least one broker");
        }
        if self.topic.is_empty() {
            return bad("topic", "must not be empty");
        }
        if self.spool_dir.as_os_str().is_empty() {
            return bad("spool_dir", "must not be empty");
        }
        if self.spool_segment_bytes < 4096 {
            return bad("spool_segment_bytes", "must be at least 4096");
        }
        if self.spool_max_bytes < self.spool_segment_bytes {
            return bad("spool_max_bytes", "must be at least spool_segment_bytes");
        }
        if self.queue_capacity == 0 || self.spool_queue_capacity == 0 {
            return bad("queue_capacity", "queues must hold at least one event");
        }
        if self.producer_queue_messages == 0 {
            return bad("producer_queue_messages", "must be at least 1");
        }
        if !["lz4", "zstd", "snappy", "gzip", "none"].contains(&self.compression.as_str()) {
            return bad(
                "compression",
                "must be one of lz4, zstd, snappy, gzip, none",
            );
        }
        if self.stall_ms < 50 || self.stall_ms >= self.message_timeout_ms {
            return bad(
                "stall_ms",
                "must be at least 50 and below message_timeout_ms",
            );
        }
        if self.message_timeout_ms < 1000 {
            return bad("message_timeout_ms", "must be at least 1000");
        }
        if self.request_timeout_ms < 1000 {
            return bad("request_timeout_ms", "must be at least 1000");
        }
        if self.replay_window == 0 {
            return bad("replay_window", "must be at least 1");
        }
        Ok(())
    }

    /// The spool's limits.
    pub fn spool_limits(&self) -> SpoolLimits {
        SpoolLimits {
            segment_bytes: self.spool_segment_bytes,
            max_bytes: self.spool_max_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_once_brokers_are_set() {
        assert_eq!(
            UsageConfig::default().validate().map_err(|e| e.setting),
            Err("brokers")
        );
        UsageConfig::new("127.0.0.1:9092", "/tmp/spool")
            .validate()
            .unwrap();
    }

    #[test]
    fn errors_name_the_setting() {
        let config = UsageConfig {
            compression: "brotli".into(),
            ..UsageConfig::new("k:9092", "/tmp/spool")
        };
        let error = config.validate().unwrap_err();
        assert_eq!(error.setting, "compression");
        assert!(error.to_string().starts_with("usage.compression:"));
    }

    #[test]
    fn the_stall_window_is_bounded() {
        let config = UsageConfig::new("k:9092", "/tmp/spool");
        assert_eq!(config.stall_ms, 500);
        for stall_ms in [10, config.message_timeout_ms] {
            let error = UsageConfig {
                stall_ms,
                ..config.clone()
            }
            .validate()
            .unwrap_err();
            assert_eq!(error.setting, "stall_ms");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let parsed: Result<UsageConfig, _> =
            serde_json::from_str(r#"{"brokers":"k:9092","lingr_ms":5}"#);
        assert!(parsed.is_err());
        let parsed: UsageConfig =
            serde_json::from_str(r#"{"brokers":"k:9092","linger_ms":20}"#).unwrap();
        assert_eq!(parsed.linger_ms, 20);
        assert_eq!(parsed.compression, "lz4");
    }
}
