//! The usage pipeline: a cheap handle the request path submits events through
//! ([`UsageSink`]), and the background service that produces them to Kafka, spools what Kafka
//! cannot take and replays the spool once Kafka is back ([`UsagePipeline`]).
//!
//! The request path only ever calls `try_send`: into the producer queue, or when that is full
//! into the spool writer's queue; an event is dropped (and counted) only when both are full.
//! The service runs on its own thread with a current-thread runtime, like the config loader.
//! It owns an idempotent rdkafka producer (`acks=all`); events the producer's bounded queue
//! refuses (`QueueFull`) and events whose delivery fails go to the spool writer. Replay reads
//! the spool in order and acknowledges each record once Kafka has it, which is what allows a
//! segment to be deleted. While the broker looks unhealthy (a recent failure or full queue),
//! replay keeps a single probe event in flight; after a success it opens its full window.
//! When Kafka has acknowledged nothing for `stall_ms` while events are outstanding (a paused
//! or unreachable broker), new events go straight to the spool until it answers again, so an
//! event waits in memory for at most that long and a hard crash loses at most that window.
//! On shutdown the service flushes until the deadline, then purges what librdkafka still
//! holds (purged events come back through delivery reports with their payload) and spools it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::{mpsc, watch};
use tollgate_core::UsageEvent;

use super::config::{UsageConfig, UsageConfigError};
use super::metrics::{DropReason, UsageMetrics, gauge_value};
use super::spool::{RecordPos, SpoolError, SpooledRecord, UsageSpool};
use super::spool_writer::{self, SpoolItem, decode_record, encode_record, lock, tenant_key};

/// Opaque of a live event's delivery; replayed records carry a ticket ≥ 1.
const LIVE: usize = 0;
/// Events or delivery reports handled per wake-up.
const BATCH: usize = 512;
/// How often gauges are refreshed and the spool is checked for replay.
const TICK: Duration = Duration::from_millis(50);
/// While events keep arriving, how often the service thread collects them (and delivery
/// reports): the most an event waits before it is handed to the producer.
const DRAIN_EVERY: Duration = Duration::from_millis(2);
/// After the deadline, how long librdkafka gets to hand back purged events.
const PURGE_GRACE: Duration = Duration::from_secs(2);

/// The pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] UsageConfigError),
    /// The spool directory could not be opened.
    #[error("usage spool: {0}")]
    Spool(#[from] SpoolError),
    /// The Kafka producer could not be created from the settings.
    #[error("usage producer: {0}")]
    Kafka(#[from] KafkaError),
    /// A thread or runtime could not be started.
    #[error("usage pipeline thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// What became of a submitted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Queued for the producer.
    Queued,
    /// The producer queue was full: queued for the spool.
    Spooling,
    /// Lost (counted in `usage_events_dropped_total`).
    Dropped,
}

struct Shared {
    metrics: UsageMetrics,
    spool_items: SyncSender<SpoolItem>,
    /// Set once the spool writer stops taking items.
    closed: Arc<AtomicBool>,
}

/// The request path's handle: cheap to clone, never blocks, never awaits, never touches disk.
#[derive(Clone)]
pub struct UsageSink {
    events: mpsc::Sender<UsageEvent>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for UsageSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageSink")
            .field(
                "queued",
                &(self.events.max_capacity() - self.events.capacity()),
            )
            .finish_non_exhaustive()
    }
}

impl UsageSink {
    /// Queues `event` for Kafka; when that queue is full, for the spool; when both are full,
    /// drops and counts it.
    pub fn submit(&self, event: UsageEvent) -> Submitted {
        let shared = &self.shared;
        let event = match self.events.try_send(event) {
            Ok(()) => return Submitted::Queued,
            Err(
                mpsc::error::TrySendError::Full(event) | mpsc::error::TrySendError::Closed(event),
            ) => event,
        };
        if shared.closed.load(Ordering::SeqCst) {
            shared.metrics.drop_events(DropReason::Shutdown, 1);
            return Submitted::Dropped;
        }
        match shared
            .spool_items
            .try_send(SpoolItem::Event(Box::new(event)))
        {
            Ok(()) => Submitted::Spooling,
            Err(TrySendError::Full(_)) => {
                shared.metrics.drop_events(DropReason::QueueFull, 1);
                Submitted::Dropped
            }
            Err(TrySendError::Disconnected(_)) => {
                shared.metrics.drop_events(DropReason::Shutdown, 1);
                Submitted::Dropped
            }
        }
    }
}

