//! Billing end to end through the real path: requests through a running `tollgate-proxy` with a
//! mix of 200, 401 and 429 outcomes → Kafka → metering → the hourly roll-up → the monthly
//! invoice of the current period (allowed for tests) → the usage quantity is exactly the number
//! of billable (200) requests and the amount is the hand-computed price.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tollgate_core::rating::BillingPeriod;
use tollgate_invoicing::config::MonthlyConfig;
use tollgate_invoicing::job::{Faults, run_hourly, run_monthly};
use tollgate_metering::{Aggregator, Health, MeteringConfig, Metrics};
use tollgate_test_support::fixtures::PlanLimits;

/// $5.00 a month, then 0.01 per request from the first one.
const PRICING: &str = r#"{"currency":"USD","base_fee_minor":500,"model":"graduated",
  "tiers":[{"up_to":null,"unit_price":"0.01"}]}"#;
/// Requests the plan's hard quota lets through; the rest are 429 `quota_exceeded`.
const QUOTA: i64 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_through_the_proxy_are_billed_exactly_once_on_the_monthly_invoice() {
    let upstream = echo_upstream().await;
    let f = fixture_with(
        upstream,
        PlanLimits {
            quota: Some((QUOTA, "hard")),
            ..PlanLimits::default()
        },
    )
    .await;
    let client = f.db.client().await;
    client
        .execute("UPDATE plans SET pricing = $1::text::jsonb", &[&PRICING])
        .await
        .unwrap();
    // Subscribed for the whole month, so the base fee is not prorated.
    client
        .execute(
            "UPDATE subscriptions SET starts_at = date_trunc('month', now(), 'UTC')",
            &[],
        )
        .await
        .unwrap();
    let proxy = start_proxy_with(
        &f,
        &[("TOLLGATE_UPSTREAM_ALLOW_NETWORKS", "127.0.0.0/8".to_owned())],
    )
    .await;

    let (stop, shutdown) = watch::channel(false);
    let metering = MeteringConfig {
        database_url: f.db.url().to_owned(),
        kafka_brokers: f.topic.brokers().to_owned(),
        topic: f.topic.name().to_owned(),
        dlq_topic: format!("{}-dlq", f.topic.name()),
        group_id: f.topic.group_id().to_owned(),
        session_timeout_ms: 6000,
        batch_max_records: 100,
        batch_max_wait_ms: 200,
        ..MeteringConfig::default()
    };
    let aggregator = Aggregator::new(
        metering,
        Arc::new(Metrics::new()),
        Arc::new(Health::default()),
    );
    let metering = tokio::spawn(async move { aggregator.run(shutdown).await.unwrap() });

    let auth = format!("x-api-key: {}\r\n", f.key.expose());
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut ok, mut limited, mut unauthorized) = (0i64, 0i64, 0i64);
    for i in 0..47 {
        let (status, _, _) = if i % 6 == 5 {
            send(
                &mut conn,
                &get("/api/x", "x-api-key: tg_live_not-a-key\r\n"),
            )
            .await
        } else {
            send(&mut conn, &get("/api/x", &auth)).await
        };
        match status {
            200 => ok += 1,
            429 => limited += 1,
            401 => unauthorized += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok, QUOTA);
    assert!(
        limited > 0 && unauthorized > 0,
        "{limited} 429s, {unauthorized} 401s"
    );

    // Metering has stored every request once it has counted all 47.
    let started = Instant::now();
    loop {
        let stored: i64 = client
            .query_one(
                "SELECT coalesce(sum(request_count), 0)::int8 FROM usage_minute",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if stored == ok + limited + unauthorized {
            break;
        }
        assert!(stored <= 47, "{stored} requests stored for 47 sent");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{stored} of 47 requests metered after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(true).unwrap();
    metering.await.unwrap();

    let mut invoicing = f.db.client().await;
    let now = OffsetDateTime::now_utc();
    run_hourly(&mut invoicing, now, 48, &mut Faults::default())
        .await
        .unwrap();
    let config = MonthlyConfig {
        period: BillingPeriod::containing(now).unwrap(),
        tenant: None,
        dry_run: false,
        correction_lookback_months: 12,
        workers: 1,
    };
    for _ in 0..2 {
        let summary = run_monthly(
            std::slice::from_mut(&mut invoicing),
            &config,
            &mut Faults::default(),
            &mut String::new(),
        )
        .await
        .unwrap();
        assert_eq!(summary.failed, 0);
    }
    let invoices = client
        .query(
            "SELECT i.status, i.total_minor, u.units FROM invoices i \
               JOIN invoice_usage u ON u.invoice_id = i.id WHERE i.tenant_id = $1",
            &[f.tenant.as_uuid()],
        )
        .await
        .unwrap();
    assert_eq!(invoices.len(), 1);
    let (status, total, units): (String, i64, i64) =
        (invoices[0].get(0), invoices[0].get(1), invoices[0].get(2));
    assert_eq!(status, "finalized");
    assert_eq!(units, ok, "billed units = 200 responses");
    let lines: Vec<(String, i64, i64)> = client
        .query(
            "SELECT kind, quantity, amount_minor FROM invoice_lines ORDER BY position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    // $5.00 + 30 × 0.01 = $5.30.
    assert_eq!(
        lines,
        [
            ("base_fee".to_owned(), 1, 500),
            ("usage".to_owned(), QUOTA, 30)
        ]
    );
    assert_eq!(total, 530);
    println!(
        "end to end: {ok} × 200, {limited} × 429, {unauthorized} × 401 → {units} billed units, total {total} minor units"
    );
}
