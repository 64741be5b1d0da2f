//! The aggregator against the real broker and PostgreSQL: exact totals through duplicates,
//! malformed records, a crash between the database and offset commits, a consumer leaving
//! the group, and a PostgreSQL outage.
// Helpers outside #[test] fns: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tollgate_core::latency::{LatencyHistogram, PercentileEstimate};
use tollgate_core::{EventId, KeyId, Outcome, TenantId, UsageData, UsageEvent};
use tollgate_metering::{Aggregator, Exit, Health, HookAction, Hooks, MeteringConfig, Metrics};
use tollgate_test_support::{FaultyLink, TestDb, TestTopic};

fn config(db_url: &str, topic: &TestTopic) -> MeteringConfig {
    MeteringConfig {
        database_url: db_url.to_owned(),
        kafka_brokers: topic.brokers().to_owned(),
        topic: topic.name().to_owned(),
        dlq_topic: format!("{}-dlq", topic.name()),
        group_id: topic.group_id().to_owned(),
        session_timeout_ms: 6000,
        batch_max_records: 100,
        batch_max_wait_ms: 200,
        ..MeteringConfig::default()
    }
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<Exit>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl Running {
    fn start(config: MeteringConfig, hooks: Hooks) -> Self {
        // Logs show with --nocapture and TOLLGATE_LOG=info.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
            )
            .with_test_writer()
            .try_init();
        let (stop, shutdown) = watch::channel(false);
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::new(config.unassigned_grace()));
        let aggregator = Aggregator::new(config, metrics.clone(), health.clone()).with_hooks(hooks);
        let task = tokio::spawn(async move { aggregator.run(shutdown).await.unwrap() });
        Self {
            stop,
            task,
            metrics,
            health,
        }
    }

    async fn stop(self) -> Exit {
        self.stop.send(true).unwrap();
        self.task.await.unwrap()
    }
}

fn event(tenant: TenantId, minute: i64, status: u16) -> UsageEvent {
    let base = OffsetDateTime::now_utc()
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap();
    UsageEvent {
        id: EventId::new(),
        source: Arc::from("test-proxy"),
        time: base - time::Duration::minutes(minute) + time::Duration::seconds(minute % 60),
        tenant_id: Some(tenant),
        data: UsageData {
            key_id: Some(KeyId::parse("AbCdEf0123456789").unwrap()),
            route_id: None,
            method: "GET".into(),
            status,
            outcome: if status == 429 {
                Outcome::RateLimited
            } else {
                Outcome::Proxied
            },
            request_bytes: 100,
            response_bytes: 1000 + u64::from(status),
            upstream_latency_us: Some(500),
            total_latency_us: 700,
        },
    }
}

async fn produce(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

async fn produce_events(producer: &FutureProducer, topic: &str, events: &[UsageEvent]) {
    for e in events {
        let key = e.tenant_id.map(|t| t.to_string()).unwrap_or_default();
        produce(producer, topic, &key, &e.encode()).await;
    }
}

/// Awaits `condition`, checking every 50 ms, for at most `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stored_events(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM usage_events", &[])
        .await
        .map(|row| row.get(0))
        .unwrap_or(-1)
}

/// Requests counted in `usage_minute`.
async fn rolled_up_requests(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT coalesce(sum(request_count), 0)::int8 FROM usage_minute",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// `usage_minute` equals a fresh aggregation of `usage_events`, row for row.
async fn assert_rollup_matches_events(client: &tokio_postgres::Client) {
    let mismatches: i64 = client
        .query_one(
            "WITH direct AS (
                SELECT date_trunc('minute', event_time) AS minute, tenant_id, key_id, route_id,
                       status / 100 AS status_class, count(*) AS request_count,
                       count(*) FILTER (WHERE outcome = 'proxied') AS billable_count,
                       sum(request_bytes) AS request_bytes, sum(response_bytes) AS response_bytes,
                       sum(total_latency_us) AS latency_us_sum
                FROM usage_events GROUP BY 1, 2, 3, 4, 5),
             rolled AS (
                SELECT minute, tenant_id, key_id, route_id, status_class::int, request_count,
                       billable_count, request_bytes::numeric, response_bytes::numeric,
                       latency_us_sum::numeric FROM usage_minute)
             SELECT (SELECT count(*) FROM (SELECT * FROM direct EXCEPT SELECT * FROM rolled) a)
                  + (SELECT count(*) FROM (SELECT * FROM rolled EXCEPT SELECT * FROM direct) b)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        mismatches, 0,
        "usage_minute differs from a direct aggregation"
    );
    assert_histograms_match_events(client).await;
}

