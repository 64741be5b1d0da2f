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
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        println!(
            "{sql}: applied by the running proxy after {:?}",
            changed.elapsed()
        );
    }
}
