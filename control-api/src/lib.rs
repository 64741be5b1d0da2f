//! Tollgate's control API: the REST service tenants and operators use to manage tenants,
//! users, API keys, routes, JWT issuers, plans and subscriptions, and to read usage and
//! invoices, with roles, tenant isolation, an audit log and an OpenAPI document.
//!
//! The binary `tollgate-control-api` serves it (`serve`) and also administers the database
//! (`migrate`, `seed-demo`, `create-admin`). Configuration changes are plain writes to
//! PostgreSQL: the schema's triggers announce them on `tollgate_config`, and proxies reload.

pub mod app;
pub mod audit;
pub mod auth;
pub mod billing_metrics;
pub mod body;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod pagination;
pub mod pool;
pub mod resources;
pub mod state;
pub mod validate;

pub use app::{Endpoint, api_endpoints, build_app};
pub use config::ServiceConfig;
pub use error::ApiError;
pub use state::AppState;
