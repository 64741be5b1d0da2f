//! What the invoicing tests share: the real `tollgate-invoicing` binary run against a test
//! database, plans with known prices, usage rows as metering writes them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};

use time::OffsetDateTime;
use tokio_postgres::Client;
use tollgate_test_support::TestDb;
use uuid::Uuid;

pub const BIN: &str = env!("CARGO_BIN_EXE_tollgate-invoicing");

/// Growth: $49 a month, 1,000 included, graduated 0.001 / 0.0008 / 0.0005.
pub const GROWTH: &str = r#"{"currency":"USD","base_fee_minor":4900,"included_units":1000,
  "model":"graduated","tiers":[{"up_to":10000,"unit_price":"0.001"},
  {"up_to":100000,"unit_price":"0.0008"},{"up_to":null,"unit_price":"0.0005"}]}"#;
/// Scale: $99 a month, volume 0.002 / 0.0015 / 0.001.
pub const SCALE: &str = r#"{"currency":"USD","base_fee_minor":9900,"model":"volume",
  "tiers":[{"up_to":50000,"unit_price":"0.002"},{"up_to":500000,"unit_price":"0.0015"},
  {"up_to":null,"unit_price":"0.001"}]}"#;
/// Starter: $10 a month, 100 included, packages of 1,000 requests at $2.50.
pub const STARTER: &str = r#"{"currency":"USD","base_fee_minor":1000,"included_units":100,
  "model":"package","package_size":1000,"package_price":"2.50"}"#;
/// Flat: $20 a month, usage never charged.
pub const FLAT: &str = r#"{"currency":"USD","base_fee_minor":2000,"model":"flat"}"#;
/// Free: nothing at all.
pub const FREE: &str = r#"{"currency":"USD","base_fee_minor":0,"model":"flat"}"#;

pub fn at(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

pub async fn plan(client: &Client, name: &str, pricing: &str) -> Uuid {
    let id = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO plans (id, name, rate_per_second, burst, pricing) \
             VALUES ($1, $2, 100, 100, $3::text::jsonb)",
            &[&id, &format!("{name}-{}", id.simple()), &pricing],
        )
        .await
        .unwrap();
    id
}

pub async fn tenant(client: &Client, slug: &str) -> Uuid {
    let id = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $2)",
            &[&id, &slug],
        )
        .await
        .unwrap();
    id
}

pub async fn subscribe(
    client: &Client,
    tenant: Uuid,
    plan: Uuid,
    starts: &str,
    ends: Option<&str>,
) -> Uuid {
    let id = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO subscriptions (id, tenant_id, plan_id, starts_at, ends_at) \
             VALUES ($1, $2, $3, $4, $5)",
            &[&id, &tenant, &plan, &at(starts), &ends.map(at)],
        )
        .await
        .unwrap();
    id
}

/// Adds usage to a minute as metering does (an upsert that adds).
pub async fn usage(
    client: &Client,
    tenant: Uuid,
    minute: &str,
    status: i16,
    requests: i64,
    billable: i64,
) {
    client
        .execute(
            "INSERT INTO usage_minute AS m (minute, tenant_id, key_id, route_id, status_class, \
               request_count, billable_count, request_bytes, response_bytes, latency_us_sum) \
             VALUES ($1, $2, NULL, NULL, $3, $4, $5, 0, 0, 0) \
             ON CONFLICT ON CONSTRAINT usage_minute_key DO UPDATE SET \
               request_count = m.request_count + EXCLUDED.request_count, \
               billable_count = m.billable_count + EXCLUDED.billable_count",
            &[&at(minute), &tenant, &status, &requests, &billable],
        )
        .await
        .unwrap();
}

/// Runs the binary to completion.
pub fn run(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("TOLLGATE_DATABASE_URL", db.url())
        .env("TOLLGATE_LOG", "info")
        .env_remove("TOLLGATE_INVOICING_TEST_FAULT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs and asserts exit 0.
pub fn run_ok(db: &TestDb, args: &[&str]) -> Output {
    let out = run(db, args, &[]);
    assert!(
        out.status.success(),
        "{args:?} exited {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The summary log line's counts: (created, existing, failed).
pub fn summary(out: &Output) -> (u64, u64, u64) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("Monthly invoicing finished."))
        .unwrap_or_else(|| panic!("no summary in\n{stderr}"));
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    let field = |name: &str| json["fields"][name].as_u64().unwrap();
    (field("created"), field("existing"), field("failed"))
}

/// Every invoice: (tenant, period start, status, number, total).
pub async fn invoices(client: &Client) -> Vec<(Uuid, OffsetDateTime, String, Option<String>, i64)> {
    client
        .query(
            "SELECT tenant_id, period_start, status, number, total_minor FROM invoices \
             ORDER BY number NULLS LAST, tenant_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

/// A tenant's invoice lines for a period: (kind, quantity, amount), by position.
pub async fn lines(client: &Client, tenant: Uuid, period_start: &str) -> Vec<(String, i64, i64)> {
    client
        .query(
            "SELECT l.kind, l.quantity, l.amount_minor FROM invoice_lines l \
               JOIN invoices i ON i.id = l.invoice_id \
              WHERE i.tenant_id = $1 AND i.period_start = $2 ORDER BY l.position",
            &[&tenant, &at(period_start)],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

pub fn kq(kind: &str, quantity: i64, amount: i64) -> (String, i64, i64) {
    (kind.to_owned(), quantity, amount)
}
