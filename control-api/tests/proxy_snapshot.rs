//! What the API writes is judged where it is used: by the proxy's configuration snapshot
//! (`tollgate_proxy::load_snapshot`, and the loader that keeps it current through
//! LISTEN/NOTIFY), not by re-reading SQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::test::TestRequest;
use serde_json::json;
use support::{Harness, PEPPER_HEX};
use time::OffsetDateTime;
use tokio::sync::watch;
use tollgate_core::{KeyPepper, ParsedApiKey};
use tollgate_proxy::loader::{self, LoaderSettings};
use tollgate_proxy::{KeyRejection, SnapshotHandle, load_snapshot};

/// The fixtures' upstreams are on loopback, which the proxy refuses unless allowed.
fn loopback_allowed() -> tollgate_core::UpstreamPolicy {
    tollgate_core::UpstreamPolicy::parse("127.0.0.1/32").unwrap()
}

/// How long the revocation may take to reach the proxy.
const REVOCATION_BUDGET: Duration = Duration::from_secs(1);

/// What the live snapshot says about `secret` now; `None` before the first load.
fn verdict(
    handle: &SnapshotHandle,
    secret: &str,
    pepper: &KeyPepper,
) -> Option<Result<(), KeyRejection>> {
    let snapshot = handle.load()?;
    let key = ParsedApiKey::parse(secret).unwrap();
    Some(
        snapshot
            .config
            .authenticate_key(&key, pepper, OffsetDateTime::now_utc())
            .map(|_| ()),
    )
}

/// Polls every 2 ms until `done` holds, for at most `limit`; returns how long it took.
async fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

#[actix_web::test]
async fn a_key_created_through_the_api_works_at_the_proxy_and_is_refused_within_one_second_of_revocation()
 {
    let h = Harness::new().await;
    let app = app!(h);
    let pepper = KeyPepper::from_hex(PEPPER_HEX).unwrap();
    let admin = h.token(&h.own.admin);
    let keys = format!("/api/v1/tenants/{}/api-keys", h.own.id);

    // The proxy's loader, with the periodic full reload out of the way: only the change
    // notifications can bring the revocation in time.
    let handle = Arc::new(SnapshotHandle::default());
    let (stop, stopped) = watch::channel(false);
    let mut settings = LoaderSettings::new(h.db.url());
    settings.full_reload_every = Duration::from_secs(3600);
    let loader = actix_web::rt::spawn(loader::run(settings, handle.clone(), stopped));
    assert!(
        wait_for(Duration::from_secs(10), || handle.load().is_some())
            .await
            .is_some(),
        "the loader never loaded a snapshot"
    );

    let (status, created) = call!(
        app,
        TestRequest::post()
            .uri(&keys)
            .insert_header(("Authorization", format!("Bearer {admin}")))
            .set_json(json!({ "name": "ci" }))
    );
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let key_id = created["key"]["id"].as_str().unwrap().to_owned();

    // A snapshot read now, as a proxy starting up would, accepts the key for its tenant.
    let mut client = h.db.client().await;
    let fresh = load_snapshot(&mut client, &loopback_allowed())
        .await
        .unwrap();
    let (tenant, record) = fresh
        .authenticate_key(
            &ParsedApiKey::parse(&secret).unwrap(),
            &pepper,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    assert_eq!(*tenant.id.as_uuid(), h.own.id);
    assert_eq!(record.id.as_str(), key_id);

    // The running loader picks the new key up too.
    let usable_after = wait_for(Duration::from_secs(5), || {
        verdict(&handle, &secret, &pepper) == Some(Ok(()))
    })
    .await
    .expect("the live snapshot never accepted the new key");

    let revoke_sent = Instant::now();
    let (status, revoked) = call!(
        app,
        TestRequest::post()
            .uri(&format!("{keys}/{key_id}/revoke"))
            .insert_header(("Authorization", format!("Bearer {admin}")))
    );
    assert_eq!(status, 200, "{revoked}");
    let api_answered = revoke_sent.elapsed();
    let refused_after = wait_for(Duration::from_secs(5), || {
        verdict(&handle, &secret, &pepper) == Some(Err(KeyRejection::Revoked))
    })
    .await
    .map(|_| revoke_sent.elapsed());
    println!(
        "key usable at the proxy {usable_after:?} after creation; revoke answered in \
         {api_answered:?}; refused at the proxy {} after the revoke request",
        refused_after.map_or_else(|| "never (5 s)".to_owned(), |d| format!("{d:?}"))
    );
    let refused_after = refused_after.expect("the revoked key was still accepted after 5 s");
    assert!(
        refused_after < REVOCATION_BUDGET,
        "revocation took {refused_after:?} to reach the proxy"
    );
    // And a fresh snapshot agrees.
    let fresh = load_snapshot(&mut client, &loopback_allowed())
        .await
        .unwrap();
    assert_eq!(
        fresh
            .authenticate_key(
                &ParsedApiKey::parse(&secret).unwrap(),
                &pepper,
                OffsetDateTime::now_utc()
            )
            .map(|_| ()),
        Err(KeyRejection::Revoked)
    );

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), loader)
        .await
        .expect("the loader did not stop")
        .unwrap();
}

