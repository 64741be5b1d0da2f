//! The config snapshot loader against the real PostgreSQL: changes arrive through NOTIFY
//! within a second, an outage keeps the last snapshot serving, and a row that cannot be
//! decoded is left out and counted, never read as a permissive default.
// Helpers outside #[test] fns: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::watch;
use tollgate_core::{ApiKey, KeyPepper, TenantId};
use tollgate_proxy::snapshot::LoadedSnapshot;
use tollgate_proxy::{
    KeyRejection, LoaderMetrics, LoaderSettings, RowKind, SnapshotHandle, loader,
};
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

/// `gateway_snapshot_rows_skipped_total{kind=…}` as a scrape reads it.
fn skipped_in_exposition(metrics: &LoaderMetrics, kind: &str) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let series = format!("gateway_snapshot_rows_skipped_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .unwrap_or("absent")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_with_an_unknown_failure_mode_is_skipped_and_counted_not_served_fail_open() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let key = seed(&client).await;
    // The schema's CHECK forbids the value; without it, the row stands for one the code does
    // not know (a newer schema, a hand edit). It used to be read as `open`.
    client
        .batch_execute(
            "ALTER TABLE plans DROP CONSTRAINT plans_failure_mode_check;
             INSERT INTO plans (id, name, rate_per_second, burst, failure_mode, pricing)
             VALUES ('00000000-0000-7000-8000-000000000003', 'Future', 10, 10, 'half_open',
                     '{\"currency\":\"USD\",\"base_fee_minor\":0,\"model\":\"flat\"}');
             INSERT INTO subscriptions (id, tenant_id, plan_id, starts_at)
             SELECT gen_random_uuid(), id, '00000000-0000-7000-8000-000000000003', now() FROM tenants;",
        )
        .await
        .unwrap();
    let handle = Arc::new(SnapshotHandle::default());
    let (stop, shutdown) = watch::channel(false);
    let settings = LoaderSettings::new(db.url());
    let metrics = settings.metrics.clone();
    let task = tokio::spawn(loader::run(settings, handle.clone(), shutdown));

    snapshot_where(&handle, Duration::from_secs(10), |_| true).await;
    let loaded = handle.load().unwrap();
    assert!(loaded.config.plans.is_empty(), "the plan was decoded");
    let (tenant, _) = loaded
        .config
        .authenticate_key(&key.as_parsed(), &pepper(), OffsetDateTime::now_utc())
        .unwrap();
    assert!(
        tenant.plan.is_none(),
        "the tenant got a plan from a row that cannot be decoded: {:?}",
        tenant.plan
    );
    assert!(metrics.rows_skipped(RowKind::Plan) >= 1);
    assert_ne!(skipped_in_exposition(&metrics, "plan"), "0");
    assert_eq!(skipped_in_exposition(&metrics, "tenant"), "0");

    // Once the row holds a value the code knows, it is read (through NOTIFY, as any change).
    client
        .execute("UPDATE plans SET failure_mode = 'closed'", &[])
        .await
        .unwrap();
    snapshot_where(&handle, Duration::from_secs(5), |s| {
        s.config
            .plans
            .values()
            .any(|plan| plan.failure_mode() == tollgate_core::FailureMode::Closed)
    })
    .await;

    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_tenant_with_an_unknown_status_is_skipped_and_counted_and_its_keys_are_refused() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let key = seed(&client).await;
    client
        .batch_execute(
            "ALTER TABLE tenants DROP CONSTRAINT tenants_status_check;
             UPDATE tenants SET status = 'frozen';",
        )
        .await
        .unwrap();
    let metrics = LoaderMetrics::default();
    let snapshot =
        tollgate_proxy::load_snapshot_counting(&mut client, &loopback_allowed(), &metrics)
            .await
            .unwrap();
    assert!(snapshot.tenants.is_empty(), "the tenant was decoded");
    assert_eq!(metrics.rows_skipped(RowKind::Tenant), 1);
    assert_eq!(metrics.rows_skipped(RowKind::ApiKey), 0);
    let refused = snapshot
        .authenticate_key(&key.as_parsed(), &pepper(), OffsetDateTime::now_utc())
        .map(|_| ());
    assert_eq!(refused, Err(KeyRejection::TenantSuspended));
}