/// The background part: owns the service thread. Shut it down with
/// [`UsagePipeline::shutdown`]; dropping it shuts down with a 5-second deadline.
pub struct UsagePipeline {
    sink: UsageSink,
    metrics: UsageMetrics,
    stop: watch::Sender<Option<Instant>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for UsagePipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsagePipeline")
            .field("running", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

impl UsagePipeline {
    /// Validates `config`, opens the spool, creates the producer and starts the service
    /// thread (which first replays whatever an earlier process left in the spool).
    pub fn start(config: UsageConfig, metrics: UsageMetrics) -> Result<Self, UsageError> {
        config.validate()?;
        let spool = UsageSpool::open(&config.spool_dir, config.spool_limits())?;
        metrics.spool_bytes.set(gauge_value(spool.bytes()));
        let spool = Arc::new(Mutex::new(spool));
        let (delivery_tx, deliveries) = mpsc::unbounded_channel();
        let producer: ThreadedProducer<DeliveryContext> =
            producer_config(&config).create_with_context(DeliveryContext { tx: delivery_tx })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;

        let (spool_items, spool_rx) = std::sync::mpsc::sync_channel(config.spool_queue_capacity);
        let closed = Arc::new(AtomicBool::new(false));
        let writer = spool_writer::spawn(spool_rx, spool.clone(), metrics.clone(), closed.clone())?;
        let (events_tx, events) = mpsc::channel(config.queue_capacity);
        let sink = UsageSink {
            events: events_tx,
            shared: Arc::new(Shared {
                metrics: metrics.clone(),
                spool_items: spool_items.clone(),
                closed,
            }),
        };
        let (stop, stopped) = watch::channel(None);
        let service = Service {
            topic: config.topic.clone(),
            replay_window: config.replay_window,
            metrics: metrics.clone(),
            producer: Some(producer),
            spool,
            spool_items,
            writer: Some(writer),
            events,
            deliveries,
            value: Vec::with_capacity(1024),
            pending: VecDeque::new(),
            in_flight: HashMap::new(),
            acks: Vec::new(),
            next_ticket: LIVE,
            healthy: false,
            corrupt_seen: 0,
            stall_after: Duration::from_millis(u64::from(config.stall_ms)),
            unacked_live: 0,
            last_progress: Instant::now(),
            stalled: false,
        };
        let thread = std::thread::Builder::new()
            .name("usage-producer".into())
            .spawn(move || runtime.block_on(service.run(stopped)))?;
        tracing::info!(brokers = %config.brokers, topic = %config.topic,
            spool = %config.spool_dir.display(), "Usage pipeline started.");
        Ok(Self {
            sink,
            metrics,
            stop,
            thread: Some(thread),
        })
    }

    /// A handle for the request path.
    pub fn sink(&self) -> UsageSink {
        self.sink.clone()
    }

    /// The pipeline's metrics.
    pub fn metrics(&self) -> &UsageMetrics {
        &self.metrics
    }

    /// Stops the service: delivers what it can within `deadline`, spools the rest, fsyncs the
    /// spool and returns. Blocks the calling thread (call it from a blocking context). Events
    /// submitted afterwards are dropped and counted.
    pub fn shutdown(mut self, deadline: Duration) {
        self.stop_and_join(deadline);
    }

    fn stop_and_join(&mut self, deadline: Duration) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let _ = self.stop.send(Some(Instant::now() + deadline));
        if thread.join().is_err() {
            tracing::error!("The usage pipeline thread panicked.");
        }
        let m = &self.metrics;
        tracing::info!(
            produced = m.produced.get(),
            spooled = m.spooled.get(),
            replayed = m.replayed.get(),
            dropped = m.dropped_total(),
            spool_bytes = m.spool_bytes.get(),
            "Usage pipeline stopped."
        );
    }
}

impl Drop for UsagePipeline {
    fn drop(&mut self) {
        self.stop_and_join(Duration::from_secs(5));
    }
}

fn producer_config(config: &UsageConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", &config.compression)
        .set("linger.ms", config.linger_ms.to_string())
        .set(
            "queue.buffering.max.messages",
            config.producer_queue_messages.to_string(),
        )
        .set("message.timeout.ms", config.message_timeout_ms.to_string())
        .set("request.timeout.ms", config.request_timeout_ms.to_string())
        .set("socket.timeout.ms", config.request_timeout_ms.to_string());
    for (key, value) in &config.producer_overrides {
        client.set(key, value);
    }
    client
}

/// A delivery report, as the service sees it.
struct Delivery {
    ticket: usize,
    outcome: Result<(), Failure>,
}

struct Failure {
    error: KafkaError,
    /// Purged on shutdown rather than failed by the broker.
    purged: bool,
    /// The spool record of a failed live event (replayed records are still in the spool).
    record: Option<Vec<u8>>,
}

/// Hands delivery reports from librdkafka's polling thread to the service.
struct DeliveryContext {
    tx: mpsc::UnboundedSender<Delivery>,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(fac, message, "librdkafka"),
            RDKafkaLogLevel::Warning => tracing::warn!(fac, message, "librdkafka"),
            _ => tracing::debug!(fac, message, "librdkafka"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Usage producer error.");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: usize) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((error, message)) => {
                let purged = matches!(
                    error,
                    KafkaError::MessageProduction(
                        RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight
                    )
                );
                let record = (ticket == LIVE).then(|| {
                    let mut record = Vec::with_capacity(64 + message.payload_len());
                    encode_record(
                        message.key(),
                        message.payload().unwrap_or_default(),
                        &mut record,
                    );
                    record
                });
                Err(Failure {
                    error: error.clone(),
                    purged,
                    record,
                })
            }
        };
        // The receiver goes only after the producer is dropped, so nothing is lost here.
        let _ = self.tx.send(Delivery { ticket, outcome });
    }
}

