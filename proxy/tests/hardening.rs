//! What a hostile tenant or client tries against the `tollgate-proxy` binary, over real
//! sockets with the snapshot from the real PostgreSQL: routes to internal addresses, paths
//! that disguise their route, slow and greedy clients, forged forwarding headers.
// Helpers outside #[test] fns: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{echo_upstream, error_code, fixture, get, send, start_proxy_with};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_to_internal_addresses_are_not_forwarded_unless_their_network_is_allowed() {
    let upstream = echo_upstream().await;
    let f = fixture(upstream).await;
    // A name that resolves to loopback is refused as its address is.
    common::add_route(
        &f,
        "/named",
        &[format!("localhost:{}", upstream.port())],
        "",
    )
    .await;
    let auth = format!("x-api-key: {}\r\n", f.key.expose());

    let strict = start_proxy_with(&f, &[("TOLLGATE_UPSTREAM_ALLOW_NETWORKS", String::new())]).await;
    for path in ["/api/x", "/named/x"] {
        // A 502 closes the connection.
        let mut conn = TcpStream::connect(strict.addr).await.unwrap();
        let (status, _, body) = send(&mut conn, &get(path, &auth)).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (502, "upstream_unavailable"),
            "{path}: {body}"
        );
    }
    drop(strict);

    let allowed = start_proxy_with(
        &f,
        &[("TOLLGATE_UPSTREAM_ALLOW_NETWORKS", "127.0.0.1/32".into())],
    )
    .await;
    let mut conn = TcpStream::connect(allowed.addr).await.unwrap();
    assert_eq!(send(&mut conn, &get("/api/x", &auth)).await.0, 200);
    assert_eq!(send(&mut conn, &get("/named/x", &auth)).await.0, 200);
}

#[test]
fn a_malformed_allow_list_is_refused_at_start_naming_the_setting() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate-proxy"))
        .arg("--check-config")
        .env("TOLLGATE_KEY_PEPPER", common::PEPPER_HEX)
        .env("TOLLGATE_DATABASE_URL", "postgres://u@127.0.0.1:1/x")
        .env("TOLLGATE_USAGE_DISABLED", "true")
        .env_remove("TOLLGATE_KAFKA_BROKERS")
        .env(
            "TOLLGATE_UPSTREAM_ALLOW_NETWORKS",
            "127.0.0.1/32,10.0.0.1/8",
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("TOLLGATE_UPSTREAM_ALLOW_NETWORKS") && stderr.contains("10.0.0.1/8"),
        "{stderr}"
    );
}

/// Routes `/svc` (no scope), `/svc/admin` (scope `admin`) and `/strip` (prefix stripped), all
/// to `upstream`; the fixture's key has no scopes.
async fn scoped_routes(f: &common::Fixture, upstream: std::net::SocketAddr) {
    let upstream = [upstream.to_string()];
    common::add_route(f, "/svc", &upstream, "").await;
    common::add_route(f, "/svc/admin", &upstream, "required_scope='admin'").await;
    common::add_route(f, "/strip", &upstream, "strip_prefix=true").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disguised_paths_match_the_route_they_stand_for_and_are_forwarded_normalised() {
    let upstream = echo_upstream().await;
    let f = fixture(upstream).await;
    scoped_routes(&f, upstream).await;
    let proxy = common::start_proxy(&f).await;
    let auth = format!("x-api-key: {}\r\n", f.key.expose());
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    for disguised in [
        "/svc/admin/secret",
        "/svc/x/../admin/secret",
        "/svc/./admin/secret",
        "/svc/%61dmin/secret",
        "/svc/%2E%2E/svc/admin/secret",
        "/svc//admin/secret",
        "/svc/admin;jsessionid=1/secret",
    ] {
        let (status, _, body) = send(&mut conn, &get(disguised, &auth)).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (403, "missing_scope"),
            "{disguised}: {body}"
        );
    }
    for (sent, seen) in [
        ("/svc/x/../ok?a=%2F", "get /svc/ok?a=%2f http/1.1"),
        ("/strip/./x/%7euser", "get /x/~user http/1.1"),
        ("/strip/a/../../strip/b", "get /b http/1.1"),
    ] {
        let (status, _, echoed) = send(&mut conn, &get(sent, &auth)).await;
        assert_eq!(status, 200, "{sent}: {echoed}");
        let echoed = echoed.to_ascii_lowercase();
        assert!(
            echoed.starts_with(seen),
            "{sent} reached the upstream as {echoed}"
        );
    }
    for ambiguous in [
        "/svc/admin%2fsecret",
        "/svc/admin%5Csecret",
        "/svc/..;/admin",
    ] {
        let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
        let (status, headers, body) = send(&mut conn, &get(ambiguous, &auth)).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (400, "ambiguous_path"),
            "{ambiguous}: {body}"
        );
        assert!(
            headers.contains("content-type: application/json"),
            "{headers}"
        );
    }
}

