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
