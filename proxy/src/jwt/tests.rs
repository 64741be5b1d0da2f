//! JWT verification for every pinned algorithm, and every way a token is refused.

use jsonwebtoken::{EncodingKey, Header};
use proptest::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use serde_json::{Value, json};

use super::*;

const ISSUER: &str = "https://idp.example";
const AUDIENCE: &str = "orders-api";
const NOW: i64 = 1_750_000_000;
const HS256_SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";
const RSA_PRIVATE_PEM: &str = include_str!("../../tests/fixtures/jwt_rs256_test_only_private.pem");
const RSA_PUBLIC_PEM: &str = include_str!("../../tests/fixtures/jwt_rs256_test_only_public.pem");
const RSA_1024_PUBLIC_PEM: &str =
    include_str!("../../tests/fixtures/jwt_rsa1024_test_only_public.pem");

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW).unwrap()
}

/// Signs tokens for one algorithm; `public` is what an issuer row stores.
struct TestSigner {
    algorithm: Algorithm,
    name: &'static str,
    signing: EncodingKey,
    public: String,
}

impl TestSigner {
    fn sign(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(self.algorithm), claims, &self.signing).unwrap()
    }
}

fn hs256() -> TestSigner {
    TestSigner {
        algorithm: Algorithm::HS256,
        name: "HS256",
        signing: EncodingKey::from_secret(HS256_SECRET.as_bytes()),
        public: HS256_SECRET.into(),
    }
}

fn rs256() -> TestSigner {
    TestSigner {
        algorithm: Algorithm::RS256,
        name: "RS256",
        signing: EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap(),
        public: RSA_PUBLIC_PEM.into(),
    }
}

/// SubjectPublicKeyInfo DER up to the key bits, for an uncompressed P-256 point.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// SubjectPublicKeyInfo DER up to the key bits, for an Ed25519 key.
const ED25519_SPKI_PREFIX: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

fn es256() -> TestSigner {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    TestSigner {
        algorithm: Algorithm::ES256,
        name: "ES256",
        signing: EncodingKey::from_ec_der(pkcs8.as_ref()),
        public: public_pem(P256_SPKI_PREFIX, pair.public_key().as_ref()),
    }
}

fn eddsa() -> TestSigner {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    TestSigner {
        algorithm: Algorithm::EdDSA,
        name: "EdDSA",
        signing: EncodingKey::from_ed_der(pkcs8.as_ref()),
        public: public_pem(ED25519_SPKI_PREFIX, pair.public_key().as_ref()),
    }
}

fn all_signers() -> [TestSigner; 4] {
    [hs256(), rs256(), es256(), eddsa()]
}