struct Service {
    topic: String,
    replay_window: usize,
    metrics: UsageMetrics,
    producer: Option<ThreadedProducer<DeliveryContext>>,
    spool: Arc<Mutex<UsageSpool>>,
    spool_items: SyncSender<SpoolItem>,
    writer: Option<JoinHandle<()>>,
    events: mpsc::Receiver<UsageEvent>,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    /// Reused encoding buffer.
    value: Vec<u8>,
    /// Spooled records read but not yet handed to the producer.
    pending: VecDeque<SpooledRecord>,
    /// Spooled records handed to the producer, by ticket.
    in_flight: HashMap<usize, SpooledRecord>,
    /// Replayed records delivered but not yet acknowledged in the spool.
    acks: Vec<RecordPos>,
    next_ticket: usize,
    /// A delivery succeeded since the last failure or full queue.
    healthy: bool,
    corrupt_seen: u64,
    /// How long Kafka may acknowledge nothing before new events bypass the producer.
    stall_after: Duration,
    /// Live events handed to the producer and not yet reported back.
    unacked_live: u64,
    /// The last delivery report, or when `unacked_live` last rose from zero.
    last_progress: Instant,
    /// Kafka acknowledged nothing for `stall_after`: live events go to the spool.
    stalled: bool,
}

impl Service {
    async fn run(mut self, mut stop: watch::Receiver<Option<Instant>>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain = tokio::time::interval(DRAIN_EVERY);
        drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut events = Vec::with_capacity(BATCH);
        let mut deliveries = Vec::with_capacity(BATCH);
        let mut events_open = true;
        // Idle, this thread sleeps until an event or delivery report arrives. Busy, it drains
        // both channels every `DRAIN_EVERY` instead: awaiting a channel has every send wake
        // this thread (a syscall on the request path and a context switch here, per request).
        let mut busy = false;
        loop {
            tokio::select! {
                biased;
                () = stopped(&mut stop) => break,
                n = self.deliveries.recv_many(&mut deliveries, BATCH), if !busy => {
                    if n == 0 {
                        break;
                    }
                    self.handle_deliveries(&mut deliveries);
                }
                n = self.events.recv_many(&mut events, BATCH), if events_open && !busy => {
                    events_open = n > 0;
                    busy = events_open;
                    for event in events.drain(..) {
                        self.produce_live(&event);
                    }
                    drain.reset();
                }
                _ = drain.tick(), if busy => {
                    let mut received = 0;
                    loop {
                        match self.deliveries.try_recv() {
                            Ok(delivery) => deliveries.push(delivery),
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => {
                                busy = false;
                                break;
                            }
                        }
                    }
                    self.handle_deliveries(&mut deliveries);
                    loop {
                        match self.events.try_recv() {
                            Ok(event) => {
                                received += 1;
                                self.produce_live(&event);
                            }
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => {
                                events_open = false;
                                break;
                            }
                        }
                    }
                    // Nothing arrived for a whole interval: back to sleeping until one does.
                    busy = busy && events_open && received > 0;
                }
                _ = tick.tick() => {
                    self.check_stall();
                    self.refresh_gauges();
                }
            }
            self.replay(false);
        }
        let deadline = (*stop.borrow()).unwrap_or_else(Instant::now);
        self.finish(deadline);
    }

