//! Rows most tests need: a tenant and an API key for it.

use tokio_postgres::Client;
use tollgate_core::{ApiKey, KeyEnv, KeyPepper, TenantId};

/// Inserts an active tenant with `slug`.
pub async fn insert_tenant(client: &Client, slug: &str) -> TenantId {
    let tenant = TenantId::new();
    client
        .execute(
            "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $2)",
            &[tenant.as_uuid(), &slug],
        )
        .await
        .expect("inserting a tenant");
    tenant
}

/// Inserts a new active key for `tenant`, hashed under `pepper`, and returns it.
pub async fn insert_api_key(client: &Client, tenant: TenantId, pepper: &KeyPepper) -> ApiKey {
    let key = ApiKey::generate(KeyEnv::Live).expect("generating a key");
    client
        .execute(
            "INSERT INTO api_keys (id, tenant_id, display_prefix, secret_hmac) VALUES ($1, $2, $3, $4)",
            &[
                &key.id().as_str(),
                tenant.as_uuid(),
                &key.display_prefix(),
                &key.hash(pepper).as_bytes().as_slice(),
            ],
        )
        .await
        .expect("inserting an API key");
    key
}

/// A plan's limits as the `plans` table stores them.
#[derive(Debug, Clone, Copy)]
pub struct PlanLimits {
    /// Sustained requests per second.
    pub rate_per_second: i32,
    /// Burst.
    pub burst: i32,
    /// Monthly quota: included requests and `"hard"` or `"soft"`.
    pub quota: Option<(i64, &'static str)>,
    /// `"open"` or `"closed"`.
    pub failure_mode: &'static str,
    /// One Redis script per request.
    pub strict: bool,
}

impl Default for PlanLimits {
    /// Limits no test hits by accident.
    fn default() -> Self {
        Self {
            rate_per_second: 100_000,
            burst: 100_000,
            quota: None,
            failure_mode: "open",
            strict: false,
        }
    }
}

/// Inserts a plan with `limits` (flat pricing) and subscribes `tenant` to it from now on.
pub async fn subscribe(client: &Client, tenant: TenantId, limits: PlanLimits) -> uuid::Uuid {
    let plan = uuid::Uuid::now_v7();
    client
        .execute(
            "INSERT INTO plans (id, name, rate_per_second, burst, quota_included_requests, \
                                quota_cap, failure_mode, rate_strict, pricing) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                     '{\"currency\":\"USD\",\"base_fee_minor\":0,\"model\":\"flat\"}')",
            &[
                &plan,
                &format!("plan-{plan}"),
                &limits.rate_per_second,
                &limits.burst,
                &limits.quota.map(|q| q.0),
                &limits.quota.map(|q| q.1),
                &limits.failure_mode,
                &limits.strict,
            ],
        )
        .await
        .expect("inserting a plan");
    client
        .execute(
            "INSERT INTO subscriptions (id, tenant_id, plan_id, starts_at) \
             VALUES ($1, $2, $3, now() - interval '1 second')",
            &[&uuid::Uuid::now_v7(), tenant.as_uuid(), &plan],
        )
        .await
        .expect("subscribing the tenant");
    plan
}
