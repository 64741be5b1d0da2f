//! A Kafka topic and consumer group id per test.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::FutureProducer;

use crate::stack::{Stack, unique_name};

const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A topic that exists for the life of this guard, and a consumer group id of its own.
#[derive(Debug)]
pub struct TestTopic {
    name: String,
    group_id: String,
}

impl TestTopic {
    /// Creates a topic with `partitions` partitions.
    pub async fn create(partitions: i32) -> Self {
        let name = unique_name("tgtest");
        let admin = admin_client();
        let topic = NewTopic::new(&name, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let results = admin
            .create_topics([&topic], &options)
            .await
            .unwrap_or_else(|e| {
                panic!("creating topic {name} (is the broker up? `make services`): {e}")
            });
        for result in results {
            if let Err((topic, code)) = result {
                panic!("creating topic {topic}: {code}");
            }
        }
        Self {
            group_id: format!("{name}_group"),
            name,
        }
    }

    /// The topic name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A consumer group id for this test.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// Bootstrap servers.
    pub fn brokers(&self) -> &str {
        &Stack::get().kafka_brokers
    }

    /// Client settings that suit a local single broker in tests.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.brokers())
            .set("socket.timeout.ms", "10000")
            .set("message.timeout.ms", "10000");
        config
    }

    /// An idempotent producer.
    pub fn producer(&self) -> FutureProducer {
        self.client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .create()
            .expect("creating a producer")
    }

    /// A consumer in this test's group, reading from the earliest offset, with manual commits.
    /// Not yet subscribed.
    pub fn consumer(&self) -> StreamConsumer {
        self.client_config()
            .set("group.id", &self.group_id)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .create()
            .expect("creating a consumer")
    }
}

impl Drop for TestTopic {
    fn drop(&mut self) {
        let name = self.name.clone();
        crate::block_on_side_thread(async move {
            let admin = admin_client();
            let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
            let _ = admin.delete_topics(&[&name], &options).await;
        });
    }
}

fn admin_client() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", &Stack::get().kafka_brokers)
        .set("socket.timeout.ms", "10000")
        .create()
        .expect("creating a Kafka admin client")
}
