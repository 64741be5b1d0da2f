//! The `tollgate-proxy` binary over real sockets: snapshot from the real PostgreSQL, an echo
//! upstream, raw HTTP/1.1 clients.
// Helpers outside #[test] fns: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tollgate_core::{ApiKey, KeyEnv, TenantId};
use tollgate_test_support::TestDb;
use tollgate_test_support::fixtures::{insert_api_key, insert_tenant};

const PEPPER_HEX: &str = "0707070707070707070707070707070707070707070707070707070707070707";

/// An upstream that answers 200 with the request head it received as the body.
async fn echo_upstream() -> SocketAddr {
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proxy {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_proxy(db: &TestDb) -> Proxy {
    let (port, admin_port) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_tollgate-proxy"))
        .env("TOLLGATE_DATABASE_URL", db.url())
        .env("TOLLGATE_KEY_PEPPER", PEPPER_HEX)
        .env("TOLLGATE_PROXY_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "TOLLGATE_PROXY_ADMIN_LISTEN",
            format!("127.0.0.1:{admin_port}"),
        )
        .env("TOLLGATE_PROXY_THREADS", "1")
        .env("TOLLGATE_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let proxy = Proxy {
        child,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
    };
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let started = Instant::now();
    loop {
        if let Ok(mut conn) = TcpStream::connect(admin).await
            && send(&mut conn, "GET /ready HTTP/1.1\r\nhost: admin\r\n\r\n")
                .await
                .0
                == 200
        {
            return proxy;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "proxy not ready within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends a raw request on `conn` and reads one response: (status, headers, body).
async fn send(conn: &mut TcpStream, request: &str) -> (u16, String, String) {
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

struct Fixture {
    db: TestDb,
    tenant: TenantId,
    key: ApiKey,
}

async fn fixture(upstream: SocketAddr) -> Fixture {
    let db = TestDb::new().await;
    let client = db.client().await;
    let pepper = tollgate_core::KeyPepper::from_hex(PEPPER_HEX).unwrap();
    let tenant = insert_tenant(&client, "acme").await;
    let key = insert_api_key(&client, tenant, &pepper).await;
    client
        .execute(
            "INSERT INTO routes (id, tenant_id, path_prefix, upstreams, max_body_bytes) \
             VALUES (gen_random_uuid(), $1, '/api', ARRAY[$2], 1024)",
            &[tenant.as_uuid(), &upstream.to_string()],
        )
        .await
        .unwrap();
    Fixture { db, tenant, key }
}

fn get(path: &str, auth: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: gw.test\r\n{auth}\r\n")
}

fn error_code(body: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(body).expect("a JSON error body");
    json["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_key_is_proxied_without_the_credential_and_with_tenant_and_request_ids() {
    let upstream = echo_upstream().await;
    let f = fixture(upstream).await;
    let proxy = start_proxy(&f.db).await;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();

    let bearer = format!("authorization: Bearer {}\r\n", f.key.expose());
    let (status, _, seen) = send(&mut conn, &get("/api/orders", &bearer)).await;
    assert_eq!(status, 200, "{seen}");
    let seen = seen.to_ascii_lowercase();
    assert!(seen.starts_with("get /api/orders http/1.1"), "{seen}");
    assert!(
        seen.contains(&format!("x-tenant-id: {}", f.tenant)),
        "{seen}"
    );
    assert!(seen.contains("x-request-id: "), "{seen}");
    assert!(
        !seen.contains("authorization"),
        "the credential reached the upstream: {seen}"
    );

    let header = format!("x-api-key: {}\r\n", f.key.expose());
    let (status, _, seen) = send(&mut conn, &get("/api/orders", &header)).await;
    assert_eq!(status, 200);
    assert!(
        !seen.to_ascii_lowercase().contains(f.key.expose()),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_json_with_its_code_on_a_kept_alive_connection() {
    let upstream = echo_upstream().await;
    let f = fixture(upstream).await;
    let proxy = start_proxy(&f.db).await;
    let unknown = ApiKey::generate(KeyEnv::Live).unwrap();
    let mut forged = f.key.expose().to_owned();
    forged.pop();
    forged.push(if f.key.expose().ends_with('a') {
        'b'
    } else {
        'a'
    });
    let cases = [
        (get("/api/x", ""), 401, "missing_credential"),
        (
            get("/api/x", "authorization: Basic dXNlcjpwYXNz\r\n"),
            401,
            "malformed_credential",
        ),
        (
            get("/api/x", "authorization: Bearer not-a-key\r\n"),
            401,
            "invalid_api_key",
        ),
        (
            get("/api/x", &format!("x-api-key: {}\r\n", unknown.expose())),
            401,
            "invalid_api_key",
        ),
        (
            get("/api/x", &format!("x-api-key: {forged}\r\n")),
            401,
            "invalid_api_key",
        ),
        (
            get("/elsewhere", &format!("x-api-key: {}\r\n", f.key.expose())),
            404,
            "no_route",
        ),
        (
            format!(
                "POST /api/x HTTP/1.1\r\nhost: gw.test\r\nx-api-key: {}\r\ncontent-length: 4096\r\n\r\n",
                f.key.expose()
            ),
            413,
            "body_too_large",
        ),
    ];
    // One connection for all the GETs: each refusal must leave it usable.
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    for (request, status, code) in &cases[..6] {
        let (got, headers, body) = send(&mut conn, request).await;
        assert_eq!(
            (got, error_code(&body).as_str()),
            (*status, *code),
            "{request}"
        );
        assert!(headers.contains("content-type: application/json"));
        assert!(!headers.contains("connection: close"), "{headers}");
    }
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    let (got, _, body) = send(&mut conn, &cases[6].0).await;
    assert_eq!((got, error_code(&body).as_str()), (413, "body_too_large"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_suspension_take_effect_within_one_second() {
    let upstream = echo_upstream().await;
    let f = fixture(upstream).await;
    let proxy = start_proxy(&f.db).await;
    let client = f.db.client().await;
    let auth = format!("x-api-key: {}\r\n", f.key.expose());
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    assert_eq!(send(&mut conn, &get("/api/x", &auth)).await.0, 200);

    let changes = [
        (
            "UPDATE tenants SET status = 'suspended'",
            403,
            "tenant_suspended",
        ),
        ("UPDATE tenants SET status = 'active'", 200, ""),
        (
            "UPDATE api_keys SET status = 'revoked'",
            401,
            "revoked_api_key",
        ),
    ];
    for (sql, status, code) in changes {
        let changed = Instant::now();
        client.batch_execute(sql).await.unwrap();
        loop {
            let (got, _, body) = send(&mut conn, &get("/api/x", &auth)).await;
            if got == status {
                if !code.is_empty() {
                    assert_eq!(error_code(&body), code);
                }
                break;
            }
            assert!(
                changed.elapsed() < Duration::from_secs(1),
                "{sql} not applied within 1 s"
            );
        }
        println!(
            "{sql}: applied by the running proxy after {:?}",
            changed.elapsed()
        );
    }
}
