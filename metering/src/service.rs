//! The aggregator: consume a batch, dead-letter what cannot be decoded, store the rest in one
//! PostgreSQL transaction, then commit the batch's offsets.
//!
//! Offsets are committed only after the database commit and the dead-letter deliveries, so a
//! crash anywhere replays the batch, and the `(event_id, event_time)` key makes the replay
//! insert (and count) nothing twice. Records of partitions revoked while a batch was open are
//! dropped without committing: the partition's new owner reads them again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::time::Instant;
use tollgate_core::UsageEvent;

use crate::admin::Health;
use crate::config::MeteringConfig;
use crate::metrics::{Metrics, PartitionLabel, ReasonLabel};
use crate::partitions;
use crate::store::UsageStore;

/// The service could not start.
#[derive(Debug, thiserror::Error)]
pub enum MeteringError {
    /// A Kafka client could not be created or subscribed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// How [`Aggregator::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The shutdown signal was received; the last batch was committed or left for replay.
    Shutdown,
    /// A test hook simulated a crash.
    Crashed,
}

/// What a test hook asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookAction {
    /// Carry on.
    Continue,
    /// Stop at once, as if the process died here.
    Crash,
}

type Hook = Arc<dyn Fn() -> HookAction + Send + Sync>;

/// Fault-injection points for tests. Production code leaves them empty.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Runs after a batch's database commit and before its offset commit.
    pub after_db_commit: Option<Hook>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("after_db_commit", &self.after_db_commit.is_some())
            .finish()
    }
}

