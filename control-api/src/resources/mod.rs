//! The REST resources, one module each. Every handler applies a guard from
//! [`crate::auth::principal`] before touching the database, and every write records an
//! audit entry in its own transaction.

pub mod api_keys;
pub mod audit_log;
pub mod invoices;
pub mod issuer_key;
pub mod jwt_issuers;
pub mod plan_schema;
pub mod plans;
pub mod route_spec;
pub mod routes;
pub mod subscriptions;
pub mod tenants;
pub mod usage;
pub mod usage_range;
pub mod users;
pub mod webhooks;
