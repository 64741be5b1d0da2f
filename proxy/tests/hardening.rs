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
    let mut conn = TcpStream::connect(strict.addr).await.unwrap();
    for path in ["/api/x", "/named/x"] {
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
