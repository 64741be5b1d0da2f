//! Kafka helpers for tests of usage events: a private broker a test may pause (SIGSTOP)
//! without disturbing other tests, and reading a topic back to check exactly-once delivery.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tollgate_core::UsageEvent;
use tollgate_core::ids::EventId;

use crate::unique_name;

/// Polls `condition` every 20 ms until it holds; panics with `what` after `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Consumes the topic until every id in `expected` arrived and the consumed count reaches the
/// topic's high watermarks; returns how often each id was seen.
pub async fn consume(
    consumer: StreamConsumer,
    topic: &str,
    expected: &[EventId],
    limit: Duration,
) -> HashMap<EventId, u32> {
    consumer.subscribe(&[topic]).unwrap();
    let started = Instant::now();
    let mut seen: HashMap<EventId, u32> = HashMap::new();
    let mut consumed = 0u64;
    loop {
        let remaining = limit.saturating_sub(started.elapsed());
        assert!(
            !remaining.is_zero(),
            "only {} of {} events arrived within {limit:?}",
            seen.len(),
            expected.len()
        );
        let message =
            tokio::time::timeout(remaining.min(Duration::from_secs(1)), consumer.recv()).await;
        if let Ok(message) = message {
            let message = message.unwrap();
            let event = UsageEvent::decode(message.payload().unwrap()).unwrap();
            *seen.entry(event.id).or_default() += 1;
            consumed += 1;
        }
        if expected.iter().all(|id| seen.contains_key(id)) {
            let metadata = tokio::task::block_in_place(|| {
                consumer
                    .fetch_metadata(Some(topic), Duration::from_secs(10))
                    .unwrap()
            });
            let partitions = metadata.topics()[0].partitions().len();
            let mut total = 0;
            for p in 0..partitions {
                let (low, high) = tokio::task::block_in_place(|| {
                    consumer
                        .fetch_watermarks(topic, i32::try_from(p).unwrap(), Duration::from_secs(10))
                        .unwrap()
                });
                total += u64::try_from(high - low).unwrap();
            }
            if consumed >= total {
                break;
            }
        }
    }
    drop(consumer);
    seen
}

pub fn assert_exactly_once(seen: &HashMap<EventId, u32>, expected: &[EventId]) {
    let duplicates = seen.values().filter(|&&n| n > 1).count();
    assert_eq!(duplicates, 0, "{duplicates} events arrived more than once");
    assert_eq!(seen.len(), expected.len(), "unexpected events on the topic");
    for id in expected {
        assert_eq!(seen.get(id), Some(&1), "event {id} missing");
    }
}

/// A tansu broker of this test's own, so pausing it disturbs no other test.
#[derive(Debug)]
pub struct PrivateBroker {
    child: Child,
    addr: SocketAddr,
}

impl PrivateBroker {
    pub async fn start() -> Self {
        let binary = broker_binary();
        let addr = {
            let probe = TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        };
        let url = format!("tcp://{addr}");
        let child = Command::new(&binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let broker = Self { child, addr };
        wait_until(Duration::from_secs(10), "private broker listening", || {
            TcpStream::connect(addr).is_ok()
        })
        .await;
        broker
    }

    pub fn brokers(&self) -> String {
        self.addr.to_string()
    }

    /// The broker's process id (to pause or kill it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .create()
            .unwrap();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(
                [&NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &options,
            )
            .await
            .unwrap();
        for result in results {
            result.unwrap();
        }
    }

    /// A consumer of this broker reading from the earliest offset.
    pub fn consumer(&self) -> StreamConsumer {
        consumer(&self.brokers())
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        // SIGKILL works on a stopped process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The broker binary `scripts/stack.sh` built (patched tansu): `TANSU_BIN` of the stack file.
pub fn broker_binary() -> PathBuf {
    crate::Stack::get()
        .values
        .get("TANSU_BIN")
        .map(PathBuf::from)
        .filter(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("TANSU_BIN in .tollgate/stack.env names no broker binary: run `make services`")
        })
}

/// A consumer of `brokers` with a group of its own, reading from the earliest offset.
pub fn consumer(brokers: &str) -> StreamConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique_name("tgtest_group"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("creating a consumer")
}
