//! JWT authentication end to end against the real PostgreSQL: issuer rows are prepared when the
//! snapshot loads, a token signed for one authenticates to its tenant, tenants sharing an
//! issuer are told apart by their keys, a suspended tenant is refused, and an invalid row
//! costs only its own issuer.
// Helpers outside #[test] fns: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use time::OffsetDateTime;
use tollgate_core::TenantId;
use tollgate_proxy::jwt::JwtRejection;
use tollgate_test_support::TestDb;
use tollgate_test_support::fixtures::insert_tenant;

/// The fixtures' upstreams are on loopback, which the proxy refuses unless allowed.
fn loopback_allowed() -> tollgate_core::UpstreamPolicy {
    tollgate_core::UpstreamPolicy::parse("127.0.0.1/32").unwrap()
}

const RSA_PRIVATE_PEM: &str = include_str!("fixtures/jwt_rs256_test_only_private.pem");
const RSA_PUBLIC_PEM: &str = include_str!("fixtures/jwt_rs256_test_only_public.pem");
const HS256_SECRET: &str = "integration-hs256-secret-of-32-bytes-plus";

async fn insert_issuer(
    client: &tokio_postgres::Client,
    tenant: TenantId,
    issuer: &str,
    algorithm: &str,
    key_material: &str,
) {
    client
        .execute(
            "INSERT INTO jwt_issuers (id, tenant_id, issuer, audience, algorithm, key_material)
             VALUES (gen_random_uuid(), $1, $2, 'orders-api', $3, $4)",
            &[tenant.as_uuid(), &issuer, &algorithm, &key_material],
        )
        .await
        .unwrap();
}

fn token(algorithm: Algorithm, key: &EncodingKey, issuer: &str) -> String {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({
        "iss": issuer,
        "aud": "orders-api",
        "sub": "user-7",
        "exp": now + 300,
        "scope": "orders:read",
    });
    jsonwebtoken::encode(&Header::new(algorithm), &claims, key).unwrap()
}

#[tokio::test]
async fn a_token_from_a_stored_issuer_authenticates_to_its_tenant() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let acme = insert_tenant(&client, "acme").await;
    let globex = insert_tenant(&client, "globex").await;
    insert_issuer(&client, acme, "https://idp.acme", "RS256", RSA_PUBLIC_PEM).await;
    insert_issuer(&client, globex, "https://idp.globex", "HS256", HS256_SECRET).await;

    let snapshot = tollgate_proxy::load_snapshot(&mut client, &loopback_allowed())
        .await
        .unwrap();
    assert_eq!(snapshot.issuers.len(), 2);

    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap();
    let (tenant, principal) = snapshot
        .authenticate_jwt(
            &token(Algorithm::RS256, &rsa, "https://idp.acme"),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    assert_eq!((tenant.id, tenant.slug.as_str()), (acme, "acme"));
    assert_eq!(principal.subject.as_deref(), Some("user-7"));
    assert_eq!(principal.scopes, ["orders:read"]);

    let hmac = EncodingKey::from_secret(HS256_SECRET.as_bytes());
    let (tenant, _) = snapshot
        .authenticate_jwt(
            &token(Algorithm::HS256, &hmac, "https://idp.globex"),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    assert_eq!(tenant.id, globex);

    // Each issuer's pinned algorithm holds: globex's secret cannot speak for acme's issuer.
    assert_eq!(
        snapshot
            .authenticate_jwt(
                &token(Algorithm::HS256, &hmac, "https://idp.acme"),
                OffsetDateTime::now_utc(),
            )
            .unwrap_err(),
        JwtRejection::AlgorithmNotAllowed
    );
}

#[tokio::test]
async fn a_suspended_tenant_is_refused_with_tenant_suspended() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let tenant = insert_tenant(&client, "acme").await;
    insert_issuer(&client, tenant, "https://idp.acme", "HS256", HS256_SECRET).await;
    client
        .execute(
            "UPDATE tenants SET status = 'suspended' WHERE id = $1",
            &[tenant.as_uuid()],
        )
        .await
        .unwrap();

    let snapshot = tollgate_proxy::load_snapshot(&mut client, &loopback_allowed())
        .await
        .unwrap();
    let hmac = EncodingKey::from_secret(HS256_SECRET.as_bytes());
    let rejection = snapshot
        .authenticate_jwt(
            &token(Algorithm::HS256, &hmac, "https://idp.acme"),
            OffsetDateTime::now_utc(),
        )
        .unwrap_err();
    assert_eq!(rejection, JwtRejection::TenantSuspended);
    assert_eq!(
        (rejection.code(), rejection.status()),
        ("tenant_suspended", 403)
    );
}

