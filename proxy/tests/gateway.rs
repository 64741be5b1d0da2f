//! The `tollgate-proxy` binary over real sockets: snapshot from the real PostgreSQL, an echo
//! upstream, raw HTTP/1.1 clients.
// Helpers outside #[test] fns: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{echo_upstream, error_code, fixture, get, send, start_proxy};
use tokio::net::TcpStream;
use tollgate_core::{ApiKey, KeyEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_key_is_proxied_without_the_credential_and_with_tenant_and_request_ids() {
    let upstream = echo_upstream().await;
    let f = fixture(upstream).await;
    let proxy = start_proxy(&f).await;
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
    let proxy = start_proxy(&f).await;
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
    let proxy = start_proxy(&f).await;
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
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        println!(
            "{sql}: applied by the running proxy after {:?}",
            changed.elapsed()
        );
    }
}

fn closed_port() -> String {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().to_string()
}

/// An upstream that accepts connections and never answers.
async fn silent_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// An upstream that switches protocols on an Upgrade request and then echoes raw bytes.
async fn upgrade_echo_upstream() -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(&line.to_ascii_lowercase());
                }
                assert!(head.contains("upgrade: websocket"), "{head}");
                let mut stream = reader.into_inner();
                stream
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n",
                    )
                    .await
                    .unwrap();
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_answer_502_and_504_idempotent_requests_are_retried_and_dead_members_skipped()
 {
    let upstream = echo_upstream().await;
    let f = fixture(upstream).await;
    common::add_route(&f, "/dead", &[closed_port()], "").await;
    common::add_route(
        &f,
        "/slow",
        &[silent_upstream().await],
        "read_timeout_ms=300",
    )
    .await;
    common::add_route(
        &f,
        "/pool",
        &[closed_port(), upstream.to_string()],
        "retries=1",
    )
    .await;
    common::add_route(
        &f,
        "/posts",
        &[closed_port(), upstream.to_string()],
        "retries=1",
    )
    .await;
    let proxy = start_proxy(&f).await;
    let auth = format!("x-api-key: {}\r\n", f.key.expose());

    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    let (status, _, body) = send(&mut conn, &get("/dead", &auth)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (502, "upstream_unavailable")
    );
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    let started = Instant::now();
    let (status, _, body) = send(&mut conn, &get("/slow", &auth)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (504, "upstream_timeout")
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // Half of each pool is down. GETs are retried on the other member; POSTs are not, so the
    // one POST that meets the dead member fails, and passive health then skips that member.
    for _ in 0..6 {
        let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
        assert_eq!(send(&mut conn, &get("/pool", &auth)).await.0, 200);
    }
    let mut posts = Vec::new();
    for _ in 0..6 {
        let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
        let request =
            format!("POST /posts HTTP/1.1\r\nhost: gw.test\r\n{auth}content-length: 0\r\n\r\n");
        posts.push(send(&mut conn, &request).await.0);
    }
    assert_eq!(
        posts.iter().filter(|s| **s == 502).count(),
        1,
        "POSTs: {posts:?}"
    );
    assert_eq!(posts.iter().filter(|s| **s == 200).count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_pass_through_both_ways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = echo_upstream().await;
    let f = fixture(upstream).await;
    common::add_route(&f, "/ws", &[upgrade_echo_upstream().await], "").await;
    let proxy = start_proxy(&f).await;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nhost: gw.test\r\nx-api-key: {}\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        f.key.expose()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        conn.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // A masked WebSocket text frame "hello", echoed back byte for byte.
    let frame = [
        0x81,
        0x85,
        1,
        2,
        3,
        4,
        b'h' ^ 1,
        b'e' ^ 2,
        b'l' ^ 3,
        b'l' ^ 4,
        b'o' ^ 1,
    ];
    conn.write_all(&frame).await.unwrap();
    let mut echoed = [0u8; 11];
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed, frame);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_431_malformed_requests_400_and_the_proxy_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = echo_upstream().await;
    let f = fixture(upstream).await;
    let proxy = start_proxy(&f).await;
    let auth = format!("x-api-key: {}\r\n", f.key.expose());

    let big = format!("x-padding: {}\r\n", "a".repeat(40 * 1024));
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    let (status, _, body) = send(&mut conn, &get("/api/x", &format!("{auth}{big}"))).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (431, "headers_too_large")
    );

    for garbage in [
        &b"GET /api/x HTTP/1.1\r\nhost: gw.test\r\nno colon here\r\n\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
        b"GET /api/x HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
    ] {
        let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
        conn.write_all(garbage).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{garbage:?} → {answer:?}"
        );
    }
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    assert_eq!(send(&mut conn, &get("/api/x", &auth)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_keeps_failing_auth_is_refused_before_auth() {
    let upstream = echo_upstream().await;
    let f = fixture(upstream).await;
    let proxy =
        common::start_proxy_with(&f, &[("TOLLGATE_PROXY_FLOOD_THRESHOLD", "20".into())]).await;
    let wrong = "x-api-key: tg_live_0000000000000000_00000000000000000000000000000000\r\n";
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    for _ in 0..20 {
        assert_eq!(send(&mut conn, &get("/api/x", wrong)).await.0, 401);
    }
    let valid = format!("x-api-key: {}\r\n", f.key.expose());
    let (status, headers, body) = send(&mut conn, &get("/api/x", &valid)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (429, "too_many_failed_auth")
    );
    assert!(headers.contains("retry-after: 1"), "{headers}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_from_the_tenant_issuer_are_checked_for_expiry_audience_and_algorithm() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    const SECRET: &str = "a-test-only-hs256-secret-of-at-least-32-bytes";
    let upstream = echo_upstream().await;
    let f = fixture(upstream).await;
    f.db.client()
        .await
        .execute(
            "INSERT INTO jwt_issuers (id, tenant_id, issuer, audience, algorithm, key_material) \
             VALUES (gen_random_uuid(), $1, 'https://idp.test', 'orders-api', 'HS256', $2)",
            &[f.tenant.as_uuid(), &SECRET],
        )
        .await
        .unwrap();
    let proxy = start_proxy(&f).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = |alg: Algorithm, aud: &str, exp: i64| {
        let claims =
            serde_json::json!({"iss": "https://idp.test", "aud": aud, "exp": exp, "sub": "u1"});
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let unsigned = {
        use base64_url_free::encode as b64;
        format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(format!(
                r#"{{"iss":"https://idp.test","aud":"orders-api","exp":{}}}"#,
                now + 600
            )
            .as_bytes())
        )
    };
    let cases = [
        (token(Algorithm::HS256, "orders-api", now + 600), 200, ""),
        (
            token(Algorithm::HS256, "orders-api", now - 600),
            401,
            "expired_token",
        ),
        (
            token(Algorithm::HS256, "billing-api", now + 600),
            401,
            "invalid_audience",
        ),
        (
            token(Algorithm::HS384, "orders-api", now + 600),
            401,
            "algorithm_not_allowed",
        ),
        (unsigned, 401, "algorithm_not_allowed"),
    ];
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    for (token, status, code) in cases {
        let (got, _, body) = send(
            &mut conn,
            &get("/api/x", &format!("authorization: Bearer {token}\r\n")),
        )
        .await;
        assert_eq!(got, status, "{body}");
        if status == 200 {
            assert!(
                !body.to_ascii_lowercase().contains("authorization"),
                "{body}"
            );
            assert!(body.contains(&f.tenant.to_string()));
        } else {
            assert_eq!(error_code(&body), code, "{body}");
        }
    }
}

/// Unpadded base64url, enough for a hand-built unsigned token.
mod base64_url_free {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_less_mode_serves_from_a_yaml_file_and_follows_its_changes() {
    let upstream = echo_upstream().await;
    let f = fixture(upstream).await;
    let pepper = tollgate_core::KeyPepper::from_hex(common::PEPPER_HEX).unwrap();
    let key = ApiKey::generate(KeyEnv::Live).unwrap();
    let hash = tollgate_core::hex::encode(key.hash(&pepper).as_bytes());
    let file = std::env::temp_dir().join(tollgate_test_support::unique_name("tollgate-dbless"));
    let yaml = |revoked: bool| {
        format!(
            "plans:\n  - name: free\n    rate: {{ requests_per_second: 100, burst: 100 }}\n    \
             pricing: {{ currency: USD, base_fee_minor: 0, model: flat }}\n\
             tenants:\n  - id: {}\n    slug: edge\n    plan: free\n    keys:\n      - id: {}\n        \
             hash: {hash}\n        revoked: {revoked}\n    routes:\n      - path_prefix: /\n        \
             upstreams: [\"{upstream}\"]\n",
            f.tenant,
            key.id().as_str()
        )
    };
    std::fs::write(&file, yaml(false)).unwrap();
    let proxy = common::start_proxy_with(
        &f,
        &[("TOLLGATE_PROXY_CONFIG_FILE", file.display().to_string())],
    )
    .await;
    let auth = format!("x-api-key: {}\r\n", key.expose());
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    let (status, _, seen) = send(&mut conn, &get("/anything", &auth)).await;
    assert_eq!(status, 200, "{seen}");
    assert!(seen.contains(&f.tenant.to_string()));

    // The file changes: the key is revoked within the reload period (1 s) and a bit.
    std::fs::write(&file, yaml(true)).unwrap();
    let changed = Instant::now();
    loop {
        let (status, _, body) = send(&mut conn, &get("/anything", &auth)).await;
        if status == 401 {
            assert_eq!(error_code(&body), "revoked_api_key");
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(3),
            "the file change was not applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A broken file is refused and the last good snapshot keeps serving.
    std::fs::write(&file, "tenants: [{ nonsense").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _, body) = send(&mut conn, &get("/anything", &auth)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (401, "revoked_api_key")
    );
    let _ = std::fs::remove_file(&file);
}

/// An upstream that answers 200 a while after a request arrives, and says when one did.
async fn slow_upstream(delay: Duration) -> (String, tokio::sync::mpsc::Receiver<()>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (arrived, arrivals) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let arrived = arrived.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                while reader.read_line(&mut line).await.unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                let _ = arrived.send(()).await;
                tokio::time::sleep(delay).await;
                let _ = reader
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow")
                    .await;
            });
        }
    });
    (addr, arrivals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_and_stops_being_ready() {
    let upstream = echo_upstream().await;
    let f = fixture(upstream).await;
    let (slow, mut arrivals) = slow_upstream(Duration::from_millis(1500)).await;
    common::add_route(&f, "/slow", &[slow], "").await;
    let mut proxy =
        common::start_proxy_with(&f, &[("TOLLGATE_PROXY_GRACE_SECONDS", "4".into())]).await;
    let auth = format!("x-api-key: {}\r\n", f.key.expose());
    let addr = proxy.addr;
    let in_flight = tokio::spawn(async move {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        send(&mut conn, &get("/slow", &auth)).await
    });
    arrivals.recv().await.unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &proxy.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "slow"),
        "the in-flight request was cut"
    );
    // No longer ready: 503, or no answer at all once the listener has stopped accepting.
    let ready = tokio::time::timeout(Duration::from_millis(500), async {
        let mut conn = TcpStream::connect(proxy.admin).await.ok()?;
        Some(
            send(&mut conn, "GET /ready HTTP/1.1\r\nhost: admin\r\n\r\n")
                .await
                .0,
        )
    })
    .await;
    assert!(
        !matches!(ready, Ok(Some(200))),
        "still ready while draining"
    );
    proxy.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_keys_keep_working_while_postgresql_is_unreachable() {
    let upstream = echo_upstream().await;
    let f = fixture(upstream).await;
    let link = tollgate_test_support::FaultyLink::start(f.db.server_addr()).await;
    let proxy =
        common::start_proxy_with(&f, &[("TOLLGATE_DATABASE_URL", f.db.url_via(link.addr()))]).await;
    let auth = format!("x-api-key: {}\r\n", f.key.expose());
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    assert_eq!(send(&mut conn, &get("/api/x", &auth)).await.0, 200);
    link.cut();
    // Past the loader's periodic reload and reconnect attempts: still served from the snapshot.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        assert_eq!(send(&mut conn, &get("/api/x", &auth)).await.0, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut admin = TcpStream::connect(proxy.admin).await.unwrap();
    let (status, _, _) = send(&mut admin, "GET /ready HTTP/1.1\r\nhost: admin\r\n\r\n").await;
    assert_eq!(status, 200, "a loaded snapshot keeps the proxy ready");
}