/// Every `usage_minute` histogram equals one built in Rust from the stored events' latencies.
async fn assert_histograms_match_events(client: &tokio_postgres::Client) {
    type RowKey = (
        OffsetDateTime,
        Option<uuid::Uuid>,
        Option<String>,
        Option<uuid::Uuid>,
        i32,
    );
    let mut expected: HashMap<RowKey, LatencyHistogram> = HashMap::new();
    for row in client
        .query(
            "SELECT date_trunc('minute', event_time), tenant_id, key_id, route_id, \
                    (status / 100)::int4, total_latency_us FROM usage_events",
            &[],
        )
        .await
        .unwrap()
    {
        let key = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let latency: i64 = row.get(5);
        expected
            .entry(key)
            .or_default()
            .record(u64::try_from(latency).unwrap());
    }
    let mut stored: HashMap<RowKey, LatencyHistogram> = HashMap::new();
    for row in client
        .query(
            "SELECT minute, tenant_id, key_id, route_id, status_class::int4, latency_histogram \
               FROM usage_minute",
            &[],
        )
        .await
        .unwrap()
    {
        let key = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let counts: Vec<i64> = row.get(5);
        stored.insert(key, LatencyHistogram::from_stored(&counts).unwrap());
    }
    assert_eq!(
        stored, expected,
        "latency histograms differ from the events"
    );
}

/// The tenant's latency histogram over all its minutes.
async fn tenant_histogram(client: &tokio_postgres::Client, tenant: TenantId) -> LatencyHistogram {
    let counts: Vec<i64> = client
        .query_one(
            "SELECT tollgate_latency_histogram_sum(latency_histogram) FROM usage_minute \
              WHERE tenant_id = $1",
            &[tenant.as_uuid()],
        )
        .await
        .unwrap()
        .get(0);
    LatencyHistogram::from_stored(&counts).unwrap()
}