#[actix_web::test]
async fn routes_issuers_and_plans_written_through_the_api_load_into_the_proxy_snapshot() {
    let h = Harness::new().await;
    let app = app!(h);
    let admin = format!("Bearer {}", h.token(&h.own.admin));
    let platform = format!("Bearer {}", h.token(&h.platform));
    let tenant = format!("/api/v1/tenants/{}", h.own.id);

    let (status, route) = call!(
        app,
        TestRequest::post()
            .uri(&format!("{tenant}/routes"))
            .insert_header(("Authorization", admin.clone()))
            .set_json(json!({
                "host": "api.acme.example",
                "path_prefix": "/orders",
                "strip_prefix": true,
                "upstreams": ["127.0.0.1:8080", "http://127.0.0.1:8081"],
                "retries": 2,
                "required_scope": "orders:read",
            }))
    );
    assert_eq!(status, 201, "{route}");
    let (status, issuer) = call!(
        app,
        TestRequest::post()
            .uri(&format!("{tenant}/jwt-issuers"))
            .insert_header(("Authorization", admin.clone()))
            .set_json(json!({
                "issuer": "https://auth.acme.example/",
                "audience": "orders",
                "algorithm": "HS256",
                "key_material": "a shared secret of at least thirty-two bytes",
            }))
    );
    assert_eq!(status, 201, "{issuer}");
    let (status, plan) = call!(
        app,
        TestRequest::post()
            .uri("/api/v1/plans")
            .insert_header(("Authorization", platform.clone()))
            .set_json(json!({
                "name": "Metered",
                "rate": { "requests_per_second": 25, "burst": 50, "strict": true },
                "quota": { "included_requests": 1000, "cap": "hard" },
                "pricing": {
                    "currency": "USD", "base_fee_minor": 1000, "model": "package",
                    "package_size": 1000, "package_price": "2.50",
                },
            }))
    );
    assert_eq!(status, 201, "{plan}");
    let (status, switched) = call!(
        app,
        TestRequest::post()
            .uri(&format!("{tenant}/subscription"))
            .insert_header(("Authorization", platform))
            .set_json(json!({ "plan_id": plan["id"] }))
    );
    assert_eq!(status, 201, "{switched}");

    let snapshot = load_snapshot(&mut h.db.client().await, &loopback_allowed())
        .await
        .unwrap();
    let tenant_id = tollgate_core::TenantId::from_uuid(h.own.id);
    let loaded = snapshot.routes[&tenant_id]
        .iter()
        .find(|r| r.id.as_uuid().to_string() == route["id"].as_str().unwrap())
        .expect("the route is in the snapshot");
    assert_eq!(loaded.host.as_deref(), Some("api.acme.example"));
    assert_eq!(loaded.path_prefix, "/orders");
    assert!(loaded.strip_prefix);
    assert_eq!(loaded.upstream_addrs.len(), 2);
    assert_eq!(loaded.retries, 2);
    assert_eq!(loaded.required_scope.as_deref(), Some("orders:read"));
    assert!(
        snapshot
            .issuers
            .get(tenant_id, "https://auth.acme.example/", "orders")
            .is_some(),
        "the issuer was not prepared by the proxy"
    );
    // The proxy accepted the plan (an invalid one would be skipped) and applies it now.
    let applied = snapshot.tenants[&tenant_id]
        .plan
        .as_ref()
        .expect("the tenant has the new plan");
    assert_eq!(applied.name(), "Metered");
    assert!(applied.rate().strict);
    assert_eq!(applied.quota().map(|q| q.included_requests), Some(1000));
}

