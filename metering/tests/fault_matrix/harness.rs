//! The fault matrix's world: private PostgreSQL, Redis and broker, a tenant with a key and a
//! route to an upstream, the real `tollgate-proxy` and `tollgate-metering` binaries as child
//! processes that a case kills (SIGKILL) or pauses (SIGSTOP) with the `kill` command, and the
//! accounting of a case: requests sent, events produced, stored, lost, duplicated.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tollgate_core::{ApiKey, KeyPepper, TenantId};
use tollgate_test_support::fixtures::{PlanLimits, insert_api_key, insert_tenant, subscribe};
use tollgate_test_support::private::{PrivatePostgres, PrivateRedis, free_port, wait_for_port};
use tollgate_test_support::unique_name;
use tollgate_test_support::usage_topic::PrivateBroker;

use crate::load::Outcome;

pub const PEPPER_HEX: &str = "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b";
pub const PARTITIONS: i32 = 6;
/// Metering's session timeout: a SIGKILLed member's partitions move after about this long.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
/// Metering's longest batch.
pub const BATCH_WAIT: Duration = Duration::from_secs(2);

/// A child process of the case: a proxy or a metering replica.
pub struct Process {
    name: String,
    child: Child,
    pub admin: SocketAddr,
}

impl Process {
    /// Sends `signal` (`-KILL`, `-STOP`, `-CONT`) with the `kill` command.
    pub fn signal(&self, signal: &str) {
        signal_pid(self.child.id(), signal);
    }

    /// SIGKILL, and reap it.
    pub fn kill(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
        eprintln!("[fault-matrix] {} SIGKILLed", self.name);
    }

