//! Per-request costs on the hot path: credential parse and verify, snapshot authentication at
//! 1k, 100k and 1M keys, the GCRA decision and the whole limiter step (local, and with Redis
//! sync pending), JWT verification per algorithm (first sight and cached), usage event encoding.
// A bench that cannot set up must stop loudly.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use tollgate_core::{
    ApiKey, EventId, KeyEnv, KeyPepper, Outcome, ParsedApiKey, TenantId, UsageData, UsageEvent,
    VerifiedKey,
};
use tollgate_proxy::snapshot::{ConfigSnapshot, KeyRecord, TenantConfig, TenantStatus};

fn api_key(c: &mut Criterion) {
    let pepper = KeyPepper::from_bytes(&[7; 32]).unwrap();
    let key = ApiKey::generate(KeyEnv::Live).unwrap();
    let stored = key.hash(&pepper);
    let token = key.expose().to_owned();

    c.bench_function("api_key/parse", |b| {
        b.iter(|| ParsedApiKey::parse(black_box(&token)).unwrap())
    });
    c.bench_function("api_key/parse_and_verify", |b| {
        b.iter(|| {
            let parsed = ParsedApiKey::parse(black_box(&token)).unwrap();
            assert!(parsed.verify(&pepper, &stored));
        })
    });
    c.bench_function("api_key/reject_malformed", |b| {
        b.iter(|| ParsedApiKey::parse(black_box("Bearer something-else")).is_err())
    });
}

fn usage_event(c: &mut Criterion) {
    let event = UsageEvent {
        id: EventId::new(),
        source: Arc::from("tollgate-proxy/bench"),
        time: time::OffsetDateTime::now_utc(),
        tenant_id: Some(TenantId::new()),
        data: UsageData {
            key_id: Some(ApiKey::generate(KeyEnv::Live).unwrap().id()),
            route_id: None,
            method: "GET".into(),
            status: 200,
            outcome: Outcome::Proxied,
            request_bytes: 320,
            response_bytes: 1480,
            upstream_latency_us: Some(850),
            total_latency_us: 910,
        },
    };
    let mut buf = Vec::with_capacity(512);
    c.bench_function("usage_event/encode", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&event).encode_into(&mut buf);
            black_box(buf.len())
        })
    });
    let bytes = event.encode();
    c.bench_function("usage_event/decode", |b| {
        b.iter(|| UsageEvent::decode(black_box(&bytes)).unwrap())
    });
}

