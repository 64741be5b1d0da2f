//! Metering's `/metrics` through its admin server: Prometheus text 0.0.4 that
//! `promtool check metrics` accepts, OpenMetrics only when the scraper asks for it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tollgate_metering::metrics::{PartitionLabel, ReasonLabel};
use tollgate_metering::{Health, Metrics, admin};

/// One request on a fresh connection (`Connection: close`): the whole response as text.
async fn get(addr: std::net::SocketAddr, headers: &str) -> String {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let request =
        format!("GET /metrics HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n{headers}\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn metrics_pass_promtool_and_openmetrics_is_served_only_when_asked_for() {
    let metrics = Arc::new(Metrics::new());
    metrics.events_inserted.inc_by(10);
    metrics.batches.inc();
    metrics.batch_records.observe(10.0);
    metrics.batch_duration_seconds.observe(0.02);
    metrics
        .dead_lettered
        .get_or_create(&ReasonLabel {
            reason: "malformed",
        })
        .inc();
    metrics
        .consumer_lag
        .get_or_create(&PartitionLabel { partition: 0 })
        .set(3);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(admin::serve(
        listener,
        Arc::new(Health::default()),
        metrics,
        shutdown,
    ));

    let response = get(addr, "").await;
    let (head, text) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(
        text.contains("# HELP metering_events_inserted_total "),
        "{text}"
    );
    tollgate_test_support::promtool::check_metrics(text);

    let response = get(
        addr,
        "accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n",
    )
    .await;
    let (head, text) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    stop.send(true).unwrap();
    server.await.unwrap();
}