/// Consumer context: records revocations, reports how many partitions are held and turns
/// librdkafka statistics into lag gauges.
///
/// Each revocation gets a generation number; a record remembers the generation it was
/// received in, so exactly the records received *before* their partition was revoked are
/// dropped. Records received after a partition came back are kept: librdkafka would not
/// deliver them again.
struct PartitionTracker {
    topic: String,
    generation: AtomicU64,
    revocations: Mutex<Vec<(u64, Vec<i32>)>>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl PartitionTracker {
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Whether `partition` was revoked after generation `received`.
    fn revoked_since(&self, partition: i32, received: u64) -> bool {
        self.revocations.lock().is_ok_and(|revocations| {
            revocations.iter().any(|(generation, partitions)| {
                *generation > received && partitions.contains(&partition)
            })
        })
    }

    /// Forgets revocations up to `generation`: no record older than it is still in hand.
    fn forget_until(&self, generation: u64) {
        if let Ok(mut revocations) = self.revocations.lock() {
            revocations.retain(|(g, _)| *g > generation);
        }
    }
}

impl ClientContext for PartitionTracker {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        for (&partition, stats) in &topic.partitions {
            // -1 is librdkafka's internal "unassigned" partition; a negative lag is unknown.
            if partition >= 0 && stats.consumer_lag >= 0 {
                self.metrics
                    .consumer_lag
                    .get_or_create(&PartitionLabel { partition })
                    .set(stats.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for PartitionTracker {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(?partitions, "Partitions revoked.");
            if let Ok(mut revocations) = self.revocations.lock() {
                let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                revocations.push((generation, partitions));
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(?partitions, "Partitions assigned.");
        }
        // Whatever the rebalance was, what this member holds now.
        let held = consumer.assignment().map_or(0, |list| list.count());
        self.health.assignment.set_assigned(held);
        self.metrics
            .assigned_partitions
            .set(i64::try_from(held).unwrap_or(i64::MAX));
    }
}

/// Where a record came from, and the tracker generation it was received in.
#[derive(Debug, Clone, Copy)]
struct Origin {
    partition: i32,
    offset: i64,
    generation: u64,
}

/// A record that cannot be stored, on its way to the dead-letter topic.
#[derive(Debug)]
struct DeadLetter {
    origin: Origin,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    reason: &'static str,
    message: String,
}

#[derive(Debug, Default)]
struct Batch {
    events: Vec<UsageEvent>,
    /// `origins[i]` is where `events[i]` came from.
    origins: Vec<Origin>,
    dead: Vec<DeadLetter>,
    records: usize,
}

impl Batch {
    fn add(&mut self, origin: Origin, key: Option<&[u8]>, payload: Option<&[u8]>) {
        self.records += 1;
        match UsageEvent::decode(payload.unwrap_or_default()) {
            Ok(event) => {
                self.events.push(event);
                self.origins.push(origin);
            }
            Err(e) => self.dead.push(DeadLetter {
                origin,
                key: key.map(<[u8]>::to_vec),
                payload: payload.unwrap_or_default().to_vec(),
                reason: e.code(),
                message: e.to_string(),
            }),
        }
    }

    /// Drops the records whose partition was revoked after they were received; returns how
    /// many were dropped.
    fn drop_revoked(&mut self, tracker: &PartitionTracker) -> usize {
        let before = self.events.len() + self.dead.len();
        let keep: Vec<bool> = self
            .origins
            .iter()
            .map(|o| !tracker.revoked_since(o.partition, o.generation))
            .collect();
        if keep.contains(&false) {
            let mut flags = keep.iter();
            self.events
                .retain(|_| flags.next().copied().unwrap_or(true));
            let mut flags = keep.iter();
            self.origins
                .retain(|_| flags.next().copied().unwrap_or(true));
        }
        self.dead
            .retain(|d| !tracker.revoked_since(d.origin.partition, d.origin.generation));
        before - self.events.len() - self.dead.len()
    }

    /// The offsets to commit: one past the highest record kept, per partition.
    fn offsets(&self) -> BTreeMap<i32, i64> {
        let mut offsets = BTreeMap::new();
        let origins = self
            .origins
            .iter()
            .chain(self.dead.iter().map(|d| &d.origin));
        for origin in origins {
            let next = offsets.entry(origin.partition).or_insert(0);
            *next = (*next).max(origin.offset + 1);
        }
        offsets
    }
}

enum Step {
    Continue,
    Stop,
    Crash,
}

/// The metering service.
#[derive(Debug)]
pub struct Aggregator {
    config: MeteringConfig,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    hooks: Hooks,
}

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const DLQ_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the usage topic's partition count is read, for the stranded check.
const METADATA_EVERY: Duration = Duration::from_secs(5);
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// Partitions of a usage topic this service has to create itself (local runs).
const NEW_TOPIC_PARTITIONS: i32 = 6;

impl Aggregator {
    /// A service with the given settings, reporting into `metrics` and `health`.
    pub fn new(config: MeteringConfig, metrics: Arc<Metrics>, health: Arc<Health>) -> Self {
        Self {
            config,
            metrics,
            health,
            hooks: Hooks::default(),
        }
    }

    /// Installs fault-injection hooks (tests only).
    pub fn with_hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// Consumes until `shutdown` turns true (or a hook crashes it).
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<Exit, MeteringError> {
        let tracker = PartitionTracker {
            topic: self.config.topic.clone(),
            generation: AtomicU64::new(0),
            revocations: Mutex::new(Vec::new()),
            metrics: self.metrics.clone(),
            health: self.health.clone(),
        };
        let consumer: StreamConsumer<PartitionTracker> = ClientConfig::new()
            .set("bootstrap.servers", &self.config.kafka_brokers)
            .set("group.id", &self.config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // `latest` silently skips whatever arrived before the group first started.
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                self.config.session_timeout_ms.to_string(),
            )
            .set("statistics.interval.ms", "5000")
            .set("client.id", "tollgate-metering")
            .create_with_context(tracker)?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.config.kafka_brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .set("client.id", "tollgate-metering-dlq")
            .create()?;

        self.ensure_topics().await;
        let mut store = UsageStore::new(&self.config.database_url);
        if !self.connect_database(&mut store, &mut shutdown).await {
            return Ok(Exit::Shutdown);
        }
        consumer.subscribe(&[&self.config.topic])?;
        self.health.consuming.store(true, Ordering::Relaxed);
        tracing::info!(topic = %self.config.topic, group = %self.config.group_id, "Consuming.");

        let consumer = Arc::new(consumer);
        // The watcher holds a clone of the consumer. It is stopped and awaited below rather
        // than aborted: an aborted watcher's metadata request runs on in a blocking thread,
        // which would then close and destroy the consumer there, after `run` has returned.
        let (stop_watcher, watcher_stopped) = watch::channel(false);
        let watcher = tokio::spawn(watch_topic_partitions(
            consumer.clone(),
            self.config.topic.clone(),
            self.health.clone(),
            self.metrics.clone(),
            watcher_stopped,
        ));
        let exit = loop {
            let Some((batch, started)) = self.collect(&consumer, &mut shutdown).await else {
                break Exit::Shutdown;
            };
            match self
                .process(
                    batch,
                    started,
                    &consumer,
                    &producer,
                    &mut store,
                    &mut shutdown,
                )
                .await
            {
                Step::Continue => {}
                Step::Stop => break Exit::Shutdown,
                Step::Crash => break Exit::Crashed,
            }
        };
        let _ = stop_watcher.send(true);
        let _ = watcher.await;
        self.health.consuming.store(false, Ordering::Relaxed);
        Ok(exit)
    }

    /// Creates the usage and dead-letter topics if they do not exist yet (production provisions
    /// them; a fresh local broker does not have them). Failures are logged, not fatal.
    async fn ensure_topics(&self) {
        let admin: Result<AdminClient<DefaultClientContext>, _> = ClientConfig::new()
            .set("bootstrap.servers", &self.config.kafka_brokers)
            .create();
        let admin = match admin {
            Ok(admin) => admin,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot create a Kafka admin client.");
                return;
            }
        };
        let topics = [
            NewTopic::new(
                &self.config.topic,
                NEW_TOPIC_PARTITIONS,
                TopicReplication::Fixed(1),
            ),
            NewTopic::new(&self.config.dlq_topic, 1, TopicReplication::Fixed(1)),
        ];
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        match admin.create_topics(&topics, &options).await {
            Ok(results) => {
                for result in results {
                    match result {
                        Ok(topic) => tracing::info!(%topic, "Topic created."),
                        Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((topic, code)) => tracing::warn!(%topic, %code, "Topic not created."),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "Could not ensure topics exist."),
        }
    }

    /// Connects to PostgreSQL (retrying) and prepares storage; false if shut down meanwhile.
    async fn connect_database(
        &self,
        store: &mut UsageStore,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut backoff = BACKOFF_START;
        loop {
            match store.client().await {
                Ok(_) => break,
                Err(e) => {
                    self.health.database_ok.store(false, Ordering::Relaxed);
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis(), "PostgreSQL unavailable.");
                    if !sleep_unless_shutdown(backoff, shutdown).await {
                        return false;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        self.health.database_ok.store(true, Ordering::Relaxed);
        true
    }

    /// Waits for a first record, then gathers more until the batch is full or `max_wait` has
    /// passed since the first. `None` on shutdown.
    async fn collect(
        &self,
        consumer: &StreamConsumer<PartitionTracker>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<(Batch, Instant)> {
        let mut batch = Batch::default();
        let mut started = None;
        loop {
            let deadline = started.map(|s: Instant| s + self.config.batch_max_wait());
            let received = tokio::select! {
                received = consumer.recv() => received,
                _ = shutdown.wait_for(|stop| *stop) => return None,
                () = sleep_until_opt(deadline) => break,
            };
            match received {
                Ok(message) => {
                    let origin = Origin {
                        partition: message.partition(),
                        offset: message.offset(),
                        generation: consumer.context().generation(),
                    };
                    batch.add(origin, message.key(), message.payload());
                    started.get_or_insert_with(Instant::now);
                }
                Err(e) => tracing::warn!(error = %e, "Kafka consumer error."),
            }
            if batch.records >= self.config.batch_max_records {
                break;
            }
        }
        started.map(|s| (batch, s))
    }

    async fn process(
        &self,
        mut batch: Batch,
        started: Instant,
        consumer: &Arc<StreamConsumer<PartitionTracker>>,
        producer: &FutureProducer,
        store: &mut UsageStore,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Step {
        let tracker = consumer.context();
        self.drop_revoked(&mut batch, tracker);

        for dead in &batch.dead {
            if !self.dead_letter(producer, dead, shutdown).await {
                return Step::Stop;
            }
        }

        let events = &batch.events;
        let mut backoff = BACKOFF_START;
        let stored = loop {
            match store.store(events).await {
                Ok(stored) => {
                    self.health.database_ok.store(true, Ordering::Relaxed);
                    break stored;
                }
                Err(e) => {
                    self.metrics.db_errors.inc();
                    self.health.database_ok.store(false, Ordering::Relaxed);
                    tracing::warn!(error = %e, events = events.len(), retry_in_ms = backoff.as_millis(),
                        "Storing the batch failed; retrying without committing offsets.");
                    if !sleep_unless_shutdown(backoff, shutdown).await {
                        return Step::Stop;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        };
        self.metrics.events_inserted.inc_by(stored.inserted);
        self.metrics.events_duplicate.inc_by(stored.duplicates);

        if let Some(hook) = &self.hooks.after_db_commit
            && hook() == HookAction::Crash
        {
            return Step::Crash;
        }

        // A partition revoked while we wrote belongs to someone else now: don't commit for it.
        let generation = tracker.generation();
        self.drop_revoked(&mut batch, tracker);
        let mut offsets = TopicPartitionList::new();
        for (partition, next) in batch.offsets() {
            if let Err(e) =
                offsets.add_partition_offset(&self.config.topic, partition, Offset::Offset(next))
            {
                tracing::warn!(error = %e, partition, "Could not build the offset list.");
            }
        }
        if offsets.count() > 0 {
            let consumer = consumer.clone();
            let committed =
                tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync))
                    .await;
            match committed {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.metrics.commit_failures.inc();
                    tracing::warn!(error = %e, "Offset commit failed; the batch will be re-read and deduplicated.");
                }
                Err(e) => {
                    self.metrics.commit_failures.inc();
                    tracing::warn!(error = %e, "Offset commit task failed.");
                }
            }
        }
        // Every record received up to `generation` has now been stored or dropped.
        tracker.forget_until(generation);
        self.metrics.batches.inc();
        self.metrics.batch_records.observe(batch.records as f64);
        self.metrics
            .batch_duration_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(
            records = batch.records,
            inserted = stored.inserted,
            duplicates = stored.duplicates,
            dead_lettered = batch.dead.len(),
            "Batch committed."
        );
        Step::Continue
    }

    fn drop_revoked(&self, batch: &mut Batch, tracker: &PartitionTracker) {
        let dropped = batch.drop_revoked(tracker);
        if dropped > 0 {
            self.metrics.revoked_records.inc_by(dropped as u64);
            tracing::info!(
                dropped,
                "Dropped records of revoked partitions; their new owner re-reads them."
            );
        }
    }

    /// Produces one dead letter, retrying until delivered; false if shut down meanwhile.
    async fn dead_letter(
        &self,
        producer: &FutureProducer,
        dead: &DeadLetter,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let partition = dead.origin.partition.to_string();
        let offset = dead.origin.offset.to_string();
        let mut backoff = BACKOFF_START;
        loop {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "dlq.reason",
                    value: Some(dead.reason),
                })
                .insert(Header {
                    key: "dlq.error",
                    value: Some(dead.message.as_str()),
                })
                .insert(Header {
                    key: "dlq.source.topic",
                    value: Some(self.config.topic.as_str()),
                })
                .insert(Header {
                    key: "dlq.source.partition",
                    value: Some(partition.as_str()),
                })
                .insert(Header {
                    key: "dlq.source.offset",
                    value: Some(offset.as_str()),
                });
            let mut record = FutureRecord::to(&self.config.dlq_topic)
                .payload(&dead.payload)
                .headers(headers);
            if let Some(key) = &dead.key {
                record = record.key(key);
            }
            match producer.send(record, DLQ_TIMEOUT).await {
                Ok(_) => {
                    self.metrics
                        .dead_lettered
                        .get_or_create(&ReasonLabel {
                            reason: dead.reason,
                        })
                        .inc();
                    tracing::info!(
                        reason = dead.reason,
                        partition = dead.origin.partition,
                        offset = dead.origin.offset,
                        "Record dead-lettered."
                    );
                    return true;
                }
                Err((e, _)) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis(), "Dead-lettering failed; retrying.");
                    if !sleep_unless_shutdown(backoff, shutdown).await {
                        return false;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

/// Reads the usage topic's partition count every [`METADATA_EVERY`] until `shutdown` turns true
/// or its sender is gone (the consumer loop ended): with it, `/ready` can tell a consumer left
/// without partitions from a topic that has none.
async fn watch_topic_partitions(
    consumer: Arc<StreamConsumer<PartitionTracker>>,
    topic: String,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (client, name) = (consumer.clone(), topic.clone());
        let fetched = tokio::task::spawn_blocking(move || {
            let metadata = client.fetch_metadata(Some(&name), METADATA_TIMEOUT)?;
            Ok::<_, KafkaError>(
                metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == name && t.error().is_none())
                    .map(|t| t.partitions().len()),
            )
        })
        .await;
        match fetched {
            Ok(Ok(Some(partitions))) => {
                health.assignment.set_topic_partitions(partitions);
                metrics
                    .topic_partitions
                    .set(i64::try_from(partitions).unwrap_or(i64::MAX));
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "Reading the usage topic's metadata failed."),
            Err(e) => tracing::debug!(error = %e, "The metadata task failed."),
        }
        if !sleep_unless_shutdown(METADATA_EVERY, &mut shutdown).await {
            return;
        }
    }
}

/// Keeps daily partitions ahead and drops expired ones, hourly, until shutdown.
pub async fn run_storage_upkeep(config: MeteringConfig, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(e) = upkeep_once(&config).await {
            tracing::warn!(error = %e, "Storage upkeep failed; retrying in an hour.");
        }
        if !sleep_unless_shutdown(Duration::from_secs(3600), &mut shutdown).await {
            return;
        }
    }
}

/// One upkeep pass on its own connection.
pub async fn upkeep_once(
    config: &MeteringConfig,
) -> Result<partitions::StorageMode, tokio_postgres::Error> {
    let mut pg: tokio_postgres::Config = config.database_url.parse()?;
    pg.connect_timeout(Duration::from_secs(5));
    let (mut client, connection) = pg.connect(tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(connection);
    let mode = partitions::prepare_storage(
        &mut client,
        config.retention_days,
        config.compress_after_days,
    )
    .await?;
    if mode == partitions::StorageMode::NativePartitions {
        let report = partitions::upkeep(
            &mut client,
            partitions::today_utc(),
            config.partitions_ahead_days,
            config.retention_days,
        )
        .await?;
        if !report.created.is_empty() || !report.dropped.is_empty() {
            tracing::info!(created = ?report.created, dropped = ?report.dropped, "Usage partitions maintained.");
        }
    }
    drop(client);
    let _ = driver.await;
    Ok(mode)
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Sleeps for `duration`; false if shutdown was signalled first.
async fn sleep_unless_shutdown(duration: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        _ = shutdown.wait_for(|stop| *stop) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> PartitionTracker {
        PartitionTracker {
            topic: "t".into(),
            generation: AtomicU64::new(0),
            revocations: Mutex::new(Vec::new()),
            metrics: Arc::new(Metrics::new()),
            health: Arc::new(Health::default()),
        }
    }

    fn revoke(tracker: &PartitionTracker, partitions: Vec<i32>) {
        let generation = tracker.generation.fetch_add(1, Ordering::SeqCst) + 1;
        tracker
            .revocations
            .lock()
            .unwrap()
            .push((generation, partitions));
    }

    fn origin(partition: i32, offset: i64, generation: u64) -> Origin {
        Origin {
            partition,
            offset,
            generation,
        }
    }

    #[test]
    fn offsets_are_one_past_the_highest_kept_record_per_partition() {
        let mut batch = Batch::default();
        batch.add(origin(0, 7, 0), None, Some(b"bad"));
        batch.add(origin(0, 3, 0), None, Some(b"bad"));
        batch.add(origin(1, 10, 0), None, None);
        assert_eq!(batch.offsets(), BTreeMap::from([(0, 8), (1, 11)]));
        assert_eq!(batch.records, 3);
    }

    #[test]
    fn only_records_received_before_their_partition_was_revoked_are_dropped() {
        let tracker = tracker();
        let mut batch = Batch::default();
        batch.add(origin(0, 1, 0), None, Some(b"x"));
        batch.add(origin(1, 1, 0), None, Some(b"x"));
        revoke(&tracker, vec![0, 1]);
        // Partition 1 came back: what was received after that is ours to commit.
        batch.add(origin(1, 1, 1), None, Some(b"x"));
        assert_eq!(batch.drop_revoked(&tracker), 2);
        assert_eq!(batch.offsets(), BTreeMap::from([(1, 2)]));

        tracker.forget_until(1);
        assert!(!tracker.revoked_since(0, 0));
    }
}
