//! The Pingora gateway: tenant auth, plan limits, routing and usage events (`tollgate-proxy`).
//!
//! Built in increments. Present so far: the config snapshot the request path reads
//! ([`snapshot`]: tenants, keys, plans, routes, JWT issuers, and key authentication against
//! them), the loader that keeps it current from PostgreSQL ([`loader`]), and the Pingora
//! gateway that authenticates API keys and routes ([`gateway`]). Limits, JWT and usage
//! emission follow.

pub mod admin;
pub mod connections;
pub mod credentials;
pub mod declarative;
pub mod gateway;
pub mod gcra;
pub mod jwt;
pub mod limits;
pub mod loader;
pub mod metrics;
pub mod path;
pub mod routing;
pub mod snapshot;
pub mod upstream_health;
pub mod upstreams;
pub mod usage;

pub use loader::{
    LoadError, LoaderMetrics, LoaderSettings, RowKind, load_snapshot, load_snapshot_counting,
};
pub use snapshot::{ConfigSnapshot, KeyRejection, SnapshotHandle, TenantStatus};