    /// Hands an event to the producer; what it refuses goes to the spool, and so does every
    /// event while Kafka is stalled.
    fn produce_live(&mut self, event: &UsageEvent) {
        let Some(producer) = &self.producer else {
            return;
        };
        self.value.clear();
        event.encode_into(&mut self.value);
        let key = tenant_key(event.tenant_id);
        if !self.stalled {
            let mut record = BaseRecord::with_opaque_to(&self.topic, LIVE).payload(&self.value);
            if let Some(key) = &key {
                record = record.key(key.as_slice());
            }
            let Err((error, _)) = producer.send(record) else {
                if self.unacked_live == 0 {
                    self.last_progress = Instant::now();
                }
                self.unacked_live += 1;
                return;
            };
            if !is_queue_full(&error) {
                tracing::warn!(%error, "Usage event not accepted by the producer; spooling it.");
            }
        }
        self.healthy = false;
        let mut spooled = Vec::with_capacity(64 + self.value.len());
        encode_record(
            key.as_ref().map(<[u8; 36]>::as_slice),
            &self.value,
            &mut spooled,
        );
        self.spool(spooled);
    }

    /// Queues a record for the spool writer, waiting if its queue is full (backpressure on
    /// this thread only; the request path overflows into drops instead).
    fn spool(&self, record: Vec<u8>) {
        if self.spool_items.send(SpoolItem::Record(record)).is_err() {
            self.metrics.drop_events(DropReason::Shutdown, 1);
        }
    }

    /// Kafka acknowledged nothing for `stall_after` while live events are outstanding: from
    /// now on live events go to the spool (on disk within one group commit) rather than wait
    /// in librdkafka's memory, until a delivery succeeds again.
    fn check_stall(&mut self) {
        if self.stalled || self.unacked_live == 0 || self.last_progress.elapsed() < self.stall_after
        {
            return;
        }
        self.stalled = true;
        self.healthy = false;
        tracing::warn!(
            unacknowledged = self.unacked_live,
            stall_ms = self.stall_after.as_millis(),
            "Kafka acknowledges nothing; usage events go to the spool until it answers."
        );
    }

    /// A delivery succeeded: Kafka answers.
    fn acknowledged(&mut self) {
        self.healthy = true;
        if self.stalled {
            self.stalled = false;
            tracing::info!("Kafka answers again; usage events go to the producer.");
        }
    }

    fn handle_deliveries(&mut self, deliveries: &mut Vec<Delivery>) {
        if !deliveries.is_empty() {
            self.last_progress = Instant::now();
        }
        for delivery in deliveries.drain(..) {
            if delivery.ticket == LIVE {
                self.unacked_live = self.unacked_live.saturating_sub(1);
                match delivery.outcome {
                    Ok(()) => {
                        self.metrics.produced.inc();
                        self.acknowledged();
                    }
                    Err(failure) => {
                        if !failure.purged {
                            self.healthy = false;
                            tracing::warn!(error = %failure.error, "Usage event delivery failed; spooling it.");
                        }
                        if let Some(record) = failure.record {
                            self.spool(record);
                        }
                    }
                }
                continue;
            }
            let Some(record) = self.in_flight.remove(&delivery.ticket) else {
                continue;
            };
            match delivery.outcome {
                Ok(()) => {
                    self.metrics.replayed.inc();
                    self.acknowledged();
                    self.acks.push(record.pos);
                }
                // Purged on shutdown: it stays in the spool for the next process.
                Err(failure) if failure.purged => {}
                Err(failure) => {
                    self.healthy = false;
                    tracing::warn!(error = %failure.error, "Spooled usage event failed again; will retry.");
                    self.pending.push_front(record);
                }
            }
        }
    }