async fn metrics_text(proxy: &common::Proxy) -> String {
    let mut conn = TcpStream::connect(proxy.admin).await.unwrap();
    send(&mut conn, "GET /metrics HTTP/1.1\r\nhost: admin\r\n\r\n")
        .await
        .2
}

/// Reads until the peer closes (or resets): `None` if it is still open after 15 s.
async fn read_until_closed<R: tokio::io::AsyncRead + Unpin>(conn: &mut R) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = conn.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    closed.ok()?;
    Some(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_idle_connections_and_greedy_addresses_are_cut_off_and_counted() {
    use tokio::io::AsyncWriteExt;
    let upstream = echo_upstream().await;
    let f = fixture(upstream).await;
    let proxy = start_proxy_with(
        &f,
        &[
            ("TOLLGATE_PROXY_HEAD_TIMEOUT_MS", "500".into()),
            ("TOLLGATE_PROXY_IDLE_TIMEOUT_SECONDS", "1".into()),
            ("TOLLGATE_PROXY_MAX_CONNECTIONS_PER_ADDRESS", "3".into()),
        ],
    )
    .await;
    let auth = format!("x-api-key: {}\r\n", f.key.expose());

    // A head trickling in a byte at a time never completes: 408, closed. (Pingora alone
    // waits up to 60 s per byte.)
    let (mut from_proxy, mut to_proxy) = TcpStream::connect(proxy.addr).await.unwrap().into_split();
    let trickle = tokio::spawn(async move {
        for byte in b"GET /api/x HTTP/1.1\r\nhost: gw.test\r\nx-padding: "
            .iter()
            .cycle()
        {
            if to_proxy.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    let answer = read_until_closed(&mut from_proxy).await;
    trickle.abort();
    let answer = answer.expect("the slow head was cut off");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");

    // A kept-alive connection that sends nothing more is closed after the idle timeout.
    let mut idle = TcpStream::connect(proxy.addr).await.unwrap();
    assert_eq!(send(&mut idle, &get("/api/x", &auth)).await.0, 200);
    assert_eq!(read_until_closed(&mut idle).await.as_deref(), Some(""));

    // Three connections from one address are served; a fourth is refused while they stay.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
        assert_eq!(send(&mut conn, &get("/api/x", &auth)).await.0, 200);
        held.push(conn);
    }
    let mut fourth = TcpStream::connect(proxy.addr).await.unwrap();
    let answer = read_until_closed(&mut fourth).await.unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("\"too_many_connections\""), "{answer}");
    drop(held);

    let metrics = metrics_text(&proxy).await;
    for reason in ["head_timeout", "idle_timeout", "per_address_limit"] {
        let line = format!("gateway_connections_closed_total{{reason=\"{reason}\"}} ");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&line) && !l.ends_with(" 0")),
            "{reason} not counted:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_the_gateways_own_unless_a_trusted_proxy_sent_them() {
    let upstream = echo_upstream().await;
    let f = fixture(upstream).await;
    let auth = format!("x-api-key: {}\r\n", f.key.expose());
    let forged = format!(
        "{auth}x-forwarded-for: 6.6.6.6\r\nx-real-ip: 6.6.6.6\r\nforwarded: for=6.6.6.6\r\n\
         x-forwarded-host: admin.internal\r\n"
    );

    let direct = common::start_proxy(&f).await;
    let mut conn = TcpStream::connect(direct.addr).await.unwrap();
    let (status, _, seen) = send(&mut conn, &get("/api/x", &forged)).await;
    assert_eq!(status, 200);
    let seen = seen.to_ascii_lowercase();
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\r\n"), "{seen}");
    assert!(seen.contains("x-real-ip: 127.0.0.1\r\n"), "{seen}");
    assert!(seen.contains("x-forwarded-host: gw.test\r\n"), "{seen}");
    assert!(
        !seen.contains("6.6.6.6") && !seen.contains("forwarded: for"),
        "{seen}"
    );
    drop(direct);

    // Behind a trusted proxy (here: loopback), its X-Forwarded-For names the client, and the
    // flood guard counts that client, not the proxy.
    let behind = start_proxy_with(
        &f,
        &[
            ("TOLLGATE_PROXY_TRUSTED_PROXIES", "127.0.0.1/32".into()),
            ("TOLLGATE_PROXY_FLOOD_THRESHOLD", "5".into()),
        ],
    )
    .await;
    let mut conn = TcpStream::connect(behind.addr).await.unwrap();
    let (status, _, seen) = send(&mut conn, &get("/api/x", &forged)).await;
    assert_eq!(status, 200);
    let seen = seen.to_ascii_lowercase();
    assert!(
        seen.contains("x-forwarded-for: 6.6.6.6, 127.0.0.1\r\n"),
        "{seen}"
    );
    assert!(seen.contains("x-real-ip: 6.6.6.6\r\n"), "{seen}");
    let wrong = "x-api-key: tg_live_0000000000000000_00000000000000000000000000000000\r\n";
    for _ in 0..5 {
        let guessing = format!("{wrong}x-forwarded-for: 6.6.6.6\r\n");
        assert_eq!(send(&mut conn, &get("/api/x", &guessing)).await.0, 401);
    }
    let (status, _, body) = send(&mut conn, &get("/api/x", &forged)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (429, "too_many_failed_auth")
    );
    let other = format!("{auth}x-forwarded-for: 7.7.7.7\r\n");
    assert_eq!(send(&mut conn, &get("/api/x", &other)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_id_and_a_wrong_secret_get_the_same_answer() {
    let upstream = echo_upstream().await;
    let f = fixture(upstream).await;
    let proxy = common::start_proxy(&f).await;
    let unknown = tollgate_core::ApiKey::generate(tollgate_core::KeyEnv::Live).unwrap();
    let mut forged = f.key.expose().to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'a' { 'b' } else { 'a' });
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    let mut answers = Vec::new();
    for key in [unknown.expose(), forged.as_str()] {
        let (status, _, body) =
            send(&mut conn, &get("/api/x", &format!("x-api-key: {key}\r\n"))).await;
        answers.push((status, body));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, 401);
    // Only the metrics tell them apart.
    let metrics = metrics_text(&proxy).await;
    for code in ["unknown_api_key", "invalid_api_key"] {
        assert!(
            metrics.contains(&format!("gateway_auth_failures_total{{code=\"{code}\"}} 1")),
            "{code}:\n{metrics}"
        );
    }
}

/// Sends raw bytes on a new connection and reads the answer until the gateway closes.
async fn raw_exchange(proxy: &common::Proxy, request: &[u8]) -> String {
    use tokio::io::AsyncWriteExt;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    // The gateway may answer and close before it has read everything.
    let _ = conn.write_all(request).await;
    read_until_closed(&mut conn).await.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_http_forbids_get_a_json_400() {
    let upstream = echo_upstream().await;
    let f = fixture(upstream).await;
    let proxy = common::start_proxy(&f).await;
    let auth = format!("x-api-key: {}\r\n", f.key.expose());
    let many = "x-h: v\r\n".repeat(300);
    for (request, status, code) in [
        (
            format!("GET /api/x HTTP/1.1\r\n{auth}\r\n"),
            400,
            "missing_host",
        ),
        // Two Host headers: Pingora answers a bare 400 itself (README).
        (
            format!(
                "POST /api/x HTTP/1.1\r\nhost: gw.test\r\n{auth}content-length: 5, 5\r\n\r\nhello"
            ),
            400,
            "invalid_content_length",
        ),
        (
            format!("GET /api/x HTTP/1.1\r\nhost: gw.test\r\n{auth}x-nul: a\0b\r\n\r\n"),
            400,
            "malformed_request",
        ),
        (
            format!("GET /api/x HTTP/1.1\r\nhost: gw.test\r\n{auth}x-cr: a\rb\r\n\r\n"),
            400,
            "malformed_request",
        ),
        (
            format!("GET /api/x HTTP/1.1\r\nhost: gw.test\r\n{auth}{many}\r\n"),
            431,
            "headers_too_large",
        ),
        (
            format!(
                "GET /api/x HTTP/1.1\r\nhost: gw.test\r\nx-big: {}\r\n\r\n",
                "a".repeat(1 << 20)
            ),
            431,
            "headers_too_large",
        ),
    ] {
        let answer = raw_exchange(&proxy, request.as_bytes()).await;
        let head = answer.split("\r\n\r\n").next().unwrap_or_default();
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{:?} → {head}",
            request.get(..60)
        );
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        assert!(!body.is_empty(), "{:?} → {answer}", request.get(..60));
        assert_eq!(error_code(body), code, "{:?} → {answer}", request.get(..60));
    }
    // An absolute-form target is served, and forwarded in origin form.
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    let (status, _, seen) = send(
        &mut conn,
        &format!("GET http://gw.test/api/x?q=1 HTTP/1.1\r\nhost: gw.test\r\n{auth}\r\n"),
    )
    .await;
    assert_eq!(status, 200, "{seen}");
    assert!(
        seen.to_ascii_lowercase()
            .starts_with("get /api/x?q=1 http/1.1"),
        "{seen}"
    );
}