/// `BEGIN PUBLIC KEY` PEM of an SPKI made of `prefix` and `key`.
fn public_pem(prefix: &[u8], key: &[u8]) -> String {
    let der = [prefix, key].concat();
    let encoded = base64_standard(&der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

fn base64_standard(bytes: &[u8]) -> String {
    base64_with(
        bytes,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        true,
    )
}

fn base64url(bytes: &[u8]) -> String {
    base64_with(
        bytes,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        false,
    )
}

fn base64_with(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(alphabet[(n >> (18 - 6 * i)) as usize & 63]));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

fn issuer_config(algorithm: &str, key_material: &str, tenant_id: TenantId) -> JwtIssuerConfig {
    JwtIssuerConfig {
        tenant_id,
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        algorithm: algorithm.into(),
        key_material: key_material.into(),
    }
}

/// A snapshot with one active tenant ("acme") trusting `signer` as ISSUER for AUDIENCE.
fn snapshot_trusting(signer: &TestSigner, status: TenantStatus) -> ConfigSnapshot {
    let tenant = TenantId::new();
    let mut snapshot = ConfigSnapshot::default();
    snapshot.tenants.insert(
        tenant,
        TenantConfig {
            id: tenant,
            slug: "acme".into(),
            status,
            plan: None,
        },
    );
    let issuer = JwtIssuer::prepare(&issuer_config(signer.name, &signer.public, tenant)).unwrap();
    snapshot.issuers.insert(issuer);
    snapshot
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-42",
        "exp": NOW + 600,
        "nbf": NOW - 10,
        "scope": "orders:read orders:write",
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn rejection(snapshot: &ConfigSnapshot, token: &str) -> JwtRejection {
    snapshot.authenticate_jwt(token, now()).unwrap_err()
}

/// A token with the given header and claims and an empty signature.
fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    )
}

#[test]
fn every_algorithm_accepts_a_valid_token() {
    for signer in all_signers() {
        let snapshot = snapshot_trusting(&signer, TenantStatus::Active);
        let (tenant, principal) = snapshot
            .authenticate_jwt(&signer.sign(&claims()), now())
            .unwrap_or_else(|e| panic!("{}: {e:?}", signer.name));
        assert_eq!(tenant.slug, "acme", "{}", signer.name);
        assert_eq!(principal.subject.as_deref(), Some("user-42"));
        assert_eq!(principal.scopes, ["orders:read", "orders:write"]);
    }
}

#[test]
fn every_algorithm_refuses_an_expired_token_beyond_the_leeway() {
    for signer in all_signers() {
        let snapshot = snapshot_trusting(&signer, TenantStatus::Active);
        let expired = signer.sign(&with(claims(), "exp", json!(NOW - LEEWAY_SECONDS - 1)));
        assert_eq!(
            rejection(&snapshot, &expired),
            JwtRejection::Expired,
            "{}",
            signer.name
        );
        let within_leeway = signer.sign(&with(claims(), "exp", json!(NOW - LEEWAY_SECONDS)));
        assert!(snapshot.authenticate_jwt(&within_leeway, now()).is_ok());
    }
}

#[test]
fn every_algorithm_refuses_a_token_before_its_nbf() {
    for signer in all_signers() {
        let snapshot = snapshot_trusting(&signer, TenantStatus::Active);
        let early = signer.sign(&with(claims(), "nbf", json!(NOW + LEEWAY_SECONDS + 1)));
        assert_eq!(
            rejection(&snapshot, &early),
            JwtRejection::NotYetValid,
            "{}",
            signer.name
        );
        let within_leeway = signer.sign(&with(claims(), "nbf", json!(NOW + LEEWAY_SECONDS)));
        assert!(snapshot.authenticate_jwt(&within_leeway, now()).is_ok());
    }
}

#[test]
fn every_algorithm_refuses_a_wrong_audience_and_an_unknown_issuer() {
    for signer in all_signers() {
        let snapshot = snapshot_trusting(&signer, TenantStatus::Active);
        for aud in [json!("billing-api"), json!(["billing-api"]), json!([])] {
            let token = signer.sign(&with(claims(), "aud", aud.clone()));
            assert_eq!(
                rejection(&snapshot, &token),
                JwtRejection::InvalidAudience,
                "{} {aud}",
                signer.name
            );
        }
        let no_audience = signer.sign(&without(claims(), "aud"));
        assert_eq!(
            rejection(&snapshot, &no_audience),
            JwtRejection::InvalidAudience
        );
        let other_issuer = signer.sign(&with(claims(), "iss", json!("https://evil.example")));
        assert_eq!(
            rejection(&snapshot, &other_issuer),
            JwtRejection::UnknownIssuer,
            "{}",
            signer.name
        );
    }
}

#[test]
fn an_audience_list_is_accepted_when_it_names_the_configured_audience() {
    let signer = hs256();
    let snapshot = snapshot_trusting(&signer, TenantStatus::Active);
    let token = signer.sign(&with(claims(), "aud", json!(["billing-api", AUDIENCE])));
    assert!(snapshot.authenticate_jwt(&token, now()).is_ok());
}

#[test]
fn every_algorithm_refuses_a_tampered_payload() {
    for signer in all_signers() {
        let snapshot = snapshot_trusting(&signer, TenantStatus::Active);
        let genuine = signer.sign(&claims());
        let forged = signer.sign(&with(claims(), "sub", json!("admin")));
        let mut parts: Vec<&str> = genuine.split('.').collect();
        parts[1] = forged.split('.').nth(1).unwrap();
        assert_eq!(
            rejection(&snapshot, &parts.join(".")),
            JwtRejection::InvalidSignature,
            "{}",
            signer.name
        );
    }
}

#[test]
fn a_token_signed_by_another_key_of_the_pinned_algorithm_is_refused() {
    for (trusted, other) in [(es256(), es256()), (eddsa(), eddsa())] {
        let snapshot = snapshot_trusting(&trusted, TenantStatus::Active);
        assert_eq!(
            rejection(&snapshot, &other.sign(&claims())),
            JwtRejection::InvalidSignature,
            "{}",
            trusted.name
        );
    }
    let snapshot = snapshot_trusting(&hs256(), TenantStatus::Active);
    let other_secret = EncodingKey::from_secret(b"another-hs256-secret-of-32-bytes-or-more");
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(), &other_secret).unwrap();
    assert_eq!(rejection(&snapshot, &token), JwtRejection::InvalidSignature);
}

