//! Any request headers: finding the credential never panics, and
//! whatever is found, parsed as an API key or verified as a JWT, never panics and never verifies
//! as a JWT (the fuzzer cannot forge the HS256 issuer's signature).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use pingora_http::RequestHeader;
use time::OffsetDateTime;
use tollgate_core::{ParsedApiKey, TenantId};
use tollgate_proxy::credentials::{Credential, extract_credential};
use tollgate_proxy::jwt::{JwtIssuer, looks_like_jwt};
use tollgate_proxy::snapshot::{ConfigSnapshot, JwtIssuerConfig, TenantConfig, TenantStatus};

/// Header names biased towards the two that carry credentials.
#[derive(Arbitrary, Debug)]
enum Name {
    Authorization,
    XApiKey,
    Other(String),
}

/// Values biased towards the bearer form.
#[derive(Arbitrary, Debug)]
enum Value {
    Bearer(String),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    headers: Vec<(Name, Value)>,
}

/// One active tenant trusting one HS256 issuer.
static SNAPSHOT: LazyLock<ConfigSnapshot> = LazyLock::new(|| {
    let tenant = TenantId::new();
    let mut snapshot = ConfigSnapshot::default();
    snapshot.tenants.insert(
        tenant,
        TenantConfig {
            id: tenant,
            slug: "fuzz".into(),
            status: TenantStatus::Active,
            plan: None,
        },
    );
    let issuer = JwtIssuer::prepare(&JwtIssuerConfig {
        tenant_id: tenant,
        issuer: "https://idp".into(),
        audience: "api".into(),
        algorithm: "HS256".into(),
        key_material: "fuzz-target-hs256-secret-of-32-bytes!".into(),
    })
    .expect("a valid issuer");
    snapshot.issuers.insert(issuer);
    snapshot
});

fuzz_target!(|input: Input| {
    let Ok(mut request) = RequestHeader::build("GET", b"/", None) else {
        return;
    };
    for (name, value) in input.headers {
        let name = match name {
            Name::Authorization => "authorization".to_owned(),
            Name::XApiKey => "x-api-key".to_owned(),
            Name::Other(name) => name,
        };
        let value = match value {
            Value::Bearer(token) => format!("Bearer {token}").into_bytes(),
            Value::Raw(bytes) => bytes,
        };
        // Names and values pingora refuses never reach the proxy: skip them.
        let _ = request.append_header(name, value);
    }

    let found = extract_credential(&request);
    let value = match found {
        Ok(Credential::Jwt(token)) => {
            assert!(looks_like_jwt(token));
            token
        }
        Ok(Credential::ApiKey(key)) => {
            let _ = ParsedApiKey::parse(key);
            key
        }
        Err(rejection) => {
            assert!(!rejection.code().is_empty());
            return;
        }
    };
    let rejection = SNAPSHOT
        .authenticate_jwt(value, OffsetDateTime::now_utc())
        .expect_err("a fuzzed token never verifies");
    assert!(matches!(rejection.status(), 401 | 403));
});
