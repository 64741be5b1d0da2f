//! Tollgate's shared domain: the types every service agrees on.
//!
//! Nothing here knows about Pingora, actix or Kafka clients: ids, API keys and their hashing,
//! plans with their limit and pricing policies (and the strict decoding of their stored rows,
//! `plan_row`, `stored_text`), tenants' status, money, the invoice document and the usage
//! event wire format live here so that the proxy, metering, invoicing and the control API
//! cannot drift apart.
//! With the `db` feature the crate also carries the PostgreSQL schema as versioned migrations;
//! with `metrics`, the `/metrics` exposition every service serves.

pub mod api_key;
pub mod hex;
pub mod ids;
pub mod invoice_document;
pub mod latency;
#[cfg(feature = "metrics")]
pub mod metrics_exposition;
#[cfg(feature = "db")]
pub mod migrations;
pub mod money;
pub mod plan;
pub mod plan_row;
pub mod rating;
#[cfg(feature = "db")]
pub mod rating_inputs;
pub mod stored_text;
pub mod tenant;
pub mod upstream_policy;
pub mod upstream_target;
pub mod upstream_tls;
pub mod usage_event;

pub use api_key::{
    ApiKey, KeyEnv, KeyHash, KeyParseError, KeyPepper, ParsedApiKey, PepperError, RandomnessError,
    VerifiedKey,
};
pub use ids::{
    EventId, IdParseError, InvoiceId, IssuerId, KeyId, PlanId, RouteId, TenantId, UserId,
};
pub use money::{Currency, Money, MoneyError};
pub use plan::{
    FailureMode, Plan, PlanError, PlanSpec, Pricing, PricingModel, Quota, QuotaCap, RatePolicy,
    RatedUsage, Tier, UsageCharge,
};
pub use plan_row::{PLAN_COLUMNS, PlanRow};
pub use rating::{BillingPeriod, RatedInvoice, RatingError};
pub use stored_text::{StoredText, UnknownValue};
pub use tenant::TenantStatus;
pub use upstream_policy::{
    ENV_UPSTREAM_ALLOW_NETWORKS, IpNetwork, NetworkParseError, UpstreamPolicy, UpstreamRefusal,
    parse_networks,
};
pub use upstream_target::{UpstreamTarget, UpstreamTargetError};
pub use upstream_tls::{UpstreamTls, UpstreamTlsError};
pub use usage_event::{EventDecodeError, Outcome, UsageData, UsageEvent};
