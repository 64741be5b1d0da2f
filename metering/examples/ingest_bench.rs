//! Sustained ingest benchmark (not a test): usage events into PostgreSQL with fsync on.
//!
//! Phase 1 writes batches straight through `UsageStore` (the database's share of the cost);
//! phase 2 produces events to a fresh topic and times the aggregator from Kafka to committed
//! rows. Run with `make bench-ingest` (release build; the local stack must be up). The server's
//! `fsync` and `synchronous_commit` are switched on for the run and restored afterwards.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::float_arithmetic
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::FutureRecord;
use time::OffsetDateTime;
use tokio::sync::watch;
use tollgate_core::{EventId, KeyId, Outcome, TenantId, UsageData, UsageEvent};
use tollgate_metering::{Aggregator, Health, MeteringConfig, Metrics, UsageStore};
use tollgate_test_support::{TestDb, TestTopic};

const DIRECT_EVENTS: usize = 300_000;
// The local broker (tansu, memory storage) accepts only ~500 produced events/s on this
// machine, so the Kafka phase is kept small; production Kafka is not the limit.
const KAFKA_EVENTS: usize = 20_000;
const BATCH: usize = 1000;

fn events(n: usize, tenants: &[TenantId]) -> Vec<UsageEvent> {
    let now = OffsetDateTime::now_utc();
    let key = KeyId::parse("AbCdEf0123456789").unwrap();
    let source: Arc<str> = Arc::from("bench");
    (0..n)
        .map(|i| UsageEvent {
            id: EventId::new(),
            source: source.clone(),
            time: now - time::Duration::milliseconds(i64::try_from(i % 600_000).unwrap()),
            tenant_id: Some(tenants[i % tenants.len()]),
            data: UsageData {
                key_id: Some(key),
                route_id: None,
                method: "GET".into(),
                status: [200, 201, 404, 429][i % 4],
                outcome: Outcome::Proxied,
                request_bytes: 300,
                response_bytes: 1500,
                upstream_latency_us: Some(800),
                total_latency_us: 900,
            },
        })
        .collect()
}

async fn set_durability(db: &TestDb, on: bool) {
    let client = db.client().await;
    let value = if on { "on" } else { "off" };
    // One statement per call: ALTER SYSTEM refuses to run in a multi-statement batch.
    for setting in ["fsync", "synchronous_commit"] {
        client
            .batch_execute(&format!("ALTER SYSTEM SET {setting} = {value}"))
            .await
            .unwrap();
    }
    client
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
}

async fn count(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM usage_events", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let db = TestDb::new().await;
    set_durability(&db, true).await;
    let client = db.client().await;
    let fsync: String = client.query_one("SHOW fsync", &[]).await.unwrap().get(0);
    let sync_commit: String = client
        .query_one("SHOW synchronous_commit", &[])
        .await
        .unwrap()
        .get(0);
    println!("PostgreSQL fsync={fsync} synchronous_commit={sync_commit}; batches of {BATCH}");
    let tenants: Vec<TenantId> = (0..50).map(|_| TenantId::new()).collect();

    // Phase 1: the database alone.
    let direct = events(DIRECT_EVENTS, &tenants);
    let mut store = UsageStore::new(db.url());
    let started = Instant::now();
    for chunk in direct.chunks(BATCH) {
        store.store(chunk).await.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "direct store: {DIRECT_EVENTS} events in {:.2} s = {:.0} events/s",
        elapsed.as_secs_f64(),
        DIRECT_EVENTS as f64 / elapsed.as_secs_f64()
    );

    // Phase 2: Kafka to PostgreSQL through the aggregator.
    let topic = TestTopic::create(6).await;
    let producer = topic.producer();
    let records: Vec<(String, Vec<u8>)> = events(KAFKA_EVENTS, &tenants)
        .iter()
        .map(|e| (e.tenant_id.unwrap().to_string(), e.encode()))
        .collect();
    let produce_started = Instant::now();
    let mut pending = Vec::with_capacity(KAFKA_EVENTS);
    for (key, payload) in &records {
        pending.push(producer.send(
            FutureRecord::to(topic.name()).key(key).payload(payload),
            Duration::from_secs(60),
        ));
        if pending.len() == 5000 {
            for delivery in pending.drain(..) {
                delivery.await.map_err(|(e, _)| e).unwrap();
            }
        }
    }
    for delivery in pending.drain(..) {
        delivery.await.map_err(|(e, _)| e).unwrap();
    }
    println!(
        "produced {KAFKA_EVENTS} events in {:.2} s",
        produce_started.elapsed().as_secs_f64()
    );

    let config = MeteringConfig {
        database_url: db.url().to_owned(),
        kafka_brokers: topic.brokers().to_owned(),
        topic: topic.name().to_owned(),
        dlq_topic: format!("{}-dlq", topic.name()),
        group_id: topic.group_id().to_owned(),
        batch_max_records: BATCH,
        batch_max_wait_ms: 1000,
        ..MeteringConfig::default()
    };
    let (stop, shutdown) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let aggregator = Aggregator::new(config, metrics.clone(), Arc::new(Health::default()));
    let task = tokio::spawn(async move { aggregator.run(shutdown).await });
    let target = i64::try_from(DIRECT_EVENTS + KAFKA_EVENTS).unwrap();
    // Time from the first stored event, so consumer-group join time is not counted.
    while metrics.events_inserted.get() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let first = metrics.events_inserted.get();
    while count(&client).await < target {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let ingested = KAFKA_EVENTS as u64 - first;
    println!(
        "kafka → postgres: {ingested} events in {:.2} s = {:.0} events/s ({} batches)",
        elapsed.as_secs_f64(),
        ingested as f64 / elapsed.as_secs_f64(),
        metrics.batches.get()
    );
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    set_durability(&db, false).await;
}