#[test]
fn alg_none_is_refused_whatever_the_pinned_algorithm() {
    for signer in all_signers() {
        let snapshot = snapshot_trusting(&signer, TenantStatus::Active);
        for alg in ["none", "None", "NONE", "nOnE"] {
            let token = unsigned(&json!({"alg": alg, "typ": "JWT"}), &claims());
            assert_eq!(
                rejection(&snapshot, &token),
                JwtRejection::AlgorithmNotAllowed,
                "{} pinned, alg {alg}",
                signer.name
            );
        }
        // A signature segment does not make `none` acceptable either.
        let with_signature = format!(
            "{}{}",
            unsigned(&json!({"alg": "none"}), &claims()),
            signer.sign(&claims()).rsplit('.').next().unwrap()
        );
        assert_eq!(
            rejection(&snapshot, &with_signature),
            JwtRejection::AlgorithmNotAllowed
        );
    }
}

#[test]
fn an_rs256_public_key_used_as_an_hmac_secret_is_refused() {
    // Classic key confusion: the attacker knows the public key and signs with it as HS256.
    let snapshot = snapshot_trusting(&rs256(), TenantStatus::Active);
    let confused = EncodingKey::from_secret(RSA_PUBLIC_PEM.as_bytes());
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(), &confused).unwrap();
    assert_eq!(
        rejection(&snapshot, &token),
        JwtRejection::AlgorithmNotAllowed
    );
}

#[test]
fn any_algorithm_but_the_pinned_one_is_refused() {
    let signers = all_signers();
    for trusted in &signers {
        let snapshot = snapshot_trusting(trusted, TenantStatus::Active);
        for other in signers.iter().filter(|s| s.algorithm != trusted.algorithm) {
            assert_eq!(
                rejection(&snapshot, &other.sign(&claims())),
                JwtRejection::AlgorithmNotAllowed,
                "{} pinned, {} sent",
                trusted.name,
                other.name
            );
        }
    }
    // Same family, other hash: still not the pinned algorithm.
    let snapshot = snapshot_trusting(&hs256(), TenantStatus::Active);
    let hs384 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS384),
        &claims(),
        &EncodingKey::from_secret(HS256_SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        rejection(&snapshot, &hs384),
        JwtRejection::AlgorithmNotAllowed
    );
    let made_up = unsigned(&json!({"alg": "HS1024"}), &claims());
    assert_eq!(
        rejection(&snapshot, &made_up),
        JwtRejection::AlgorithmNotAllowed
    );
}

#[test]
fn a_suspended_or_unknown_tenant_is_refused_with_403() {
    let signer = es256();
    let snapshot = snapshot_trusting(&signer, TenantStatus::Suspended);
    let refused = rejection(&snapshot, &signer.sign(&claims()));
    assert_eq!(refused, JwtRejection::TenantSuspended);
    assert_eq!(
        (refused.code(), refused.status()),
        ("tenant_suspended", 403)
    );

    let mut orphaned = snapshot_trusting(&signer, TenantStatus::Active);
    orphaned.tenants.clear();
    assert_eq!(
        rejection(&orphaned, &signer.sign(&claims())),
        JwtRejection::TenantSuspended
    );
}

#[test]
fn missing_or_mistyped_claims_are_malformed() {
    let signer = hs256();
    let snapshot = snapshot_trusting(&signer, TenantStatus::Active);
    // A missing `exp` or `iss` is named rather than called malformed.
    assert_eq!(
        rejection(&snapshot, &signer.sign(&without(claims(), "exp"))),
        JwtRejection::MissingExpiry
    );
    assert_eq!(
        rejection(&snapshot, &signer.sign(&without(claims(), "iss"))),
        JwtRejection::MissingIssuer
    );
    for broken in [
        with(claims(), "exp", json!("tomorrow")),
        with(claims(), "nbf", json!({"at": 1})),
        with(claims(), "sub", json!(42)),
        with(claims(), "iss", json!(["a", "b"])),
    ] {
        assert_eq!(
            rejection(&snapshot, &signer.sign(&broken)),
            JwtRejection::Malformed,
            "{broken}"
        );
    }
}

