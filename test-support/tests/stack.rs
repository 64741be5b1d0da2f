//! The local stack answers, and each test's resources are its own and are cleaned up.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use tollgate_core::{EventId, KeyId, Outcome, TenantId, UsageData, UsageEvent};
use tollgate_test_support::{Stack, TestDb, TestRedis, TestTopic};

#[tokio::test]
async fn each_test_database_is_a_migrated_clone_that_is_dropped_afterwards() {
    let db = TestDb::new().await;
    let name = db.name().to_owned();
    let client = db.client().await;
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_name IN \
             ('tenants','api_keys','plans','usage_events','invoices','audit_log')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 6);
    drop(client);
    drop(db);

    let admin = tokio_postgres::connect(&Stack::get().database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(admin.1);
    let left = admin
        .0
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap();
    assert!(left.is_none(), "{name} was not dropped");
}

#[tokio::test]
async fn parallel_databases_are_isolated() {
    let (a, b) = tokio::join!(TestDb::new(), TestDb::new());
    assert_ne!(a.name(), b.name());
    let (ca, cb) = (a.client().await, b.client().await);
    ca.execute(
        "INSERT INTO tenants (id, slug, name) VALUES ($1, 'only-in-a', 'A')",
        &[TenantId::new().as_uuid()],
    )
    .await
    .unwrap();
    let in_b: i64 = cb
        .query_one("SELECT count(*) FROM tenants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_b, 0);
}

#[tokio::test]
async fn redis_keys_under_a_test_prefix_are_removed_on_drop() {
    let redis = TestRedis::new();
    let mut conn = redis.connection().await;
    let key = format!("{}counter", redis.prefix());
    let value: i64 = redis::cmd("INCRBY")
        .arg(&key)
        .arg(5)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(value, 5);
    drop(redis);
    let exists: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists);
}

#[tokio::test]
async fn a_usage_event_round_trips_through_the_broker_keyed_by_tenant() {
    let topic = TestTopic::create(3).await;
    let tenant = TenantId::new();
    let event = UsageEvent {
        id: EventId::new(),
        source: Arc::from("test"),
        time: time::OffsetDateTime::now_utc(),
        tenant_id: Some(tenant),
        data: UsageData {
            key_id: Some(KeyId::parse("AbCdEf0123456789").unwrap()),
            route_id: None,
            method: "GET".into(),
            status: 200,
            outcome: Outcome::Proxied,
            request_bytes: 100,
            response_bytes: 200,
            upstream_latency_us: Some(300),
            total_latency_us: 400,
        },
    };
    let payload = event.encode();
    let key = tenant.to_string();
    topic
        .producer()
        .send(
            FutureRecord::to(topic.name()).key(&key).payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();

    let consumer = topic.consumer();
    consumer.subscribe(&[topic.name()]).unwrap();
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("no message within 30 s")
        .unwrap();
    assert_eq!(message.key(), Some(key.as_bytes()));
    assert_eq!(
        UsageEvent::decode(message.payload().unwrap()).unwrap(),
        event
    );
}
