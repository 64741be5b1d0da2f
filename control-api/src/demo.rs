//! The demo tenant that `make up` creates: a plan, a tenant subscribed to it, a catch-all
//! route to the demo upstream, and an API key.

use anyhow::Context;
use rust_decimal::Decimal;
use tokio_postgres::Client;
use tollgate_core::plan::PlanSpec;
use tollgate_core::{
    ApiKey, Currency, FailureMode, KeyEnv, KeyHash, KeyPepper, Plan, PlanId, Pricing, PricingModel,
    Quota, QuotaCap, RatePolicy, StoredText, TenantId, Tier,
};

/// Slug of the demo tenant.
pub const DEMO_TENANT_SLUG: &str = "demo";
/// Name of the demo plan.
pub const DEMO_PLAN_NAME: &str = "Demo";

/// What [`seed`] produced.
#[derive(Debug)]
pub struct Seeded {
    pub tenant_id: TenantId,
    pub plan_name: String,
    pub key: ApiKey,
    pub key_reused: bool,
}

fn demo_plan() -> anyhow::Result<Plan> {
    let plan = Plan::new(PlanSpec {
        id: PlanId::new(),
        name: DEMO_PLAN_NAME.into(),
        rate: RatePolicy {
            requests_per_second: 10,
            burst: 20,
            strict: false,
        },
        quota: Some(Quota {
            included_requests: 100_000,
            cap: QuotaCap::Hard,
        }),
        failure_mode: FailureMode::Open,
        pricing: Pricing {
            currency: Currency::USD,
            base_fee_minor: 4900,
            included_units: 0,
            model: PricingModel::Graduated {
                tiers: vec![
                    Tier {
                        up_to: Some(10_000),
                        unit_price: Decimal::ZERO,
                        flat_fee: Decimal::ZERO,
                    },
                    Tier {
                        up_to: None,
                        unit_price: Decimal::new(1, 3),
                        flat_fee: Decimal::ZERO,
                    },
                ],
            },
        },
    })?;
    Ok(plan)
}

/// Creates or updates the demo plan, tenant and subscription in one transaction, and returns a
/// working key: `reuse` if it is still an active demo key, otherwise a new one.
pub async fn seed(
    client: &mut Client,
    pepper: &KeyPepper,
    reuse: Option<&str>,
    upstream: &str,
) -> anyhow::Result<Seeded> {
    let plan = demo_plan()?;
    let tx = client.transaction().await?;
    let quota = plan.quota();
    let plan_id: uuid::Uuid = tx
        .query_one(
            "INSERT INTO plans (id, name, rate_per_second, burst, quota_included_requests, \
                                quota_cap, failure_mode, pricing) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (name) DO UPDATE SET updated_at = now() \
             RETURNING id",
            &[
                plan.id().as_uuid(),
                &plan.name(),
                &i32::try_from(plan.rate().requests_per_second)?,
                &i32::try_from(plan.rate().burst)?,
                &quota
                    .map(|q| i64::try_from(q.included_requests))
                    .transpose()?,
                &quota.map(|q| q.cap.as_str()),
                &plan.failure_mode().as_str(),
                &serde_json::to_value(plan.pricing())?,
            ],
        )
        .await
        .context("upserting the demo plan")?
        .get(0);
    let tenant_id: uuid::Uuid = tx
        .query_one(
            "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, 'Demo tenant') \
             ON CONFLICT (slug) DO UPDATE SET status = 'active', updated_at = now() \
             RETURNING id",
            &[TenantId::new().as_uuid(), &DEMO_TENANT_SLUG],
        )
        .await
        .context("upserting the demo tenant")?
        .get(0);
    tx.execute(
        "INSERT INTO subscriptions (id, tenant_id, plan_id, starts_at) \
         SELECT $1, $2, $3, date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' \
         WHERE NOT EXISTS (SELECT 1 FROM subscriptions WHERE tenant_id = $2 \
                           AND (ends_at IS NULL OR ends_at > now()))",
        &[&uuid::Uuid::now_v7(), &tenant_id, &plan_id],
    )
    .await
    .context("subscribing the demo tenant")?;

    tx.execute(
        "INSERT INTO routes (id, tenant_id, name, path_prefix, upstreams) \
         VALUES ($1, $2, 'demo', '/', ARRAY[$3]) \
         ON CONFLICT (tenant_id, coalesce(host, ''), path_prefix) \
         DO UPDATE SET upstreams = EXCLUDED.upstreams, updated_at = now()",
        &[&uuid::Uuid::now_v7(), &tenant_id, &upstream],
    )
    .await
    .context("routing the demo tenant")?;

    let reusable = match reuse.map(ApiKey::parse) {
        Some(Ok(key)) => {
            let row = tx
                .query_opt(
                    "SELECT secret_hmac FROM api_keys \
                     WHERE id = $1 AND tenant_id = $2 AND status = 'active' \
                       AND (expires_at IS NULL OR expires_at > now())",
                    &[&key.id().as_str(), &tenant_id],
                )
                .await?;
            row.and_then(|r| KeyHash::from_slice(r.get::<_, &[u8]>(0)))
                .filter(|stored| key.as_parsed().verify(pepper, stored))
                .map(|_| key)
        }
        _ => None,
    };
    let key_reused = reusable.is_some();
    let key = match reusable {
        Some(key) => key,
        None => {
            let key = ApiKey::generate(KeyEnv::Test)?;
            tx.execute(
                "INSERT INTO api_keys (id, tenant_id, name, display_prefix, secret_hmac, scopes) \
                 VALUES ($1, $2, 'demo', $3, $4, '{}')",
                &[
                    &key.id().as_str(),
                    &tenant_id,
                    &key.display_prefix(),
                    &key.hash(pepper).as_bytes().as_slice(),
                ],
            )
            .await
            .context("creating the demo API key")?;
            key
        }
    };
    tx.commit().await?;
    Ok(Seeded {
        tenant_id: TenantId::from_uuid(tenant_id),
        plan_name: plan.name().to_owned(),
        key,
        key_reused,
    })
}