#[tokio::test]
async fn an_issuer_whose_key_does_not_parse_is_skipped_and_the_rest_loads() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let tenant = insert_tenant(&client, "acme").await;
    // Long enough for the schema's CHECK, but no PEM key.
    let not_a_key = "-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n";
    insert_issuer(&client, tenant, "https://broken.acme", "ES256", not_a_key).await;
    insert_issuer(&client, tenant, "https://idp.acme", "HS256", HS256_SECRET).await;

    let snapshot = tollgate_proxy::load_snapshot(&mut client, &loopback_allowed())
        .await
        .unwrap();
    assert_eq!(snapshot.issuers.len(), 1);
    assert!(
        snapshot
            .issuers
            .get(tenant, "https://broken.acme", "orders-api")
            .is_none()
    );
    let hmac = EncodingKey::from_secret(HS256_SECRET.as_bytes());
    assert!(
        snapshot
            .authenticate_jwt(
                &token(Algorithm::HS256, &hmac, "https://idp.acme"),
                OffsetDateTime::now_utc(),
            )
            .is_ok()
    );
}

#[tokio::test]
async fn tenants_sharing_an_issuer_are_told_apart_by_key_and_a_copied_key_wins_nothing() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let (acme, globex, mallory) = (
        insert_tenant(&client, "acme").await,
        insert_tenant(&client, "globex").await,
        insert_tenant(&client, "mallory").await,
    );
    // One identity provider, two customers of it, each with its own key.
    insert_issuer(&client, acme, "https://idp.shared", "RS256", RSA_PUBLIC_PEM).await;
    insert_issuer(&client, globex, "https://idp.shared", "HS256", HS256_SECRET).await;
    let snapshot = tollgate_proxy::load_snapshot(&mut client, &loopback_allowed())
        .await
        .unwrap();
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap();
    let hmac = EncodingKey::from_secret(HS256_SECRET.as_bytes());
    let now = OffsetDateTime::now_utc();
    let acme_token = token(Algorithm::RS256, &rsa, "https://idp.shared");
    let globex_token = token(Algorithm::HS256, &hmac, "https://idp.shared");
    assert_eq!(
        snapshot.authenticate_jwt(&acme_token, now).unwrap().0.id,
        acme
    );
    assert_eq!(
        snapshot.authenticate_jwt(&globex_token, now).unwrap().0.id,
        globex
    );

    // A third tenant registers acme's public key (public keys are public) for the same
    // issuer: the tokens cannot be attributed any more, so they are refused for everyone
    // rather than handed to the copy.
    insert_issuer(
        &client,
        mallory,
        "https://idp.shared",
        "RS256",
        RSA_PUBLIC_PEM,
    )
    .await;
    let snapshot = tollgate_proxy::load_snapshot(&mut client, &loopback_allowed())
        .await
        .unwrap();
    assert_eq!(
        snapshot.authenticate_jwt(&acme_token, now).unwrap_err(),
        JwtRejection::AlgorithmNotAllowed
    );
    let mut refused: Vec<_> = snapshot
        .issuers
        .shared_keys()
        .into_iter()
        .map(|(_, _, tenant)| tenant)
        .collect();
    refused.sort();
    let mut expected = vec![acme, mallory];
    expected.sort();
    assert_eq!(refused, expected);
    // Globex's own key is unaffected.
    assert_eq!(
        snapshot.authenticate_jwt(&globex_token, now).unwrap().0.id,
        globex
    );
}

#[tokio::test]
async fn a_token_without_exp_is_told_so() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let tenant = insert_tenant(&client, "acme").await;
    insert_issuer(&client, tenant, "https://idp.acme", "HS256", HS256_SECRET).await;
    let snapshot = tollgate_proxy::load_snapshot(&mut client, &loopback_allowed())
        .await
        .unwrap();
    let claims = json!({ "iss": "https://idp.acme", "aud": "orders-api", "sub": "user-7" });
    let forever = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(HS256_SECRET.as_bytes()),
    )
    .unwrap();
    let rejection = snapshot
        .authenticate_jwt(&forever, OffsetDateTime::now_utc())
        .unwrap_err();
    assert_eq!(rejection, JwtRejection::MissingExpiry);
    assert_eq!((rejection.code(), rejection.status()), ("missing_exp", 401));
    assert!(rejection.to_string().contains("exp"), "{rejection}");
}
