//! A control API in-process over a private database, with tenants, users and tokens.
// Each test binary uses a different part of the harness.
#![allow(dead_code)]

use actix_web::web;
use tollgate_control_api::auth::password;
use tollgate_control_api::auth::{Principal, Role};
use tollgate_control_api::config::{JwtSecret, ThrottlePolicy};
use tollgate_control_api::pool::{self, PoolSettings};
use tollgate_control_api::{AppState, ServiceConfig};
use tollgate_core::{KeyPepper, UpstreamPolicy};
use tollgate_test_support::TestDb;
use tollgate_test_support::fixtures::{PlanLimits, insert_api_key, insert_tenant, subscribe};
use uuid::Uuid;

pub const PEPPER_HEX: &str = "abababababababababababababababababababababababababababababababab";
pub const PASSWORD: &str = "a long enough password";

/// One tenant's fixtures.
#[derive(Debug, Clone)]
pub struct TenantFixture {
    pub id: Uuid,
    pub key_id: String,
    pub route_id: Uuid,
    pub issuer_id: Uuid,
    pub plan_id: Uuid,
    /// A finalized invoice with one line.
    pub invoice_id: Uuid,
    pub admin: Principal,
    pub viewer: Principal,
}

pub struct Harness {
    pub db: TestDb,
    pub state: web::Data<AppState>,
    /// The argon2id hash of [`PASSWORD`], computed once: hashing is slow in debug builds.
    pub password_hash: String,
    pub platform: Principal,
    pub own: TenantFixture,
    pub foreign: TenantFixture,
}

impl Harness {
    pub async fn new() -> Self {
        Self::with_throttle(ThrottlePolicy::default()).await
    }

    pub async fn with_throttle(throttle: ThrottlePolicy) -> Self {
        Self::with_config(|config| config.throttle = throttle).await
    }

    /// A harness whose service configuration `adjust` changes from the test defaults.
    pub async fn with_config(adjust: impl FnOnce(&mut ServiceConfig)) -> Self {
        let db = TestDb::new().await;
        let mut config = ServiceConfig::new(
            JwtSecret::parse(&"cd".repeat(32)).unwrap(),
            KeyPepper::from_hex(PEPPER_HEX).unwrap(),
        );
        config.max_body_bytes = 16 * 1024;
        // The fixtures' routes point at loopback, which is refused unless allowed.
        config.upstream_policy = UpstreamPolicy::parse("127.0.0.1/32").unwrap();
        adjust(&mut config);
        let pool = pool::build(db.url(), "database", PoolSettings::default()).unwrap();
        let state = web::Data::new(AppState::new(config, pool).unwrap());
        let client = db.client().await;
        let hash = password::hash_password(PASSWORD).unwrap();
        let platform = insert_user(&client, None, Role::PlatformAdmin, &hash).await;
        let (own, foreign) = tenant_pair(&client, &hash).await;
        Self {
            db,
            state,
            password_hash: hash,
            platform,
            own,
            foreign,
        }
    }

    /// Two more tenants with fixtures of their own, in the same database: a test that writes
    /// can use a fresh pair instead of a fresh database.
    pub async fn tenant_pair(&self) -> (TenantFixture, TenantFixture) {
        tenant_pair(&self.db.client().await, &self.password_hash).await
    }

    /// An access token of the session every fixture user has (its id is the user's id).
    pub fn token(&self, principal: &Principal) -> String {
        self.state
            .tokens
            .issue_access(principal, principal.user_id)
            .unwrap()
    }

    /// An access token of a new session of `principal`, for a test that ends sessions.
    pub async fn fresh_token(&self, principal: &Principal) -> String {
        let session_id = Uuid::now_v7();
        insert_session(&self.db.client().await, principal.user_id, session_id).await;
        self.state
            .tokens
            .issue_access(principal, session_id)
            .unwrap()
    }
}

/// An "own" and a "foreign" tenant, each with a key, a route, an issuer, a plan it is
/// subscribed to, a finalized invoice, an admin and a viewer.
async fn tenant_pair(
    client: &tokio_postgres::Client,
    hash: &str,
) -> (TenantFixture, TenantFixture) {
    let own = tenant_fixture(client, hash).await;
    let foreign = tenant_fixture(client, hash).await;
    (own, foreign)
}

