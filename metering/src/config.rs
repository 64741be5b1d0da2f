//! Configuration: an optional TOML file, then `TOLLGATE_*` environment overrides, validated
//! once at start-up with errors that name the setting.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// PostgreSQL URL.
pub const ENV_DATABASE_URL: &str = "TOLLGATE_DATABASE_URL";
/// Kafka bootstrap servers.
pub const ENV_KAFKA_BROKERS: &str = "TOLLGATE_KAFKA_BROKERS";
/// Topic the proxies produce usage events to.
pub const ENV_TOPIC: &str = "TOLLGATE_METERING_TOPIC";
/// Dead-letter topic.
pub const ENV_DLQ_TOPIC: &str = "TOLLGATE_METERING_DLQ_TOPIC";
/// Consumer group id.
pub const ENV_GROUP_ID: &str = "TOLLGATE_METERING_GROUP_ID";
/// Most records per batch.
pub const ENV_BATCH_MAX_RECORDS: &str = "TOLLGATE_METERING_BATCH_MAX_RECORDS";
/// Longest a batch stays open, in milliseconds.
pub const ENV_BATCH_MAX_WAIT_MS: &str = "TOLLGATE_METERING_BATCH_MAX_WAIT_MS";
/// Address of the health/readiness/metrics server.
pub const ENV_ADMIN_LISTEN: &str = "TOLLGATE_METERING_ADMIN_LISTEN";
/// Days of raw usage events kept.
pub const ENV_RETENTION_DAYS: &str = "TOLLGATE_METERING_RETENTION_DAYS";
/// Daily partitions created ahead of today.
pub const ENV_PARTITIONS_AHEAD_DAYS: &str = "TOLLGATE_METERING_PARTITIONS_AHEAD_DAYS";
/// Kafka session timeout in milliseconds.
pub const ENV_SESSION_TIMEOUT_MS: &str = "TOLLGATE_METERING_SESSION_TIMEOUT_MS";
/// How long the consumer may hold no partition, while the topic has some, before `/ready`
/// reports it stranded; in milliseconds.
pub const ENV_UNASSIGNED_GRACE_MS: &str = "TOLLGATE_METERING_UNASSIGNED_GRACE_MS";

/// A setting that is missing or out of range.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this service (unknown keys included).
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// A setting has a bad value.
    #[error("{setting}: {message}")]
    Invalid {
        /// The setting (file key or environment variable).
        setting: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        message: message.into(),
    }
}

/// The metering service's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeteringConfig {
    /// PostgreSQL URL (required; usually from `TOLLGATE_DATABASE_URL`).
    pub database_url: String,
    /// Kafka bootstrap servers (required).
    pub kafka_brokers: String,
    /// Topic the proxies produce usage events to.
    pub topic: String,
    /// Where undecodable records go, with the reason in headers.
    pub dlq_topic: String,
    /// Consumer group id; all metering replicas share it.
    pub group_id: String,
    /// Kafka session timeout; a dead consumer's partitions move after this long.
    pub session_timeout_ms: u32,
    /// Longest the consumer may hold no partition while the topic has some before `/ready`
    /// answers 503 (a stranded group). At least the session timeout: an ordinary rebalance
    /// after a member died leaves the others without partitions for about that long.
    pub unassigned_grace_ms: u64,
    /// Most records in one batch (one PostgreSQL transaction).
    pub batch_max_records: usize,
    /// Longest a batch waits for more records after its first one, in milliseconds.
    pub batch_max_wait_ms: u64,
    /// Address of the `/health`, `/ready` and `/metrics` server.
    pub admin_listen: SocketAddr,
    /// Days of raw usage events kept; older daily partitions are dropped. Roll-ups are kept.
    pub retention_days: u32,
    /// Daily partitions created ahead of today.
    pub partitions_ahead_days: u32,
    /// With TimescaleDB: compress chunks older than this many days.
    pub compress_after_days: u32,
}

impl Default for MeteringConfig {
    fn default() -> Self {
        Self {
            database_url: String::new(),
            kafka_brokers: String::new(),
            topic: "usage-events".into(),
            dlq_topic: "usage-events-dlq".into(),
            group_id: "usage-aggregator-group".into(),
            session_timeout_ms: 10_000,
            unassigned_grace_ms: 60_000,
            batch_max_records: 1000,
            batch_max_wait_ms: 10_000,
            admin_listen: SocketAddr::from(([0, 0, 0, 0], 9102)),
            // Thirteen months: a late correction to last year's same month can still be rated.
            retention_days: 400,
            partitions_ahead_days: 7,
            compress_after_days: 7,
        }
    }
}