#[test]
fn a_token_with_critical_header_extensions_is_refused() {
    let signer = hs256();
    let snapshot = snapshot_trusting(&signer, TenantStatus::Active);
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["b64".into()]);
    let token = jsonwebtoken::encode(&header, &claims(), &signer.signing).unwrap();
    assert_eq!(rejection(&snapshot, &token), JwtRejection::Malformed);
}

#[test]
fn garbage_and_oversized_tokens_are_malformed() {
    let signer = hs256();
    let snapshot = snapshot_trusting(&signer, TenantStatus::Active);
    let valid = signer.sign(&claims());
    let padded = format!("{valid}{}", "A".repeat(MAX_TOKEN_BYTES));
    for token in [
        "",
        "not a jwt",
        "a.b.c",
        "a.b",
        "eyJhbGciOiJIUzI1NiJ9.!!!.sig",
        &format!("{valid}.extra"),
        &padded,
    ] {
        assert_eq!(
            rejection(&snapshot, token),
            JwtRejection::Malformed,
            "{token}"
        );
    }
}

#[test]
fn scopes_come_from_a_scope_string_or_a_scopes_list() {
    let signer = hs256();
    let snapshot = snapshot_trusting(&signer, TenantStatus::Active);
    let listed = with(
        without(claims(), "scope"),
        "scopes",
        json!(["a:read", "b:write"]),
    );
    let (_, principal) = snapshot
        .authenticate_jwt(&signer.sign(&listed), now())
        .unwrap();
    assert_eq!(principal.scopes, ["a:read", "b:write"]);

    let bare = without(without(claims(), "scope"), "sub");
    let (_, principal) = snapshot
        .authenticate_jwt(&signer.sign(&bare), now())
        .unwrap();
    assert_eq!(
        *principal,
        JwtPrincipal {
            subject: None,
            scopes: vec![]
        }
    );
}

#[test]
fn a_verified_token_is_cached_but_its_times_and_tenant_are_checked_on_every_request() {
    for signer in all_signers() {
        let mut snapshot = snapshot_trusting(&signer, TenantStatus::Active);
        let token = signer.sign(&claims());
        assert!(snapshot.verified_tokens.is_empty());
        let (_, first) = snapshot.authenticate_jwt(&token, now()).unwrap();
        assert_eq!(snapshot.verified_tokens.len(), 1, "{}", signer.name);
        let (_, second) = snapshot.authenticate_jwt(&token, now()).unwrap();
        assert!(
            Arc::ptr_eq(&first, &second),
            "{}: not served from the cache",
            signer.name
        );

        // The cached entry still expires with the token and waits for `nbf`.
        let exp = claims()["exp"].as_i64().unwrap();
        let after = OffsetDateTime::from_unix_timestamp(exp + LEEWAY_SECONDS + 1).unwrap();
        assert_eq!(
            snapshot.authenticate_jwt(&token, after).unwrap_err(),
            JwtRejection::Expired,
            "{}",
            signer.name
        );

        // A suspended tenant is refused even for a token verified before.
        for tenant in snapshot.tenants.values_mut() {
            tenant.status = TenantStatus::Suspended;
        }
        assert_eq!(
            snapshot.authenticate_jwt(&token, now()).unwrap_err(),
            JwtRejection::TenantSuspended,
            "{}",
            signer.name
        );
    }
}

#[test]
fn refused_tokens_are_not_cached() {
    let signer = hs256();
    let snapshot = snapshot_trusting(&signer, TenantStatus::Active);
    let token = signer.sign(&claims());
    let (body, _) = token.rsplit_once('.').unwrap();
    let forged = format!("{body}.{}", base64url(&[0u8; 32]));
    assert_eq!(
        rejection(&snapshot, &forged),
        JwtRejection::InvalidSignature
    );
    let expired = signer.sign(&with(claims(), "exp", json!(NOW - LEEWAY_SECONDS - 1)));
    assert_eq!(rejection(&snapshot, &expired), JwtRejection::Expired);
    assert!(snapshot.verified_tokens.is_empty());
}

#[test]
fn a_token_not_yet_valid_is_accepted_once_valid() {
    let signer = hs256();
    let snapshot = snapshot_trusting(&signer, TenantStatus::Active);
    let token = signer.sign(&with(claims(), "nbf", json!(NOW + 120)));
    assert_eq!(rejection(&snapshot, &token), JwtRejection::NotYetValid);
    let later = OffsetDateTime::from_unix_timestamp(NOW + 120).unwrap();
    assert!(snapshot.authenticate_jwt(&token, later).is_ok());
}

