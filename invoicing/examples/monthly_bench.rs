//! Benchmark (not a test): `monthly` for 10,000 tenants with a month of hourly usage each,
//! seeded directly into `usage_hour` of a fresh database on the local stack.
//!
//! `cargo run --release -p tollgate-invoicing --example monthly_bench` (after `make services`);
//! `TOLLGATE_BENCH_TENANTS` changes the tenant count. Prints the seeding time, the monthly
//! run's time and invoices per second, and checks that every tenant got one invoice.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::float_arithmetic
)]

use std::time::Instant;

use tollgate_core::rating::BillingPeriod;
use tollgate_invoicing::config::MonthlyConfig;
use tollgate_invoicing::job::{Faults, run_monthly};
use tollgate_test_support::TestDb;

/// Connections the run uses (the binary's default).
const WORKERS: usize = 4;

const PRICINGS: [&str; 3] = [
    r#"{"currency":"USD","base_fee_minor":4900,"included_units":1000,"model":"graduated","tiers":[{"up_to":10000,"unit_price":"0.001"},{"up_to":100000,"unit_price":"0.0008"},{"up_to":null,"unit_price":"0.0005"}]}"#,
    r#"{"currency":"USD","base_fee_minor":9900,"model":"volume","tiers":[{"up_to":50000,"unit_price":"0.002"},{"up_to":null,"unit_price":"0.0015"}]}"#,
    r#"{"currency":"USD","base_fee_minor":1000,"included_units":100,"model":"package","package_size":1000,"package_price":"2.50"}"#,
];

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let tenants: i64 = std::env::var("TOLLGATE_BENCH_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let period = BillingPeriod::parse("2026-11").unwrap();
    let db = TestDb::new().await;
    let client = db.client().await;
    let seeding = Instant::now();
    for (i, pricing) in PRICINGS.iter().enumerate() {
        client
            .execute(
                "INSERT INTO plans (id, name, rate_per_second, burst, pricing) \
                 VALUES (gen_random_uuid(), $1, 100, 100, $2::text::jsonb)",
                &[&format!("bench-{i}"), pricing],
            )
            .await
            .unwrap();
    }
    client
        .batch_execute(&format!(
            "INSERT INTO tenants (id, slug, name) \
               SELECT gen_random_uuid(), 'bench-' || n, 'Bench ' || n FROM generate_series(1, {tenants}) n;
             INSERT INTO subscriptions (id, tenant_id, plan_id, starts_at) \
               SELECT gen_random_uuid(), t.id, \
                      (SELECT id FROM plans ORDER BY name OFFSET (abs(hashtext(t.id::text)) % 3) LIMIT 1), \
                      '2026-01-01T00:00:00Z' FROM tenants t;
             INSERT INTO usage_hour (hour, tenant_id, key_id, route_id, status_class, request_count, \
                                     billable_count, request_bytes, response_bytes, latency_us_sum) \
               SELECT h, t.id, NULL, NULL, 2, 40 + (abs(hashtext(t.id::text)) % 50), \
                      40 + (abs(hashtext(t.id::text)) % 50), 0, 0, 0 \
                 FROM tenants t, generate_series('{start}'::timestamptz, '{end}'::timestamptz - interval '1 hour', interval '1 hour') h;
             ANALYZE;",
            start = "2026-11-01T00:00:00Z",
            end = "2026-12-01T00:00:00Z",
        ))
        .await
        .unwrap();
    let rows: i64 = client
        .query_one("SELECT count(*) FROM usage_hour", &[])
        .await
        .unwrap()
        .get(0);
    println!(
        "seeded {tenants} tenants, {rows} usage_hour rows in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let config = MonthlyConfig {
        period,
        tenant: None,
        dry_run: false,
        correction_lookback_months: 12,
        workers: WORKERS,
    };
    let mut runners = Vec::new();
    for _ in 0..WORKERS {
        runners.push(db.client().await);
    }
    let started = Instant::now();
    let summary = run_monthly(
        &mut runners,
        &config,
        &mut Faults::default(),
        &mut String::new(),
    )
    .await
    .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let invoices: i64 = client
        .query_one(
            "SELECT count(*) FROM invoices WHERE status = 'finalized'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    println!(
        "monthly ({WORKERS} connections): {} created, {} failed, {invoices} finalized invoices in {elapsed:.1} s ({:.0} invoices/s)",
        summary.created,
        summary.failed,
        f64::from(u32::try_from(invoices).unwrap()) / elapsed
    );
    assert_eq!(invoices, tenants);
}
