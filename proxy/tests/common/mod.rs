//! The harness the gateway tests share: the `tollgate-proxy` binary started against a test
//! database, an echo upstream, a raw HTTP/1.1 client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tollgate_core::{ApiKey, TenantId};
use tollgate_test_support::fixtures::{PlanLimits, insert_api_key, insert_tenant, subscribe};
use tollgate_test_support::{TestDb, TestTopic, unique_name};

pub const PEPPER_HEX: &str = "0707070707070707070707070707070707070707070707070707070707070707";

/// An upstream that answers 200 with the request head it received as the body.
pub async fn echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{head}",
                        head.len()
                    );
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

/// A port for a proxy to listen on, from 20000–29999: below the kernel's ephemeral range
/// (32768–60999 by default), so no outgoing connection (to PostgreSQL, Redis, the broker, an
/// upstream) can take it as its local port between this check and the proxy's bind, which
/// with a port from `bind(0)` left a proxy ready on its admin port but not listening on its
/// traffic port. Each test process walks the range from its own offset.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let offset = std::process::id() % 10_000;
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = u16::try_from(20_000 + (offset + n) % 10_000).unwrap();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub struct Proxy {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    spool: std::path::PathBuf,
}

impl Proxy {
    /// Sends SIGTERM and waits (up to 30 s) for a clean exit.
    pub async fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                assert!(exit.success(), "the proxy exited with {exit}");
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no exit 30 s after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A spool the test chose (TOLLGATE_USAGE_SPOOL_DIR in `env`) is the test's to remove.
        let _ = std::fs::remove_dir_all(&self.spool);
    }
}

pub async fn start_proxy(f: &Fixture) -> Proxy {
    start_proxy_with(f, &[]).await
}

/// Starts the proxy with extra environment variables.
/// A spool directory of its own unless `env` sets `TOLLGATE_USAGE_SPOOL_DIR`; no broker when
/// `env` sets `TOLLGATE_USAGE_DISABLED`.
pub async fn start_proxy_with(f: &Fixture, env: &[(&str, String)]) -> Proxy {
    let (port, admin_port) = (free_port(), free_port());
    let spool = std::env::temp_dir().join(unique_name("tgspool"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate-proxy"));
    // DB-less when the test names a config file.
    if !env.iter().any(|(k, _)| *k == "TOLLGATE_PROXY_CONFIG_FILE") {
        command.env("TOLLGATE_DATABASE_URL", f.db.url());
    }
    // Usage events go to the fixture's topic unless the test switches them off.
    if env.iter().any(|(k, _)| *k == "TOLLGATE_USAGE_DISABLED") {
        command.env_remove("TOLLGATE_KAFKA_BROKERS");
    } else {
        command
            .env("TOLLGATE_KAFKA_BROKERS", f.topic.brokers())
            .env("TOLLGATE_USAGE_TOPIC", f.topic.name())
            .env("TOLLGATE_USAGE_SPOOL_DIR", &spool);
    }
    let child = command
        .env("TOLLGATE_KEY_PEPPER", PEPPER_HEX)
        .env("TOLLGATE_PROXY_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "TOLLGATE_PROXY_ADMIN_LISTEN",
            format!("127.0.0.1:{admin_port}"),
        )
        .env("TOLLGATE_PROXY_THREADS", "1")
        // The echo upstreams listen on loopback, refused unless allowed; a test can override.
        .env("TOLLGATE_UPSTREAM_ALLOW_NETWORKS", "127.0.0.1/32")
        .env("TOLLGATE_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let proxy = Proxy {
        child,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        admin,
        spool,
    };
    let started = Instant::now();
    loop {
        if let Ok(mut conn) = TcpStream::connect(admin).await
            && send(&mut conn, "GET /ready HTTP/1.1\r\nhost: admin\r\n\r\n")
                .await
                .0
                == 200
            // Ready on the admin port can precede the traffic listener's bind by a moment:
            // tests connect to the traffic port next, so wait for it too.
            && TcpStream::connect(proxy.addr).await.is_ok()
        {
            return proxy;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "proxy not ready (admin /ready and the traffic port) within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends a raw request on `conn` and reads one response: (status, headers, body).
pub async fn send(conn: &mut TcpStream, request: &str) -> (u16, String, String) {
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(conn);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).await.unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
        headers.push_str(&line.to_ascii_lowercase());
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

pub struct Fixture {
    pub db: TestDb,
    pub topic: TestTopic,
    pub tenant: TenantId,
    pub key: ApiKey,
}

pub async fn fixture(upstream: SocketAddr) -> Fixture {
    fixture_with(upstream, PlanLimits::default()).await
}

/// A tenant on a plan with `limits`, a key, and a route `/api` to `upstream`.
pub async fn fixture_with(upstream: SocketAddr, limits: PlanLimits) -> Fixture {
    let db = TestDb::new().await;
    let client = db.client().await;
    let pepper = tollgate_core::KeyPepper::from_hex(PEPPER_HEX).unwrap();
    let tenant = insert_tenant(&client, "acme").await;
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
    Fixture {
        db,
        topic: TestTopic::create(1).await,
        tenant,
        key,
    }
}

/// Adds a route `prefix` → `upstreams` to the fixture's tenant; `extra` is `columns=values`
/// for more columns (`strip_prefix, retries=true, 2`).
pub async fn add_route(f: &Fixture, prefix: &str, upstreams: &[String], extra: &str) {
    let client = f.db.client().await;
    let (columns, values) = extra.split_once('=').unwrap_or(("", ""));
    let sql = format!(
        "INSERT INTO routes (id, tenant_id, path_prefix, upstreams{}) \
         VALUES (gen_random_uuid(), $1, $2, $3{})",
        if columns.is_empty() {
            String::new()
        } else {
            format!(", {columns}")
        },
        if values.is_empty() {
            String::new()
        } else {
            format!(", {values}")
        },
    );
    client
        .execute(&sql, &[f.tenant.as_uuid(), &prefix, &upstreams])
        .await
        .unwrap();
}

pub fn get(path: &str, auth: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: gw.test\r\n{auth}\r\n")
}

pub fn error_code(body: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(body).expect("a JSON error body");
    json["error"]["code"].as_str().unwrap().to_owned()
}
