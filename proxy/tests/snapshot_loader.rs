//! The config snapshot loader against the real PostgreSQL: changes arrive through NOTIFY
//! within a second, and an outage keeps the last snapshot serving.
// Helpers outside #[test] fns: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::watch;
use tollgate_core::{ApiKey, KeyPepper, TenantId};
use tollgate_proxy::snapshot::LoadedSnapshot;
use tollgate_proxy::{KeyRejection, LoaderSettings, SnapshotHandle, loader};
use tollgate_test_support::fixtures::{insert_api_key, insert_tenant};
use tollgate_test_support::{FaultyLink, TestDb};

/// The fixtures' upstreams are on loopback, which the proxy refuses unless allowed.
fn loopback_allowed() -> tollgate_core::UpstreamPolicy {
    tollgate_core::UpstreamPolicy::parse("127.0.0.1/32").unwrap()
}

fn pepper() -> KeyPepper {
    KeyPepper::from_bytes(&[5; 32]).unwrap()
}

/// A tenant with one key; returns the key.
async fn seed(client: &tokio_postgres::Client) -> ApiKey {
    let tenant = insert_tenant(client, "acme").await;
    insert_api_key(client, tenant, &pepper()).await
}

fn authenticate(snapshot: &LoadedSnapshot, key: &ApiKey) -> Result<(), KeyRejection> {
    snapshot
        .config
        .authenticate_key(&key.as_parsed(), &pepper(), OffsetDateTime::now_utc())
        .map(|_| ())
}

/// Awaits a snapshot for which `check` holds, polling the handle every millisecond.
async fn snapshot_where(
    handle: &SnapshotHandle,
    limit: Duration,
    check: impl Fn(&LoadedSnapshot) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if handle.load().is_some_and(|s| check(&s)) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "no matching snapshot within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_rejected_within_one_second() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let key = seed(&client).await;
    let handle = Arc::new(SnapshotHandle::default());
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(loader::run(
        LoaderSettings::new(db.url()),
        handle.clone(),
        shutdown,
    ));

    snapshot_where(&handle, Duration::from_secs(10), |s| {
        authenticate(s, &key).is_ok()
    })
    .await;

    let mut delays = Vec::new();
    for round in 0..5 {
        let active = round % 2 == 1;
        let started = Instant::now();
        client
            .execute(
                "UPDATE api_keys SET status = $2 WHERE id = $1",
                &[
                    &key.id().as_str(),
                    &if active { "active" } else { "revoked" },
                ],
            )
            .await
            .unwrap();
        let expected = if active {
            Ok(())
        } else {
            Err(KeyRejection::Revoked)
        };
        snapshot_where(&handle, Duration::from_secs(1), |s| {
            authenticate(s, &key) == expected
        })
        .await;
        delays.push(started.elapsed());
    }
    println!("revocation/reinstatement reached the snapshot after {delays:?}");
    assert!(delays.iter().all(|d| *d < Duration::from_secs(1)));

    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_snapshot_keeps_serving_while_postgres_is_away() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let key = seed(&client).await;
    let link = FaultyLink::start(db.server_addr()).await;
    let handle = Arc::new(SnapshotHandle::default());
    let (stop, shutdown) = watch::channel(false);
    let mut settings = LoaderSettings::new(db.url_via(link.addr()));
    settings.full_reload_every = Duration::from_millis(200);
    let task = tokio::spawn(loader::run(settings, handle.clone(), shutdown));
    snapshot_where(&handle, Duration::from_secs(10), |s| {
        authenticate(s, &key).is_ok()
    })
    .await;

    link.cut();
    // Changes made meanwhile cannot arrive; the known key keeps working throughout.
    let second = seed_second_key(&client, &key).await;
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(2) {
        let snapshot = handle.load().unwrap();
        assert_eq!(authenticate(&snapshot, &key), Ok(()));
        assert_eq!(authenticate(&snapshot, &second), Err(KeyRejection::Unknown));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    link.restore();
    let delay = snapshot_where(&handle, Duration::from_secs(10), |s| {
        authenticate(s, &second).is_ok()
    })
    .await;
    println!("after PostgreSQL returned, the missed change arrived in {delay:?}");
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// Another key for the tenant that owns `first`.
async fn seed_second_key(client: &tokio_postgres::Client, first: &ApiKey) -> ApiKey {
    let tenant: uuid::Uuid = client
        .query_one(
            "SELECT tenant_id FROM api_keys WHERE id = $1",
            &[&first.id().as_str()],
        )
        .await
        .unwrap()
        .get(0);
    insert_api_key(client, TenantId::from_uuid(tenant), &pepper()).await
}

#[tokio::test]
async fn a_snapshot_carries_the_current_plan_and_routes_most_specific_first() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let key = seed(&client).await;
    client
        .batch_execute(
            "INSERT INTO plans (id, name, rate_per_second, burst, quota_included_requests, quota_cap, pricing)
             VALUES ('00000000-0000-7000-8000-000000000001', 'Old', 1, 1, NULL, NULL,
                     '{\"currency\":\"USD\",\"base_fee_minor\":0,\"model\":\"flat\"}'),
                    ('00000000-0000-7000-8000-000000000002', 'Growth', 100, 200, 1000000, 'hard',
                     '{\"currency\":\"USD\",\"base_fee_minor\":4900,\"model\":\"package\",\"package_size\":1000,\"package_price\":\"2.50\"}');
             INSERT INTO subscriptions (id, tenant_id, plan_id, starts_at, ends_at)
             SELECT gen_random_uuid(), id, '00000000-0000-7000-8000-000000000001', now() - interval '60 days', now() - interval '30 days' FROM tenants;
             INSERT INTO subscriptions (id, tenant_id, plan_id, starts_at)
             SELECT gen_random_uuid(), id, '00000000-0000-7000-8000-000000000002', now() - interval '30 days' FROM tenants;
             INSERT INTO routes (id, tenant_id, path_prefix, upstreams)
             SELECT gen_random_uuid(), id, '/', '{127.0.0.1:9000}' FROM tenants;
             INSERT INTO routes (id, tenant_id, path_prefix, upstreams)
             SELECT gen_random_uuid(), id, '/v1/orders', '{127.0.0.1:9001}' FROM tenants;",
        )
        .await
        .unwrap();
    let snapshot = tollgate_proxy::load_snapshot(&mut client, &loopback_allowed())
        .await
        .unwrap();
    let (tenant, _) = snapshot
        .authenticate_key(&key.as_parsed(), &pepper(), OffsetDateTime::now_utc())
        .unwrap();
    let plan = tenant
        .plan
        .as_ref()
        .expect("the current subscription's plan");
    assert_eq!(plan.name(), "Growth");
    assert_eq!(plan.rate().requests_per_second, 100);
    let prefixes: Vec<&str> = snapshot.routes[&tenant.id]
        .iter()
        .map(|r| r.path_prefix.as_str())
        .collect();
    assert_eq!(prefixes, ["/v1/orders", "/"]);
}