#[actix_web::test]
async fn a_plan_patched_through_the_api_changes_the_limits_the_running_proxy_applies() {
    let h = Harness::new().await;
    let app = app!(h);
    let platform = format!("Bearer {}", h.token(&h.platform));
    let tenant_id = tollgate_core::TenantId::from_uuid(h.own.id);
    let plan = format!("/api/v1/plans/{}", h.own.plan_id);

    let handle = Arc::new(SnapshotHandle::default());
    let (stop, stopped) = watch::channel(false);
    let mut settings = LoaderSettings::new(h.db.url());
    settings.full_reload_every = Duration::from_secs(3600);
    let loader = actix_web::rt::spawn(loader::run(settings, handle.clone(), stopped));
    let applied_rate = || {
        handle.load().and_then(|s| {
            s.config.tenants[&tenant_id]
                .plan
                .as_ref()
                .map(|p| (p.rate(), p.quota()))
        })
    };
    assert!(
        wait_for(Duration::from_secs(10), || applied_rate().is_some())
            .await
            .is_some(),
        "the loader never loaded the fixture plan"
    );

    let (status, patched) = call!(
        app,
        TestRequest::patch()
            .uri(&plan)
            .insert_header(("Authorization", platform.clone()))
            .set_json(json!({
                "name": "Throttled",
                "rate": { "requests_per_second": 7, "strict": true },
                "quota": { "included_requests": 500, "cap": "soft" },
            }))
    );
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        patched["rate"],
        json!({ "requests_per_second": 7, "burst": 100_000, "strict": true })
    );
    assert_eq!(patched["pricing"]["model"], "flat", "pricing is untouched");
    // Only the change notification can bring this in time: the full reload is an hour away.
    let want = (
        tollgate_core::RatePolicy {
            requests_per_second: 7,
            burst: 100_000,
            strict: true,
        },
        Some(tollgate_core::Quota {
            included_requests: 500,
            cap: tollgate_core::QuotaCap::Soft,
        }),
    );
    assert!(
        wait_for(Duration::from_secs(5), || applied_rate() == Some(want))
            .await
            .is_some(),
        "the running proxy still applies {:?}",
        applied_rate()
    );
    let fresh = load_snapshot(&mut h.db.client().await, &loopback_allowed())
        .await
        .unwrap();
    let loaded = fresh.tenants[&tenant_id].plan.as_ref().unwrap();
    assert_eq!(loaded.name(), "Throttled");
    assert_eq!((loaded.rate(), loaded.quota()), want);

    // `null` removes the quota; absent fields stay.
    let (status, patched) = call!(
        app,
        TestRequest::patch()
            .uri(&plan)
            .insert_header(("Authorization", platform.clone()))
            .set_json(json!({ "quota": null, "rate": { "burst": 9 } }))
    );
    assert_eq!(status, 200, "{patched}");
    assert!(
        wait_for(Duration::from_secs(5), || {
            applied_rate()
                == Some((
                    tollgate_core::RatePolicy {
                        requests_per_second: 7,
                        burst: 9,
                        strict: true,
                    },
                    None,
                ))
        })
        .await
        .is_some(),
        "the running proxy still applies {:?}",
        applied_rate()
    );

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), loader)
        .await
        .expect("the loader did not stop")
        .unwrap();
}