impl MeteringConfig {
    /// Reads `path` (if given), applies overrides from `env`, validates.
    pub fn load(
        path: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source: Box::new(source),
                })?
            }
            None => Self::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(
            setting: &'static str,
            value: &str,
        ) -> Result<T, ConfigError> {
            value
                .trim()
                .parse()
                .map_err(|_| invalid(setting, format!("{value:?} is not a valid value")))
        }
        if let Some(v) = env(ENV_DATABASE_URL) {
            self.database_url = v;
        }
        if let Some(v) = env(ENV_KAFKA_BROKERS) {
            self.kafka_brokers = v;
        }
        if let Some(v) = env(ENV_TOPIC) {
            self.topic = v;
        }
        if let Some(v) = env(ENV_DLQ_TOPIC) {
            self.dlq_topic = v;
        }
        if let Some(v) = env(ENV_GROUP_ID) {
            self.group_id = v;
        }
        if let Some(v) = env(ENV_BATCH_MAX_RECORDS) {
            self.batch_max_records = parse(ENV_BATCH_MAX_RECORDS, &v)?;
        }
        if let Some(v) = env(ENV_BATCH_MAX_WAIT_MS) {
            self.batch_max_wait_ms = parse(ENV_BATCH_MAX_WAIT_MS, &v)?;
        }
        if let Some(v) = env(ENV_ADMIN_LISTEN) {
            self.admin_listen = parse(ENV_ADMIN_LISTEN, &v)?;
        }
        if let Some(v) = env(ENV_RETENTION_DAYS) {
            self.retention_days = parse(ENV_RETENTION_DAYS, &v)?;
        }
        if let Some(v) = env(ENV_PARTITIONS_AHEAD_DAYS) {
            self.partitions_ahead_days = parse(ENV_PARTITIONS_AHEAD_DAYS, &v)?;
        }
        if let Some(v) = env(ENV_SESSION_TIMEOUT_MS) {
            self.session_timeout_ms = parse(ENV_SESSION_TIMEOUT_MS, &v)?;
        }
        if let Some(v) = env(ENV_UNASSIGNED_GRACE_MS) {
            self.unassigned_grace_ms = parse(ENV_UNASSIGNED_GRACE_MS, &v)?;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.database_url.is_empty() {
            return Err(invalid(
                "database_url",
                format!("required (set {ENV_DATABASE_URL})"),
            ));
        }
        if self.kafka_brokers.is_empty() {
            return Err(invalid(
                "kafka_brokers",
                format!("required (set {ENV_KAFKA_BROKERS})"),
            ));
        }
        if self.topic.is_empty() || self.dlq_topic.is_empty() || self.topic == self.dlq_topic {
            return Err(invalid(
                "dlq_topic",
                "topic and dlq_topic must be set and differ",
            ));
        }
        if self.group_id.is_empty() {
            return Err(invalid("group_id", "must not be empty"));
        }
        if !(1..=100_000).contains(&self.batch_max_records) {
            return Err(invalid("batch_max_records", "must be between 1 and 100000"));
        }
        if !(1..=600_000).contains(&self.batch_max_wait_ms) {
            return Err(invalid("batch_max_wait_ms", "must be between 1 and 600000"));
        }
        if !(1_000..=300_000).contains(&self.session_timeout_ms) {
            return Err(invalid(
                "session_timeout_ms",
                "must be between 1000 and 300000",
            ));
        }
        if self.unassigned_grace_ms < u64::from(self.session_timeout_ms)
            || self.unassigned_grace_ms > 3_600_000
        {
            return Err(invalid(
                "unassigned_grace_ms",
                format!(
                    "must be between session_timeout_ms ({}) and 3600000 ({ENV_UNASSIGNED_GRACE_MS})",
                    self.session_timeout_ms
                ),
            ));
        }
        if self.retention_days < 2 {
            return Err(invalid("retention_days", "must be at least 2"));
        }
        Ok(())
    }

    /// [`Self::unassigned_grace_ms`] as a duration.
    pub fn unassigned_grace(&self) -> Duration {
        Duration::from_millis(self.unassigned_grace_ms)
    }

    /// [`Self::batch_max_wait_ms`] as a duration.
    pub fn batch_max_wait(&self) -> Duration {
        Duration::from_millis(self.batch_max_wait_ms)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |key| map.get(key).cloned()
    }

    const REQUIRED: [(&str, &str); 2] = [
        (ENV_DATABASE_URL, "postgres://localhost/db"),
        (ENV_KAFKA_BROKERS, "127.0.0.1:9092"),
    ];

    #[test]
    fn defaults_follow_the_design() {
        let config = MeteringConfig::load(None, env(&REQUIRED)).unwrap();
        assert_eq!(config.group_id, "usage-aggregator-group");
        assert_eq!(config.topic, "usage-events");
        assert_eq!(config.dlq_topic, "usage-events-dlq");
        assert_eq!(config.batch_max_records, 1000);
        assert_eq!(config.batch_max_wait(), Duration::from_secs(10));
    }

    #[test]
    fn environment_overrides_the_defaults() {
        let mut pairs = REQUIRED.to_vec();
        pairs.push((ENV_BATCH_MAX_RECORDS, "250"));
        pairs.push((ENV_GROUP_ID, "other"));
        let config = MeteringConfig::load(None, env(&pairs)).unwrap();
        assert_eq!(config.batch_max_records, 250);
        assert_eq!(config.group_id, "other");
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = MeteringConfig::load(None, env(&[])).unwrap_err();
        assert!(err.to_string().contains(ENV_DATABASE_URL), "{err}");

        let mut pairs = REQUIRED.to_vec();
        pairs.push((ENV_BATCH_MAX_RECORDS, "lots"));
        let err = MeteringConfig::load(None, env(&pairs)).unwrap_err();
        assert!(err.to_string().starts_with(ENV_BATCH_MAX_RECORDS), "{err}");

        let mut pairs = REQUIRED.to_vec();
        pairs.push((ENV_BATCH_MAX_RECORDS, "0"));
        let err = MeteringConfig::load(None, env(&pairs)).unwrap_err();
        assert!(err.to_string().starts_with("batch_max_records"), "{err}");
    }

    #[test]
    fn the_unassigned_grace_must_cover_a_session_timeout() {
        let config = MeteringConfig::load(None, env(&REQUIRED)).unwrap();
        assert_eq!(config.unassigned_grace(), Duration::from_secs(60));

        let mut pairs = REQUIRED.to_vec();
        pairs.push((ENV_SESSION_TIMEOUT_MS, "6000"));
        pairs.push((ENV_UNASSIGNED_GRACE_MS, "5000"));
        let err = MeteringConfig::load(None, env(&pairs)).unwrap_err();
        assert!(err.to_string().starts_with("unassigned_grace_ms"), "{err}");
        assert!(err.to_string().contains(ENV_UNASSIGNED_GRACE_MS), "{err}");

        pairs.pop();
        pairs.push((ENV_UNASSIGNED_GRACE_MS, "6000"));
        let config = MeteringConfig::load(None, env(&pairs)).unwrap();
        assert_eq!(config.session_timeout_ms, 6000);
        assert_eq!(config.unassigned_grace(), Duration::from_secs(6));

        let mut pairs = REQUIRED.to_vec();
        pairs.push((ENV_UNASSIGNED_GRACE_MS, "soon"));
        let err = MeteringConfig::load(None, env(&pairs)).unwrap_err();
        assert!(
            err.to_string().starts_with(ENV_UNASSIGNED_GRACE_MS),
            "{err}"
        );
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let dir = std::env::temp_dir().join(format!("tg-metering-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metering.toml");
        std::fs::write(&path, "batch_max_records = 10\nbatch_size = 5\n").unwrap();
        let err = MeteringConfig::load(Some(path.to_str().unwrap()), env(&REQUIRED)).unwrap_err();
        assert!(err.to_string().contains("batch_size"), "{err}");

        std::fs::write(&path, "batch_max_records = 10\n").unwrap();
        let config = MeteringConfig::load(Some(path.to_str().unwrap()), env(&REQUIRED)).unwrap();
        assert_eq!(config.batch_max_records, 10);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