#[test]
fn fractional_numeric_dates_are_accepted() {
    let signer = hs256();
    let snapshot = snapshot_trusting(&signer, TenantStatus::Active);
    let token = signer.sign(&with(claims(), "exp", json!(1_750_000_600.5)));
    assert!(snapshot.authenticate_jwt(&token, now()).is_ok());
}

#[test]
fn a_short_hs256_secret_is_refused_when_the_issuer_is_loaded() {
    let short = issuer_config("HS256", &"s".repeat(31), TenantId::new());
    assert_eq!(
        JwtIssuer::prepare(&short).unwrap_err(),
        IssuerError::SecretTooShort { len: 31 }
    );
    let enough = issuer_config("HS256", &"s".repeat(32), TenantId::new());
    assert!(JwtIssuer::prepare(&enough).is_ok());
}

#[test]
fn keys_that_do_not_fit_the_pinned_algorithm_are_refused_when_the_issuer_is_loaded() {
    let tenant = TenantId::new();
    let es_public = es256().public;
    let ed_public = eddsa().public;
    for (algorithm, key) in [
        ("RS256", es_public.as_str()),
        ("RS256", "not a pem at all"),
        ("ES256", RSA_PUBLIC_PEM),
        ("ES256", ed_public.as_str()),
        ("EdDSA", es_public.as_str()),
        ("EdDSA", RSA_PUBLIC_PEM),
        ("RS256", RSA_PRIVATE_PEM),
    ] {
        let error = JwtIssuer::prepare(&issuer_config(algorithm, key, tenant)).unwrap_err();
        assert!(
            matches!(error, IssuerError::InvalidKey { .. }),
            "{algorithm}: {error:?}"
        );
    }
    assert_eq!(
        JwtIssuer::prepare(&issuer_config("RS256", RSA_1024_PUBLIC_PEM, tenant)).unwrap_err(),
        IssuerError::RsaKeyTooShort { bits: 1024 }
    );
    for algorithm in ["none", "HS512", "PS256", "rs256"] {
        assert_eq!(
            JwtIssuer::prepare(&issuer_config(algorithm, HS256_SECRET, tenant)).unwrap_err(),
            IssuerError::UnsupportedAlgorithm(algorithm.into())
        );
    }
}

#[test]
fn issuers_are_found_by_issuer_and_audience() {
    let tenant = TenantId::new();
    let mut issuers = JwtIssuers::default();
    assert!(issuers.is_empty());
    let first = JwtIssuer::prepare(&issuer_config("HS256", HS256_SECRET, tenant)).unwrap();
    let mut second_config = issuer_config("HS256", HS256_SECRET, tenant);
    second_config.audience = "billing-api".into();
    let second = JwtIssuer::prepare(&second_config).unwrap();
    assert!(issuers.insert(first.clone()).is_none());
    assert!(issuers.insert(second).is_none());
    assert!(issuers.insert(first).is_some(), "same pair replaces");
    assert_eq!(issuers.len(), 2);
    assert_eq!(
        issuers
            .get(tenant, ISSUER, "billing-api")
            .map(JwtIssuer::audience),
        Some("billing-api")
    );
    assert!(issuers.get(tenant, ISSUER, "other").is_none());
    assert!(issuers.get(tenant, "https://other", AUDIENCE).is_none());
    assert!(issuers.get(TenantId::new(), ISSUER, AUDIENCE).is_none());
}

/// A snapshot of active tenants, each trusting ISSUER for AUDIENCE with the given key.
fn snapshot_of(registrations: &[(TenantId, &TestSigner)]) -> ConfigSnapshot {
    let mut snapshot = ConfigSnapshot::default();
    for (n, (tenant, signer)) in registrations.iter().enumerate() {
        snapshot.tenants.insert(
            *tenant,
            TenantConfig {
                id: *tenant,
                slug: format!("t{n}"),
                status: TenantStatus::Active,
                plan: None,
            },
        );
        let issuer = JwtIssuer::prepare(&issuer_config(signer.name, &signer.public, *tenant));
        snapshot.issuers.insert(issuer.unwrap());
    }
    snapshot
}

