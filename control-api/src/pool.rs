//! The PostgreSQL pool: few connections, bounded waits, and a statement timeout on every
//! session so that one slow query cannot hold a connection (or a request) indefinitely.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::NoTls;

use crate::error::ApiError;

/// Pool settings.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest a statement may run before PostgreSQL cancels it.
    pub statement_timeout: Duration,
    /// Longest a request waits for a free connection or a new one.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 8,
            statement_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Builds a pool for `url` (named `setting` in errors); connections are opened lazily.
pub fn build(url: &str, setting: &'static str, settings: PoolSettings) -> Result<Pool, ApiError> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|_| ApiError::InvalidSetting {
        setting,
        reason: "is not a valid PostgreSQL URL".to_owned(),
    })?;
    config.connect_timeout(settings.acquire_timeout);
    config.options(format!(
        "-c statement_timeout={} -c idle_in_transaction_session_timeout={}",
        settings.statement_timeout.as_millis(),
        settings.statement_timeout.as_millis().saturating_mul(2),
    ));
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(settings.max_connections)
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(settings.acquire_timeout),
            create: Some(settings.acquire_timeout),
            recycle: Some(settings.acquire_timeout),
        })
        .build()
        .map_err(|e| ApiError::InvalidSetting {
            setting,
            reason: format!("cannot build a connection pool: {e}"),
        })
}
