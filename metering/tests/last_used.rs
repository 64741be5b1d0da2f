//! `api_keys.last_used_at` kept current from metering's batches: in the batch's one
//! statement, never backwards, not from a wrong secret, and without a config notification.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_postgres::{AsyncMessage, NoTls};
use tollgate_core::{EventId, KeyPepper, Outcome, TenantId, UsageData, UsageEvent};
use tollgate_metering::UsageStore;
use tollgate_test_support::TestDb;
use tollgate_test_support::fixtures::{insert_api_key, insert_tenant};

fn event(
    tenant: TenantId,
    key: &tollgate_core::ApiKey,
    at: OffsetDateTime,
    outcome: Outcome,
) -> UsageEvent {
    UsageEvent {
        id: EventId::new(),
        source: Arc::from("test-proxy"),
        time: at,
        tenant_id: Some(tenant),
        data: UsageData {
            key_id: Some(key.id()),
            route_id: None,
            method: "GET".into(),
            status: if outcome == Outcome::Unauthorized {
                401
            } else {
                200
            },
            outcome,
            request_bytes: 10,
            response_bytes: 20,
            upstream_latency_us: Some(5),
            total_latency_us: 7,
        },
    }
}

async fn last_used(
    client: &tokio_postgres::Client,
    key: &tollgate_core::ApiKey,
) -> Option<OffsetDateTime> {
    client
        .query_one(
            "SELECT last_used_at FROM api_keys WHERE id = $1",
            &[&key.id().as_str()],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_batch_moves_last_used_at_forward_without_notifying_the_proxies() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let tenant = insert_tenant(&client, "last-used").await;
    let pepper = KeyPepper::from_hex(&"ab".repeat(32)).unwrap();
    let (key, idle) = (
        insert_api_key(&client, tenant, &pepper).await,
        insert_api_key(&client, tenant, &pepper).await,
    );

    // A listener on the proxies' channel, started after the fixtures.
    let (listener, mut connection) = tokio_postgres::connect(db.url(), NoTls).await.unwrap();
    let (sender, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let Ok(AsyncMessage::Notification(n)) = message {
                let _ = sender.send(n.payload().to_owned());
            }
        }
    });
    listener
        .batch_execute("LISTEN tollgate_config")
        .await
        .unwrap();

    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let minutes = |n: i64| now - time::Duration::minutes(n);
    let mut store = UsageStore::new(db.url());
    let stored = store
        .store(&[
            event(tenant, &key, minutes(3), Outcome::Proxied),
            event(tenant, &key, minutes(2), Outcome::RateLimited),
            // A wrong secret for the key's id, later: not a use.
            event(tenant, &key, minutes(1), Outcome::Unauthorized),
        ])
        .await
        .unwrap();
    assert_eq!((stored.inserted, stored.keys_touched), (3, 1));
    assert_eq!(last_used(&client, &key).await, Some(minutes(2)));
    assert_eq!(last_used(&client, &idle).await, None);

    // An older batch (a late partition) never moves it backwards.
    let stored = store
        .store(&[event(tenant, &key, minutes(30), Outcome::Proxied)])
        .await
        .unwrap();
    assert_eq!(stored.keys_touched, 0);
    assert_eq!(last_used(&client, &key).await, Some(minutes(2)));

    // Notifications arrive in commit order: if the batches had notified, theirs would come
    // before this marker.
    client
        .batch_execute("NOTIFY tollgate_config, 'marker'")
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), notifications.recv())
        .await
        .expect("the marker notification")
        .unwrap();
    assert_eq!(first, "marker");
}