#[test]
fn tenants_sharing_an_issuer_and_audience_are_told_apart_by_their_keys() {
    let (a, b, copycat) = (TenantId::new(), TenantId::new(), TenantId::new());
    let (first, second) = (hs256(), rs256());
    let tenant_of = |snapshot: &ConfigSnapshot, signer: &TestSigner| {
        snapshot
            .authenticate_jwt(&signer.sign(&claims()), now())
            .map(|(tenant, _)| tenant.id)
    };
    let shared = snapshot_of(&[(a, &first), (b, &second)]);
    assert_eq!(tenant_of(&shared, &first), Ok(a));
    assert_eq!(tenant_of(&shared, &second), Ok(b));
    assert!(shared.issuers.shared_keys().is_empty());

    // A third tenant copying the first one's key makes both registrations useless; the
    // second tenant's key keeps working.
    let copied = snapshot_of(&[(a, &first), (b, &second), (copycat, &first)]);
    assert_eq!(
        tenant_of(&copied, &first),
        Err(JwtRejection::AlgorithmNotAllowed)
    );
    assert_eq!(tenant_of(&copied, &second), Ok(b));
    assert_eq!(copied.issuers.shared_keys().len(), 2);
}

#[test]
fn debug_output_never_shows_key_material() {
    let issuer =
        JwtIssuer::prepare(&issuer_config("HS256", HS256_SECRET, TenantId::new())).unwrap();
    let mut issuers = JwtIssuers::default();
    issuers.insert(issuer.clone());
    for shown in [format!("{issuer:?}"), format!("{issuers:?}")] {
        assert!(shown.contains(ISSUER), "{shown}");
        assert!(!shown.contains("an-hs256-secret"), "{shown}");
        // The secret's bytes as a Debug list would start like this.
        assert!(!shown.contains("97, 110, 45"), "{shown}");
    }
}

#[test]
fn rejections_have_stable_codes_and_statuses() {
    let all = [
        (JwtRejection::Malformed, "invalid_token"),
        (JwtRejection::UnknownIssuer, "unknown_issuer"),
        (JwtRejection::MissingExpiry, "missing_exp"),
        (JwtRejection::MissingIssuer, "missing_iss"),
        (JwtRejection::AlgorithmNotAllowed, "algorithm_not_allowed"),
        (JwtRejection::InvalidSignature, "invalid_signature"),
        (JwtRejection::Expired, "expired_token"),
        (JwtRejection::NotYetValid, "token_not_yet_valid"),
        (JwtRejection::InvalidAudience, "invalid_audience"),
        (JwtRejection::TenantSuspended, "tenant_suspended"),
    ];
    for (rejection, code) in all {
        assert_eq!(rejection.code(), code);
        let expected = if rejection == JwtRejection::TenantSuspended {
            403
        } else {
            401
        };
        assert_eq!(rejection.status(), expected, "{code}");
    }
}

#[test]
fn jwt_shape_is_recognised_without_parsing() {
    assert!(looks_like_jwt("eyJh.eyJp.c2ln"));
    assert!(looks_like_jwt("eyJh.eyJp."));
    for not_jwt in [
        "tg_live_a.b.c",
        "a.b",
        "a.b.c.d",
        ".b.c",
        "a..c",
        "a.b.c=",
        "a.b/.c",
    ] {
        assert!(!looks_like_jwt(not_jwt), "{not_jwt}");
    }
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic_and_never_verify(token in ".{0,300}") {
        let snapshot = snapshot_trusting(&hs256(), TenantStatus::Active);
        prop_assert!(snapshot.authenticate_jwt(&token, now()).is_err());
    }

    #[test]
    fn jwt_shaped_garbage_never_verifies(
        header in "[A-Za-z0-9_-]{1,80}",
        payload in "[A-Za-z0-9_-]{1,200}",
        signature in "[A-Za-z0-9_-]{0,120}",
    ) {
        let snapshot = snapshot_trusting(&hs256(), TenantStatus::Active);
        let token = format!("{header}.{payload}.{signature}");
        prop_assert!(snapshot.authenticate_jwt(&token, now()).is_err());
    }

    #[test]
    fn real_claims_with_a_random_signature_never_verify(signature in "[A-Za-z0-9_-]{0,120}") {
        let signer = hs256();
        let snapshot = snapshot_trusting(&signer, TenantStatus::Active);
        let genuine = signer.sign(&claims());
        let (message, real) = genuine.rsplit_once('.').unwrap();
        prop_assume!(signature != real);
        let token = format!("{message}.{signature}");
        prop_assert!(snapshot.authenticate_jwt(&token, now()).is_err());
    }
}