async fn tenant_fixture(client: &tokio_postgres::Client, hash: &str) -> TenantFixture {
    let slug = tollgate_test_support::unique_name("t")
        .replace('_', "-")
        .to_lowercase();
    let id = *insert_tenant(client, &slug).await.as_uuid();
    let key = insert_api_key(
        client,
        tollgate_core::TenantId::from_uuid(id),
        &KeyPepper::from_hex(PEPPER_HEX).unwrap(),
    )
    .await;
    let route_id = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO routes (id, tenant_id, path_prefix, upstreams) \
             VALUES ($1, $2, '/fixture', ARRAY['127.0.0.1:9'])",
            &[&route_id, &id],
        )
        .await
        .unwrap();
    let issuer_id = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO jwt_issuers (id, tenant_id, issuer, audience, algorithm, key_material) \
             VALUES ($1, $2, $3, 'fixture', 'HS256', repeat('k', 40))",
            &[&issuer_id, &id, &format!("https://issuer.example/{id}")],
        )
        .await
        .unwrap();
    let plan_id = subscribe(
        client,
        tollgate_core::TenantId::from_uuid(id),
        PlanLimits::default(),
    )
    .await;
    let invoice_id = Uuid::now_v7();
    client
        .execute(
            "WITH i AS (INSERT INTO invoices (id, tenant_id, period_start, period_end, currency, \
                                              status, subtotal_minor, total_minor, finalized_at) \
                        VALUES ($1, $2, '2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z', 'USD', \
                                'draft', 4900, 4900, NULL) RETURNING id) \
             INSERT INTO invoice_lines (id, invoice_id, position, kind, description, quantity, \
                                        unit_price, amount_minor) \
             SELECT $3, id, 0, 'base_fee', 'Fixture plan', 1, 49, 4900 FROM i",
            &[&invoice_id, &id, &Uuid::now_v7()],
        )
        .await
        .unwrap();
    // Finalized as the invoicing job does: lines frozen, a gapless number taken.
    client
        .execute(
            "WITH n AS (INSERT INTO invoice_number_counters AS c (year, last_seq) VALUES (2026, 1) \
                        ON CONFLICT (year) DO UPDATE SET last_seq = c.last_seq + 1 RETURNING last_seq) \
             UPDATE invoices SET status = 'finalized', finalized_at = '2026-02-01T00:05:00Z', \
                    number = format('TG-2026-%s', lpad(n.last_seq::text, 6, '0')) \
               FROM n WHERE id = $1",
            &[&invoice_id],
        )
        .await
        .unwrap();
    TenantFixture {
        id,
        key_id: key.id().as_str().to_owned(),
        route_id,
        issuer_id,
        plan_id,
        invoice_id,
        admin: insert_user(client, Some(id), Role::TenantAdmin, hash).await,
        viewer: insert_user(client, Some(id), Role::TenantViewer, hash).await,
    }
}

async fn insert_user(
    client: &tokio_postgres::Client,
    tenant: Option<Uuid>,
    role: Role,
    hash: &str,
) -> Principal {
    let id = Uuid::now_v7();
    let email = format!("{}@example.com", id.simple());
    client
        .execute(
            "INSERT INTO users (id, tenant_id, email, password_hash, role) VALUES ($1, $2, $3, $4, $5)",
            &[&id, &tenant, &email, &hash, &role.as_str()],
        )
        .await
        .unwrap();
    insert_session(client, id, id).await;
    Principal {
        user_id: id,
        email,
        role,
        tenant_id: tenant,
    }
}

/// A live session of `user_id`, as a login starts.
pub async fn insert_session(client: &tokio_postgres::Client, user_id: Uuid, session_id: Uuid) {
    client
        .execute(
            "INSERT INTO auth_sessions (id, user_id, refresh_token_id, expires_at) \
             VALUES ($1, $2, $3, now() + interval '1 hour')",
            &[&session_id, &user_id, &Uuid::now_v7()],
        )
        .await
        .unwrap();
}

/// Builds the application in-process.
#[macro_export]
macro_rules! app {
    ($harness:expr) => {
        actix_web::test::init_service(tollgate_control_api::build_app(
            $harness.state.clone(),
            Default::default(),
        ))
        .await
    };
}

/// Sends a `TestRequest` and returns the status and the JSON body (Null if none).
#[macro_export]
macro_rules! call {
    ($app:expr, $req:expr) => {{
        let response = actix_web::test::call_service(&$app, $req.to_request()).await;
        let status = response.status().as_u16();
        let body = actix_web::test::read_body(response).await;
        let json: serde_json::Value =
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        (status, json)
    }};
}