    /// One `/metrics` value (the first sample whose line starts with `name`), if it answers.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        metric(self.admin, name).await
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal_pid(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// Everything one case runs against.
pub struct World {
    pub postgres: PrivatePostgres,
    pub redis: PrivateRedis,
    pub broker: PrivateBroker,
    pub topic: String,
    pub tenant: TenantId,
    pub key: ApiKey,
    pub proxy_port: u16,
    pub spool: PathBuf,
    logs: PathBuf,
}

impl World {
    pub async fn new(limits: PlanLimits) -> Self {
        let postgres = PrivatePostgres::start().await;
        let redis = PrivateRedis::start();
        let broker = PrivateBroker::start().await;
        let topic = unique_name("fault_usage");
        broker.create_topic(&topic, PARTITIONS).await;
        let upstream = upstream().await;
        let client = postgres.client().await;
        let pepper = KeyPepper::from_hex(PEPPER_HEX).unwrap();
        let tenant = insert_tenant(&client, "fault").await;
        let key = insert_api_key(&client, tenant, &pepper).await;
        subscribe(&client, tenant, limits).await;
        client
            .execute(
                "INSERT INTO routes (id, tenant_id, path_prefix, upstreams, max_body_bytes) \
                 VALUES (gen_random_uuid(), $1, '/api', ARRAY[$2], 1024)",
                &[tenant.as_uuid(), &upstream.to_string()],
            )
            .await
            .unwrap();
        let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique_name("fault-matrix"));
        std::fs::create_dir_all(&logs).unwrap();
        Self {
            spool: logs.join("spool"),
            postgres,
            redis,
            broker,
            topic,
            tenant,
            key,
            proxy_port: free_port(),
            logs,
        }
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.proxy_port))
    }

    /// Starts `tollgate-proxy` on the world's port and spool, and waits until it is ready.
    pub async fn start_proxy(&self) -> Process {
        let admin = free_port();
        let mut command = Command::new(binary("tollgate-proxy"));
        command
            .env("TOLLGATE_DATABASE_URL", self.postgres.url())
            .env("TOLLGATE_KEY_PEPPER", PEPPER_HEX)
            .env("TOLLGATE_REDIS_URL", self.redis.url())
            .env("TOLLGATE_KAFKA_BROKERS", self.broker.brokers())
            .env("TOLLGATE_USAGE_TOPIC", &self.topic)
            .env("TOLLGATE_USAGE_SPOOL_DIR", &self.spool)
            .env("TOLLGATE_PROXY_LISTEN", self.proxy_addr().to_string())
            .env("TOLLGATE_PROXY_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
            .env("TOLLGATE_PROXY_THREADS", "1")
            .env("TOLLGATE_PROXY_GRACE_SECONDS", "1")
            // The upstream is on loopback, which the proxy refuses unless allowed.
            .env("TOLLGATE_UPSTREAM_ALLOW_NETWORKS", "127.0.0.0/8");
        let process = self.spawn("proxy", command, admin);
        wait_ready(process.admin, Duration::from_secs(30), "the proxy").await;
        process
    }

    /// Starts a `tollgate-metering` replica of the world's group; ready means subscribed and
    /// connected, not yet assigned partitions.
    pub async fn start_metering(&self, name: &str) -> Process {
        let admin = free_port();
        let mut command = Command::new(binary("tollgate-metering"));
        command
            .env("TOLLGATE_DATABASE_URL", self.postgres.url())
            .env("TOLLGATE_KAFKA_BROKERS", self.broker.brokers())
            .env("TOLLGATE_METERING_TOPIC", &self.topic)
            .env("TOLLGATE_METERING_DLQ_TOPIC", format!("{}-dlq", self.topic))
            .env(
                "TOLLGATE_METERING_GROUP_ID",
                format!("{}-group", self.topic),
            )
            .env(
                "TOLLGATE_METERING_ADMIN_LISTEN",
                format!("127.0.0.1:{admin}"),
            )
            .env(
                "TOLLGATE_METERING_SESSION_TIMEOUT_MS",
                SESSION_TIMEOUT.as_millis().to_string(),
            )
            .env(
                "TOLLGATE_METERING_UNASSIGNED_GRACE_MS",
                SESSION_TIMEOUT.as_millis().to_string(),
            )
            .env("TOLLGATE_METERING_BATCH_MAX_RECORDS", "500")
            .env(
                "TOLLGATE_METERING_BATCH_MAX_WAIT_MS",
                BATCH_WAIT.as_millis().to_string(),
            );
        let process = self.spawn(name, command, admin);
        wait_for_port(admin, Duration::from_secs(30), name);
        process
    }

    fn spawn(&self, name: &str, mut command: Command, admin: u16) -> Process {
        let log = self.logs.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = command
            .env("TOLLGATE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Process {
            name: name.to_owned(),
            child,
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
        }
    }

    pub fn pause_broker(&self) {
        signal_pid(self.broker.pid(), "-STOP");
        eprintln!("[fault-matrix] broker SIGSTOPped");
    }

    pub fn resume_broker(&self) {
        signal_pid(self.broker.pid(), "-CONT");
        eprintln!("[fault-matrix] broker SIGCONTed");
    }

    /// Event ids stored for the tenant.
    pub async fn stored_ids(&self) -> HashSet<uuid::Uuid> {
        let client = self.postgres.client().await;
        client
            .query(
                "SELECT event_id FROM usage_events WHERE tenant_id = $1",
                &[self.tenant.as_uuid()],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    /// Requests counted in the tenant's roll-ups (what billing reads).
    pub async fn rolled_up(&self) -> i64 {
        let client = self.postgres.client().await;
        client
            .query_one(
                "SELECT coalesce(sum(request_count), 0)::int8 FROM usage_minute WHERE tenant_id = $1",
                &[self.tenant.as_uuid()],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// Records on the usage topic (duplicates included), counted by reading them all: the
    /// local broker's high watermarks disagreed with what a consumer reads.
    pub fn produced(&self) -> u64 {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.broker.brokers())
            .set("group.id", unique_name("fault_count"))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut partitions = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            partitions
                .add_partition_offset(&self.topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&partitions).unwrap();
        let (mut count, mut idle_since) = (0u64, std::time::Instant::now());
        while idle_since.elapsed() < Duration::from_secs(3) {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(200)) {
                count += 1;
                idle_since = std::time::Instant::now();
            }
        }
        count
    }

    /// Waits until every answered event is stored, or (when `lossy`) until the stored count
    /// has not changed for three batch intervals. Returns the stored ids and how long it took.
    pub async fn settle(
        &self,
        outcome: &Outcome,
        limit: Duration,
        lossy: bool,
    ) -> (HashSet<uuid::Uuid>, Duration) {
        let started = Instant::now();
        let expected: HashSet<uuid::Uuid> =
            outcome.answers.iter().filter_map(|a| a.event_id).collect();
        let (mut last, mut last_change) = (0, Instant::now());
        loop {
            let stored = self.stored_ids().await;
            if expected.is_subset(&stored) {
                return (stored, started.elapsed());
            }
            if stored.len() != last {
                (last, last_change) = (stored.len(), Instant::now());
            }
            if (lossy && last_change.elapsed() > BATCH_WAIT * 3) || started.elapsed() > limit {
                return (stored, started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The case's row: sent, produced, stored, lost, duplicated (and more), printed and kept.
    pub async fn row(&self, case: &str, outcome: &Outcome, stored: &HashSet<uuid::Uuid>) -> Row {
        let answered: HashSet<uuid::Uuid> =
            outcome.answers.iter().filter_map(|a| a.event_id).collect();
        let rolled_up = self.rolled_up().await;
        let row = Row {
            case: case.to_owned(),
            sent: outcome.answers.len() as u64 + outcome.failed,
            answered: outcome.answers.len() as u64,
            failed: outcome.failed,
            produced: tokio::task::block_in_place(|| self.produced()),
            stored: stored.len() as u64,
            lost: answered.difference(stored).count() as u64,
            unanswered_stored: stored.difference(&answered).count() as u64,
            duplicated: u64::try_from(rolled_up - stored.len() as i64).unwrap_or(u64::MAX),
        };
        row.print();
        row
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Logs and spool stay for a failed case to be read.
        if std::thread::panicking() {
            eprintln!("[fault-matrix] logs in {}", self.logs.display());
            print_log_tails(&self.logs);
        } else {
            let _ = std::fs::remove_dir_all(&self.logs);
        }
    }
}

/// The last lines of every process log of a failed case, so a CI run that keeps no files
/// still shows why (logs are line-oriented; an unreadable one is named and skipped).
fn print_log_tails(logs: &Path) {
    const LINES: usize = 40;
    let Ok(entries) = std::fs::read_dir(logs) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    paths.sort();
    for path in paths {
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!("[fault-matrix] cannot read {}", path.display());
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        eprintln!(
            "[fault-matrix] ---- last {} of {} lines of {} ----",
            LINES.min(lines.len()),
            lines.len(),
            path.display()
        );
        for line in &lines[lines.len().saturating_sub(LINES)..] {
            eprintln!("{line}");
        }
    }
}

/// One line of the fault-matrix table.
#[derive(Debug)]
pub struct Row {
    pub case: String,
    /// Requests the load sent (answered + failed).
    pub sent: u64,
    pub answered: u64,
    /// Requests without an answer (the proxy died or the connection broke).
    pub failed: u64,
    /// Records on the usage topic, duplicates included.
    pub produced: u64,
    /// Distinct events stored.
    pub stored: u64,
    /// Answered requests whose event was never stored.
    pub lost: u64,
    /// Stored events of requests the load got no answer for.
    pub unanswered_stored: u64,
    /// Requests counted more than once in the roll-ups billing reads.
    pub duplicated: u64,
}

impl Row {
    fn print(&self) {
        let mut line = String::new();
        let _ = write!(
            line,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.case,
            self.sent,
            self.answered,
            self.failed,
            self.produced,
            self.stored,
            self.lost,
            self.duplicated,
            self.unanswered_stored
        );
        println!("{line}");
        eprintln!("[fault-matrix] {line}");
        let table = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-matrix.md");
        let header = !table.exists();
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&table)
        {
            use std::io::Write as _;
            if header {
                let _ = writeln!(
                    file,
                    "| case | sent | answered | failed | produced | stored | lost | duplicated | stored, unanswered |\n|---|---|---|---|---|---|---|---|---|"
                );
            }
            let _ = writeln!(file, "{line}");
        }
    }
}

/// A binary of the workspace, built beside this test binary (`cargo test --workspace` builds
/// every package's binaries; `cargo build -p tollgate-proxy` when running this target alone).
fn binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_tollgate-metering")).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first (cargo build -p tollgate-proxy -p tollgate-metering)",
        path.display()
    );
    path
}

/// Polls `/ready` until it answers 200.
pub async fn wait_ready(admin: SocketAddr, limit: Duration, what: &str) {
    let started = Instant::now();
    while get(admin, "/ready").await.map(|(status, _)| status) != Some(200) {
        assert!(
            started.elapsed() < limit,
            "{what} not ready within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `condition` every 100 ms until it holds; false after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        if started.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// One `/metrics` sample of `admin`.
pub async fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    let (_, body) = get(admin, "/metrics").await?;
    body.lines()
        .find(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// A GET on a fresh connection: status and body.
pub async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let work = async {
        let mut stream = BufReader::new(TcpStream::connect(addr).await.ok()?);
        let request = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
        stream.get_mut().write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .ok()
        .flatten()
}

/// An upstream answering 200 with a small body to every request, keep-alive.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                loop {
                    // The request head (GETs without a body).
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let response = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if reader
                        .get_mut()
                        .write_all(response.as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}