fn snapshot_lookup(c: &mut Criterion) {
    let pepper = KeyPepper::from_bytes(&[7; 32]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let mut group = c.benchmark_group("snapshot/authenticate_key");
    for keys in [1_000usize, 100_000, 1_000_000] {
        let mut snapshot = ConfigSnapshot::default();
        let tenant = TenantId::new();
        snapshot.tenants.insert(tenant, tenant_config(tenant));
        // Look up keys spread over the table, not one hot entry. The 64 probes repeat, as a
        // client's key does, so after the first round this is a remembered key's path (no
        // HMAC); `api_key/parse_and_verify` is the HMAC's cost.
        let mut probes = Vec::new();
        for i in 0..keys {
            let key = ApiKey::generate(KeyEnv::Live).unwrap();
            snapshot.keys.insert(
                key.id(),
                KeyRecord {
                    id: key.id(),
                    tenant_id: tenant,
                    hash: key.hash(&pepper),
                    active: true,
                    scopes: Vec::new(),
                    expires_at: None,
                    verified: VerifiedKey::default(),
                },
            );
            if i % (keys / 64) == 0 {
                probes.push(key.expose().to_owned());
            }
        }
        let mut i = 0usize;
        group.bench_function(criterion::BenchmarkId::from_parameter(keys), |b| {
            b.iter(|| {
                i = (i + 1) % probes.len();
                let parsed = ParsedApiKey::parse(black_box(&probes[i])).unwrap();
                snapshot
                    .authenticate_key(&parsed, &pepper, now)
                    .unwrap()
                    .0
                    .id
            })
        });
    }
    group.finish();
}

fn limiter(c: &mut Criterion) {
    let gcra = tollgate_proxy::gcra::Gcra::new(tollgate_core::RatePolicy {
        requests_per_second: 1_000_000,
        burst: 1000,
        strict: false,
    });
    let tat = std::sync::atomic::AtomicU64::new(0);
    let mut now = 0u64;
    c.bench_function("limiter/gcra_decision", |b| {
        b.iter(|| {
            now += 1000;
            gcra.check_atomic(black_box(&tat), now).allowed
        })
    });

    // The whole per-request limiter step: tenant lookup, quota reservation, GCRA, counters.
    let limiter = tollgate_proxy::limits::Limiter::new(tollgate_proxy::limits::LimiterSettings {
        replicas: 1,
        cluster: false,
    });
    let plan = plan(10_000_000, 10_000_000);
    let tenants: Vec<TenantId> = (0..10_000).map(|_| TenantId::new()).collect();
    let mut i = 0usize;
    c.bench_function("limiter/check_10k_tenants", |b| {
        b.iter(|| {
            i = (i + 1) % tenants.len();
            limiter
                .check(black_box(tenants[i]), &plan)
                .now_or_never()
                .unwrap()
                .verdict
        })
    });

    // The same step with Redis sync on and a monthly quota: every admission is also counted
    // as pending for the next sync and reserved against the quota.
    let limiter = tollgate_proxy::limits::Limiter::new(tollgate_proxy::limits::LimiterSettings {
        replicas: 3,
        cluster: true,
    });
    limiter.assume_cluster_available();
    let plan = plan_from(serde_json::json!({
        "id": tollgate_core::PlanId::new(),
        "name": "bench",
        "rate": {"requests_per_second": 10_000_000, "burst": 10_000_000},
        "quota": {"included_requests": 1_000_000_000_000u64, "cap": "soft"},
        "pricing": {"currency": "USD", "base_fee_minor": 0, "model": "flat"},
    }));
    c.bench_function("limiter/check_10k_tenants_sync_pending", |b| {
        b.iter(|| {
            i = (i + 1) % tenants.len();
            let decision = limiter
                .check(black_box(tenants[i]), &plan)
                .now_or_never()
                .unwrap();
            assert!(decision.quota.is_some());
            decision.verdict
        })
    });
}

fn plan(rate: u32, burst: u32) -> tollgate_core::Plan {
    plan_from(serde_json::json!({
        "id": tollgate_core::PlanId::new(),
        "name": "bench",
        "rate": {"requests_per_second": rate, "burst": burst},
        "pricing": {"currency": "USD", "base_fee_minor": 0, "model": "flat"},
    }))
}

fn plan_from(spec: serde_json::Value) -> tollgate_core::Plan {
    let spec: tollgate_core::plan::PlanSpec = serde_json::from_value(spec).unwrap();
    tollgate_core::Plan::new(spec).unwrap()
}

fn jwt(c: &mut Criterion) {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use tollgate_proxy::jwt::JwtIssuer;
    use tollgate_proxy::snapshot::JwtIssuerConfig;
    const SECRET: &str = "bench-only-hs256-secret-of-32-bytes-or-more";
    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../proxy/tests/fixtures/", $name))
        };
    }
    let now = time::OffsetDateTime::now_utc();
    let claims = serde_json::json!({
        "iss": "https://idp.bench", "aud": "api", "sub": "user-1",
        "exp": now.unix_timestamp() + 3600, "scope": "orders:read orders:write",
    });
    let cases = [
        (
            "HS256",
            Algorithm::HS256,
            SECRET,
            EncodingKey::from_secret(SECRET.as_bytes()),
        ),
        (
            "RS256",
            Algorithm::RS256,
            fixture!("jwt_rs256_test_only_public.pem"),
            EncodingKey::from_rsa_pem(fixture!("jwt_rs256_test_only_private.pem").as_bytes())
                .unwrap(),
        ),
        (
            "ES256",
            Algorithm::ES256,
            fixture!("jwt_es256_test_only_public.pem"),
            EncodingKey::from_ec_pem(fixture!("jwt_es256_test_only_private.pem").as_bytes())
                .unwrap(),
        ),
        (
            "EdDSA",
            Algorithm::EdDSA,
            fixture!("jwt_eddsa_test_only_public.pem"),
            EncodingKey::from_ed_pem(fixture!("jwt_eddsa_test_only_private.pem").as_bytes())
                .unwrap(),
        ),
    ];
    for (name, algorithm, material, signing) in cases {
        let tenant = TenantId::new();
        let mut snapshot = ConfigSnapshot::default();
        snapshot.tenants.insert(tenant, tenant_config(tenant));
        snapshot.issuers.insert(
            JwtIssuer::prepare(&JwtIssuerConfig {
                tenant_id: tenant,
                issuer: "https://idp.bench".into(),
                audience: "api".into(),
                algorithm: name.into(),
                key_material: material.into(),
            })
            .unwrap(),
        );
        let token = encode(&Header::new(algorithm), &claims, &signing).unwrap();
        // A token's first request in a snapshot: the signature is checked.
        c.bench_function(&format!("jwt/verify_{name}"), |b| {
            b.iter(|| snapshot.verify_jwt(black_box(&token)).unwrap().tenant_id())
        });
        // Every later request with the same token: served by the verified-token cache.
        c.bench_function(&format!("jwt/authenticate_cached_{name}"), |b| {
            b.iter(|| {
                snapshot
                    .authenticate_jwt(black_box(&token), now)
                    .unwrap()
                    .0
                    .id
            })
        });
    }
}

fn tenant_config(id: TenantId) -> TenantConfig {
    TenantConfig {
        id,
        slug: "bench".into(),
        status: TenantStatus::Active,
        plan: None,
    }
}

criterion_group!(benches, api_key, snapshot_lookup, limiter, jwt, usage_event);
criterion_main!(benches);