    /// Acknowledges delivered replays and hands more spooled records to the producer, up to
    /// the replay window (one while the broker looks unhealthy). Never waits for the spool
    /// lock unless `blocking` (shutdown): the writer may be in an fsync.
    fn replay(&mut self, blocking: bool) {
        let mut spool = match self.spool.try_lock() {
            Ok(spool) => spool,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) if blocking => lock(&self.spool),
            Err(TryLockError::WouldBlock) => return,
        };
        for pos in self.acks.drain(..) {
            if let Err(e) = spool.ack(pos) {
                tracing::error!(error = %e, "Delivered usage events could not be removed from the spool.");
            }
        }
        let corrupt = spool.corrupt_records();
        if corrupt > self.corrupt_seen {
            self.metrics
                .drop_events(DropReason::Corrupt, corrupt - self.corrupt_seen);
            self.corrupt_seen = corrupt;
        }
        let Some(producer) = &self.producer else {
            return;
        };
        let window = if self.healthy { self.replay_window } else { 1 };
        while self.in_flight.len() < window {
            if self.pending.is_empty() {
                if !spool.has_unread() {
                    break;
                }
                match spool.read(window.min(BATCH)) {
                    Ok(records) if records.is_empty() => break,
                    Ok(records) => self.pending.extend(records),
                    Err(e) => {
                        tracing::error!(error = %e, "Usage spool could not be read.");
                        break;
                    }
                }
            }
            let Some(record) = self.pending.pop_front() else {
                break;
            };
            let Some((key, value)) = decode_record(&record.payload) else {
                self.metrics.drop_events(DropReason::Corrupt, 1);
                if let Err(e) = spool.ack(record.pos) {
                    tracing::error!(error = %e, "Usage spool ack failed.");
                }
                continue;
            };
            self.next_ticket = self.next_ticket.checked_add(1).unwrap_or(1);
            let ticket = self.next_ticket;
            let mut message = BaseRecord::with_opaque_to(&self.topic, ticket).payload(value);
            if let Some(key) = key {
                message = message.key(key);
            }
            match producer.send(message).map_err(|(error, _)| error) {
                Ok(()) => {
                    self.in_flight.insert(ticket, record);
                }
                Err(error) => {
                    if !is_queue_full(&error) {
                        tracing::warn!(%error, "Spooled usage event not accepted by the producer.");
                    }
                    self.healthy = false;
                    self.pending.push_front(record);
                    break;
                }
            }
        }
        self.metrics.spool_bytes.set(gauge_value(spool.bytes()));
    }

    fn refresh_gauges(&self) {
        self.metrics.queue_depth.set(gauge_value(
            u64::try_from(self.events.len()).unwrap_or(u64::MAX),
        ));
        if let Some(producer) = &self.producer {
            self.metrics
                .producer_queue_depth
                .set(i64::from(producer.in_flight_count()));
        }
    }

    /// Shutdown: produce what is queued, flush until `deadline`, purge and spool the rest.
    fn finish(mut self, deadline: Instant) {
        self.events.close();
        while let Ok(event) = self.events.try_recv() {
            self.produce_live(&event);
        }
        if let Some(producer) = self.producer.take() {
            let left = deadline.saturating_duration_since(Instant::now());
            if producer.flush(left).is_err() {
                tracing::warn!(
                    queued = producer.in_flight_count(),
                    "Kafka did not take every usage event before the deadline; spooling the rest."
                );
            }
            producer.purge(PurgeConfig::default().queue().inflight());
            // Serves the purged events' delivery reports, which carry their payloads.
            let _ = producer.flush(PURGE_GRACE);
            drop(producer);
        }
        self.deliveries.close();
        let mut deliveries = Vec::new();
        while let Ok(delivery) = self.deliveries.try_recv() {
            deliveries.push(delivery);
        }
        self.handle_deliveries(&mut deliveries);
        self.replay(true);
        self.refresh_gauges();
        let _ = self.spool_items.send(SpoolItem::Stop);
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("The usage spool writer panicked.");
        }
        let spool = lock(&self.spool);
        self.metrics.spool_bytes.set(gauge_value(spool.bytes()));
    }
}

fn is_queue_full(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
    )
}

/// Resolves once shutdown is signalled (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<Option<Instant>>) {
    let _ = stop.wait_for(Option::is_some).await;
}