async fn read_dead_letters(
    topic: &TestTopic,
    dlq: &str,
    expected: usize,
) -> Vec<(String, String, String)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", topic.brokers())
        .set("group.id", format!("{}-dlq-reader", topic.group_id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[dlq]).unwrap();
    let mut letters = Vec::new();
    while letters.len() < expected {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("dead letters within 30 s")
            .unwrap();
        let headers = message.headers().unwrap();
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        assert_eq!(header("dlq.source.topic"), topic.name());
        assert!(header("dlq.source.partition").parse::<i32>().is_ok());
        assert!(header("dlq.source.offset").parse::<i64>().is_ok());
        assert!(!header("dlq.error").is_empty());
        letters.push((
            header("dlq.reason"),
            String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            header("dlq.error"),
        ));
    }
    letters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_valid_events_are_stored_once_and_malformed_ones_dead_lettered() {
    let db = TestDb::new().await;
    let topic = TestTopic::create(3).await;
    let producer = topic.producer();
    let tenants = [TenantId::new(), TenantId::new(), TenantId::new()];
    // 300 distinct events spread over 25 minutes, produced out of time order.
    let events: Vec<UsageEvent> = (0..300)
        .map(|i| {
            event(
                tenants[i % 3],
                i64::try_from((i * 7) % 25).unwrap(),
                [200, 404, 429, 503][i % 4],
            )
        })
        .enumerate()
        .map(|(i, mut e)| {
            // Latencies over many histogram buckets, 0 to ~300 ms.
            e.data.total_latency_us = u64::try_from(i * i * 3 + 17).unwrap();
            e
        })
        .collect();
    produce_events(&producer, topic.name(), &events).await;
    // 60 duplicates: the same events delivered again, as a producer retry or replay would.
    produce_events(&producer, topic.name(), &events[..60]).await;
    // Malformed and unknown-version records.
    let mut future = serde_json::from_slice::<serde_json::Value>(&events[0].encode()).unwrap();
    future["type"] = "tollgate.request.v2".into();
    let mut bad_status = serde_json::from_slice::<serde_json::Value>(&events[1].encode()).unwrap();
    bad_status["data"]["status"] = 42.into();
    let bad = [
        b"not json at all".to_vec(),
        future.to_string().into_bytes(),
        bad_status.to_string().into_bytes(),
        Vec::new(),
    ];
    for payload in &bad {
        produce(&producer, topic.name(), "bad", payload).await;
    }

    let config = config(db.url(), &topic);
    let dlq = config.dlq_topic.clone();
    let running = Running::start(config, Hooks::default());
    let client = db.client().await;
    let metrics = running.metrics.clone();
    eventually(
        Duration::from_secs(60),
        "every record to be processed",
        || {
            let metrics = metrics.clone();
            let client = &client;
            async move {
                stored_events(client).await == 300
                    && metrics.events_duplicate.get() == 60
                    && dead_lettered(&metrics, "malformed")
                        + dead_lettered(&metrics, "unknown_type")
                        == 4
            }
        },
    )
    .await;
    assert!(running.health.ready());
    assert_eq!(running.stop().await, Exit::Shutdown);

    let total = rolled_up_requests(&client).await;
    assert_eq!(total, 300);
    let billable: i64 = client
        .query_one("SELECT sum(billable_count)::int8 FROM usage_minute", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(billable, 225, "429s are counted but not billable");
    assert_rollup_matches_events(&client).await;

    let letters = read_dead_letters(&topic, &dlq, 4).await;
    let mut reasons: Vec<&str> = letters.iter().map(|(r, _, _)| r.as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        ["malformed", "malformed", "malformed", "unknown_type"]
    );
    assert!(
        letters
            .iter()
            .any(|(_, payload, _)| payload == "not json at all")
    );
    assert!(
        letters
            .iter()
            .any(|(_, _, error)| error.contains("data.status"))
    );
}

/// One label's count. The guard `get_or_create` returns must be dropped before the next call,
/// which may need the family's write lock to insert a new label.
fn dead_lettered(metrics: &Metrics, reason: &'static str) -> u64 {
    let label = tollgate_metering::metrics::ReasonLabel { reason };
    metrics.dead_lettered.get_or_create(&label).get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p95_latency_comes_out_of_real_events_and_redelivery_does_not_skew_it() {
    let db = TestDb::new().await;
    let topic = TestTopic::create(2).await;
    let producer = topic.producer();
    let tenant = TenantId::new();
    // 200 requests in one minute taking 0, 1, …, 199 ms: the nearest-rank p95 is the 190th,
    // 189 ms, in the bucket [150 ms, 200 ms) that holds the 50 requests from 150 ms up.
    let events: Vec<UsageEvent> = (0..200u64)
        .map(|ms| {
            let mut e = event(tenant, 1, 200);
            e.data.total_latency_us = ms * 1000;
            e
        })
        .collect();
    produce_events(&producer, topic.name(), &events).await;
    // The slow quarter delivered twice: counted twice, it would pull the p95 up.
    produce_events(&producer, topic.name(), &events[150..]).await;
    let running = Running::start(config(db.url(), &topic), Hooks::default());
    let client = db.client().await;
    let metrics = running.metrics.clone();
    eventually(Duration::from_secs(60), "every event and duplicate", || {
        let metrics = metrics.clone();
        let client = &client;
        async move { stored_events(client).await == 200 && metrics.events_duplicate.get() == 50 }
    })
    .await;
    running.stop().await;

    let histogram = tenant_histogram(&client, tenant).await;
    assert_eq!(histogram.total(), 200);
    // 150 before the bucket, rank 190 is its 40th of 50: 150 + 50 × 40/50 = 190 ms.
    assert_eq!(
        histogram.percentile(95),
        Some(PercentileEstimate {
            estimate_us: 190_000,
            at_least_us: 150_000,
            below_us: Some(200_000),
        })
    );
    assert_rollup_matches_events(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_database_and_offset_commit_changes_no_totals() {
    let db = TestDb::new().await;
    let topic = TestTopic::create(2).await;
    let tenant = TenantId::new();
    let events: Vec<UsageEvent> = (0..250).map(|i| event(tenant, i % 5, 200)).collect();
    produce_events(&topic.producer(), topic.name(), &events).await;

    let crash_after_first_commit = Hooks {
        after_db_commit: Some(Arc::new(|| HookAction::Crash)),
    };
    let crashed = Running::start(config(db.url(), &topic), crash_after_first_commit);
    assert_eq!(crashed.task.await.unwrap(), Exit::Crashed);
    let client = db.client().await;
    let before_restart = stored_events(&client).await;
    assert!(
        before_restart > 0,
        "the first batch was committed to the database"
    );

    let restarted = Running::start(config(db.url(), &topic), Hooks::default());
    eventually(
        Duration::from_secs(60),
        "all events after restart",
        || async { stored_events(&client).await == 250 },
    )
    .await;
    let metrics = restarted.metrics.clone();
    eventually(
        Duration::from_secs(30),
        "the replayed batch to be skipped",
        || {
            let metrics = metrics.clone();
            async move { metrics.events_duplicate.get() >= u64::try_from(before_restart).unwrap() }
        },
    )
    .await;
    restarted.stop().await;
    let total = rolled_up_requests(&client).await;
    assert_eq!(total, 250, "the replayed batch was not counted twice");
    assert_rollup_matches_events(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_split_the_partitions_and_totals_stay_exact_when_one_leaves() {
    let db = TestDb::new().await;
    let topic = TestTopic::create(4).await;
    let producer = topic.producer();
    let tenants: Vec<TenantId> = (0..16).map(|_| TenantId::new()).collect();
    let batch = |n: usize| -> Vec<UsageEvent> {
        (0..n)
            .map(|i| event(tenants[i % tenants.len()], 1, 200))
            .collect()
    };
    produce_events(&producer, topic.name(), &batch(400)).await;

    let first = Running::start(config(db.url(), &topic), Hooks::default());
    let second = Running::start(config(db.url(), &topic), Hooks::default());
    let (m1, m2) = (first.metrics.clone(), second.metrics.clone());
    // Keep producing until both members have stored something: the partitions are split.
    let produced = AtomicUsize::new(400);
    eventually(
        Duration::from_secs(60),
        "both consumers to take partitions",
        || {
            let (m1, m2) = (m1.clone(), m2.clone());
            let (producer, produced, batch, topic) = (&producer, &produced, &batch, &topic);
            async move {
                if m1.events_inserted.get() > 0 && m2.events_inserted.get() > 0 {
                    return true;
                }
                produce_events(producer, topic.name(), &batch(20)).await;
                produced.fetch_add(20, Ordering::SeqCst);
                false
            }
        },
    )
    .await;

    // One member leaves mid-stream; the other takes over its partitions.
    assert_eq!(second.stop().await, Exit::Shutdown);
    produce_events(&producer, topic.name(), &batch(300)).await;
    let expected = i64::try_from(produced.load(Ordering::SeqCst) + 300).unwrap();
    let client = db.client().await;
    eventually(Duration::from_secs(60), "every event", || async {
        stored_events(&client).await == expected
    })
    .await;
    first.stop().await;
    let total = rolled_up_requests(&client).await;
    assert_eq!(total, expected);
    assert_rollup_matches_events(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_left_without_partitions_is_not_ready_and_says_why() {
    let db = TestDb::new().await;
    // One partition for two members: one of them holds nothing, as a stranded member would.
    let topic = TestTopic::create(1).await;
    let config = MeteringConfig {
        unassigned_grace_ms: 6000,
        ..config(db.url(), &topic)
    };
    let first = Running::start(config.clone(), Hooks::default());
    let second = Running::start(config, Hooks::default());
    let (h1, h2) = (first.health.clone(), second.health.clone());
    eventually(
        Duration::from_secs(60),
        "the partition to be assigned",
        || {
            let (h1, h2) = (h1.clone(), h2.clone());
            async move { h1.assignment.assigned() + h2.assignment.assigned() == 1 }
        },
    )
    .await;
    // Which member ends up idle is the group's choice, and the partition may still move while
    // the second member joins (slowly on a loaded machine): wait until one member reports itself
    // stranded while the other holds the partition and is ready.
    let settled = |idle: &Health, holder: &Health| {
        idle.assignment.stranded().is_some() && holder.assignment.assigned() == 1 && holder.ready()
    };
    eventually(
        Duration::from_secs(60),
        "one member stranded while the other holds the partition",
        || async { settled(&h1, &h2) || settled(&h2, &h1) },
    )
    .await;
    let (holder, idle, idle_metrics) = if settled(&h2, &h1) {
        (&h1, &h2, &second.metrics)
    } else {
        (&h2, &h1, &first.metrics)
    };
    let reason = idle.not_ready_reason().unwrap();
    assert!(
        reason.contains("no partitions assigned") && reason.contains("the topic has 1"),
        "{reason}"
    );
    assert!(holder.ready(), "{:?}", holder.not_ready_reason());
    let rendered =
        idle_metrics.render(tollgate_core::metrics_exposition::Exposition::PrometheusText);
    assert!(
        rendered.contains("metering_assigned_partitions 0"),
        "{rendered}"
    );
    assert!(
        rendered.contains("metering_topic_partitions 1"),
        "{rendered}"
    );
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_loses_and_doubles_nothing() {
    let db = TestDb::new().await;
    let topic = TestTopic::create(2).await;
    let link = FaultyLink::start(db.server_addr()).await;
    let running = Running::start(config(&db.url_via(link.addr()), &topic), Hooks::default());
    let producer = topic.producer();
    let tenant = TenantId::new();
    let client = db.client().await;

    produce_events(
        &producer,
        topic.name(),
        &(0..100).map(|_| event(tenant, 0, 200)).collect::<Vec<_>>(),
    )
    .await;
    eventually(Duration::from_secs(60), "the first events", || async {
        stored_events(&client).await == 100
    })
    .await;

    link.cut();
    let outage = tokio::time::Instant::now();
    // Keep traffic flowing through the whole outage.
    let mut produced = 100;
    while outage.elapsed() < Duration::from_secs(10) {
        produce_events(
            &producer,
            topic.name(),
            &(0..25).map(|_| event(tenant, 0, 200)).collect::<Vec<_>>(),
        )
        .await;
        produced += 25;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        !running.health.ready(),
        "/ready reports the database outage"
    );
    assert!(running.metrics.db_errors.get() > 0);
    assert_eq!(
        stored_events(&client).await,
        100,
        "nothing is stored while the database is away"
    );
    link.restore();

    eventually(
        Duration::from_secs(60),
        "every event after recovery",
        || async { stored_events(&client).await == produced },
    )
    .await;
    let health = running.health.clone();
    eventually(Duration::from_secs(10), "readiness to return", || {
        let health = health.clone();
        async move { health.ready() }
    })
    .await;
    running.stop().await;
    let total = rolled_up_requests(&client).await;
    assert_eq!(total, produced);
    assert_rollup_matches_events(&client).await;
}
