//! The proxy's `/metrics`: Prometheus text 0.0.4 that `promtool check metrics` accepts, and
//! OpenMetrics only for a scraper that asks for it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{echo_upstream, fixture, get, send, start_proxy};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_openmetrics_is_served_only_when_asked_for() {
    let upstream = echo_upstream().await;
    let f = fixture(upstream).await;
    let proxy = start_proxy(&f).await;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    let valid = format!("x-api-key: {}\r\n", f.key.expose());
    assert_eq!(send(&mut conn, &get("/api/x", &valid)).await.0, 200);
    assert_eq!(send(&mut conn, &get("/api/x", "")).await.0, 401);

    let mut admin = TcpStream::connect(proxy.admin).await.unwrap();
    let (status, headers, text) =
        send(&mut admin, "GET /metrics HTTP/1.1\r\nhost: admin\r\n\r\n").await;
    assert_eq!(status, 200);
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{headers}"
    );
    assert!(text.contains("# HELP gateway_requests_total "), "{text}");
    assert!(!text.contains("# EOF"), "{text}");
    tollgate_test_support::promtool::check_metrics(&text);

    let scrape = "GET /metrics HTTP/1.1\r\nhost: admin\r\naccept: \
                  application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n";
    let (status, headers, text) = send(&mut admin, scrape).await;
    assert_eq!(status, 200);
    assert!(
        headers.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{headers}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
}
