//! `tollgate-invoicing monthly` against the real PostgreSQL: hand-computed invoices, exactly once
//! under reruns, concurrent runs and killed runs, late usage as one correction, the edge cases,
//! and the exit codes a CronJob retries on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;
use tollgate_test_support::TestDb;

/// Three tenants on graduated, volume and package pricing, one switching plans on the 11th.
struct ThreeTenants {
    graduated: uuid::Uuid,
    volume: uuid::Uuid,
    switching: uuid::Uuid,
}

async fn three_tenants(db: &TestDb) -> ThreeTenants {
    let client = db.client().await;
    let (growth, scale, starter) = (
        plan(&client, "growth", GROWTH).await,
        plan(&client, "scale", SCALE).await,
        plan(&client, "starter", STARTER).await,
    );
    let graduated = tenant(&client, "graduated").await;
    subscribe(&client, graduated, growth, "2026-10-15T08:00:00Z", None).await;
    // 25,500 billable requests; 401s and 429s are counted but not billable.
    usage(
        &client,
        graduated,
        "2026-11-02T10:00:00Z",
        2,
        20_000,
        20_000,
    )
    .await;
    usage(&client, graduated, "2026-11-30T23:59:00Z", 2, 5_500, 5_500).await;
    usage(&client, graduated, "2026-11-02T10:00:00Z", 4, 500, 0).await;
    // Outside the period: never billed on November's invoice.
    usage(&client, graduated, "2026-10-31T23:59:00Z", 2, 7, 7).await;
    usage(&client, graduated, "2026-12-01T00:00:00Z", 2, 9, 9).await;

    let volume = tenant(&client, "volume").await;
    subscribe(&client, volume, scale, "2026-01-01T00:00:00Z", None).await;
    usage(&client, volume, "2026-11-10T12:34:00Z", 2, 60_004, 60_004).await;

    let switching = tenant(&client, "switching").await;
    subscribe(
        &client,
        switching,
        starter,
        "2026-09-01T00:00:00Z",
        Some("2026-11-11T00:00:00Z"),
    )
    .await;
    subscribe(&client, switching, growth, "2026-11-11T00:00:00Z", None).await;
    usage(&client, switching, "2026-11-10T23:59:00Z", 2, 2_533, 2_533).await;
    usage(
        &client,
        switching,
        "2026-11-11T00:00:00Z",
        2,
        12_000,
        12_000,
    )
    .await;
    ThreeTenants {
        graduated,
        volume,
        switching,
    }
}

/// The invoices computed by hand (README, "Invoicing"), to the cent.
async fn assert_hand_computed(db: &TestDb, t: &ThreeTenants) {
    let client = db.client().await;
    // Growth: 25,500 − 1,000 included = 24,500: 10,000 × 0.001 = 10.00; 14,500 × 0.0008 = 11.60.
    assert_eq!(
        lines(&client, t.graduated, "2026-11-01T00:00:00Z").await,
        [
            kq("base_fee", 1, 4900),
            kq("usage", 10_000, 1000),
            kq("usage", 14_500, 1160)
        ]
    );
    // Scale (volume): all 60,004 at the second tier: 60,004 × 0.0015 = 90.006 → 90.01.
    assert_eq!(
        lines(&client, t.volume, "2026-11-01T00:00:00Z").await,
        [kq("base_fee", 1, 9900), kq("usage", 60_004, 9001)]
    );
    // Starter for 10 of 30 days: fee ⌊1000/3⌋ = 3.33; included ⌊100/3⌋ = 33; 2,500 billable →
    // 3 packages × 2.50. Growth for 20 days: fee ⌊4900 × 2/3⌋ = 32.66; included 666; 11,334
    // billable: 10,000 × 0.001 = 10.00; 1,334 × 0.0008 = 1.0672 → 1.07.
    assert_eq!(
        lines(&client, t.switching, "2026-11-01T00:00:00Z").await,
        [
            kq("base_fee", 1, 333),
            kq("usage", 3, 750),
            kq("base_fee", 1, 3266),
            kq("usage", 10_000, 1000),
            kq("usage", 1_334, 107)
        ]
    );
    let mut totals: Vec<(uuid::Uuid, i64)> = invoices(&client)
        .await
        .into_iter()
        .map(|i| (i.0, i.4))
        .collect();
    totals.sort();
    let mut expected = vec![(t.graduated, 7060), (t.volume, 18_901), (t.switching, 5456)];
    expected.sort();
    assert_eq!(totals, expected);
}

fn year() -> i32 {
    time::OffsetDateTime::now_utc().year()
}

async fn numbers(db: &TestDb) -> Vec<String> {
    let client = db.client().await;
    let mut numbers: Vec<String> = invoices(&client)
        .await
        .into_iter()
        .filter_map(|i| i.3)
        .collect();
    numbers.sort();
    numbers
}

fn gapless(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("TG-{}-{i:06}", year())).collect()
}

#[tokio::test]
async fn three_tenants_get_the_hand_computed_invoices_once() {
    let db = TestDb::new().await;
    let t = three_tenants(&db).await;
    // Every hour rolled up, then one made dirty again by late 4xx: rating is exact either way.
    run_ok(&db, &["hourly", "--lookback-hours", "1"]);
    usage(
        &db.client().await,
        t.graduated,
        "2026-11-02T10:00:00Z",
        4,
        10,
        0,
    )
    .await;
    let out = run_ok(&db, &["monthly", "--period", "2026-11"]);
    assert_eq!(summary(&out), (3, 0, 0));
    assert_hand_computed(&db, &t).await;
    assert_eq!(numbers(&db).await, gapless(3));
    let client = db.client().await;
    let steps: Vec<(String, String, i32)> = client
        .query(
            "SELECT s.step, s.status, s.attempts FROM invoice_steps s JOIN invoices i ON i.id = s.invoice_id \
              WHERE i.tenant_id = $1 ORDER BY step",
            &[&t.volume],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        steps,
        [
            ("draft".to_owned(), "succeeded".to_owned(), 1),
            ("finalize".to_owned(), "succeeded".to_owned(), 1)
        ]
    );
    // Run again: nothing new, nothing changed.
    let out = run_ok(&db, &["monthly", "--period", "2026-11"]);
    assert_eq!(summary(&out), (0, 3, 0));
    assert_hand_computed(&db, &t).await;
    assert_eq!(numbers(&db).await, gapless(3));
    // A finalized invoice never changes, even by hand.
    let refused = client
        .execute("UPDATE invoice_lines SET amount_minor = 1", &[])
        .await
        .unwrap_err();
    let message = refused.as_db_error().unwrap().message();
    assert!(message.contains("never change"), "{message}");
}

#[tokio::test]
async fn two_concurrent_runs_make_one_invoice_per_tenant() {
    let db = TestDb::new().await;
    let t = three_tenants(&db).await;
    let spawn = || {
        Command::new(BIN)
            .args(["monthly", "--period", "2026-11"])
            .env("TOLLGATE_DATABASE_URL", db.url())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success());
    let (created_a, existing_a, _) = summary(&a);
    let (created_b, existing_b, _) = summary(&b);
    assert_eq!((created_a + created_b, existing_a + existing_b), (3, 3));
    assert_hand_computed(&db, &t).await;
    assert_eq!(numbers(&db).await, gapless(3));
}

#[tokio::test]
async fn a_run_killed_between_any_two_steps_is_completed_by_the_rerun() {
    for point in ["draft-uncommitted", "draft-committed", "finalized"] {
        let db = TestDb::new().await;
        let t = three_tenants(&db).await;
        // Stop at the second tenant's step, then SIGKILL the real process there.
        let mut child = Command::new(BIN)
            .args(["monthly", "--period", "2026-11"])
            .env("TOLLGATE_DATABASE_URL", db.url())
            .env("TOLLGATE_INVOICING_TEST_FAULT", format!("{point}:2"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let reached = BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.starts_with("TEST FAULT POINT REACHED"));
        assert!(reached, "{point}: the process ended before its fault point");
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let client = db.client().await;
        let before = invoices(&client).await;
        let out = run_ok(&db, &["monthly", "--period", "2026-11"]);
        let (created, existing, failed) = summary(&out);
        assert_eq!(failed, 0, "{point}");
        assert_eq!(created + existing, 3, "{point}");
        match point {
            // The second draft was rolled back with the process: one finalized invoice left.
            "draft-uncommitted" => assert_eq!(before.len(), 1, "{point}"),
            // The second draft survived unnumbered; the rerun finalizes that same invoice.
            "draft-committed" => {
                assert_eq!(before.len(), 2, "{point}");
                assert!(before.iter().any(|i| i.2 == "draft" && i.3.is_none()));
            }
            _ => assert_eq!(before.len(), 2, "{point}"),
        }
        assert_hand_computed(&db, &t).await;
        assert_eq!(numbers(&db).await, gapless(3), "{point}");
        let after = invoices(&client).await;
        for old in &before {
            assert!(
                after.iter().any(|new| new.0 == old.0 && new.1 == old.1),
                "{point}: the rerun replaced an invoice"
            );
        }
    }
}

#[tokio::test]
async fn late_usage_for_a_finalized_period_is_one_correction_on_the_next_invoice() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let growth = plan(&client, "growth", GROWTH).await;
    let acme = tenant(&client, "acme").await;
    subscribe(&client, acme, growth, "2026-10-01T00:00:00Z", None).await;
    usage(&client, acme, "2026-10-20T09:00:00Z", 2, 25_500, 25_500).await;
    run_ok(&db, &["hourly"]);
    run_ok(&db, &["monthly", "--period", "2026-10"]);
    assert_eq!(
        lines(&client, acme, "2026-10-01T00:00:00Z").await[2],
        kq("usage", 14_500, 1160)
    );
    // 1,000 requests of October arrive late (a replayed spool), into an hour already rolled up.
    usage(&client, acme, "2026-10-20T09:00:00Z", 2, 1_000, 1_000).await;
    for _ in 0..2 {
        run_ok(&db, &["hourly"]);
        run_ok(&db, &["monthly", "--period", "2026-10"]);
        run_ok(&db, &["monthly", "--period", "2026-11"]);
    }
    // October is untouched; November bills the difference once: 15,500 × 0.0008 = 12.40
    // instead of 11.60.
    assert_eq!(
        lines(&client, acme, "2026-10-01T00:00:00Z").await,
        [
            kq("base_fee", 1, 4900),
            kq("usage", 10_000, 1000),
            kq("usage", 14_500, 1160)
        ]
    );
    assert_eq!(
        lines(&client, acme, "2026-11-01T00:00:00Z").await,
        [kq("base_fee", 1, 4900), kq("correction", 1000, 80)]
    );
    let row = client
        .query_one(
            "SELECT l.description, l.corrects_period_start = '2026-10-01T00:00:00Z' FROM invoice_lines l \
              WHERE l.kind = 'correction'",
            &[],
        )
        .await
        .unwrap();
    assert!(
        row.get::<_, String>(0)
            .starts_with("Correction for 2026-10")
    );
    assert!(row.get::<_, bool>(1));
    assert_eq!(numbers(&db).await, gapless(2));
}

#[tokio::test]
async fn edge_cases_are_defined() {
    let db = TestDb::new().await;
    // An empty period: nothing to do, exit 0.
    let out = run_ok(&db, &["monthly", "--period", "2026-11"]);
    assert_eq!(summary(&out), (0, 0, 0));
    let client = db.client().await;
    let (growth, flat, free) = (
        plan(&client, "growth", GROWTH).await,
        plan(&client, "flat", FLAT).await,
        plan(&client, "free", FREE).await,
    );
    // No subscription in the period (ended before it): no invoice.
    let gone = tenant(&client, "gone").await;
    subscribe(
        &client,
        gone,
        growth,
        "2026-01-01T00:00:00Z",
        Some("2026-11-01T00:00:00Z"),
    )
    .await;
    usage(&client, gone, "2026-11-03T00:00:00Z", 2, 5, 5).await;
    // Never subscribed: no invoice.
    tenant(&client, "never").await;
    // Zero usage: the base fee alone.
    let idle = tenant(&client, "idle").await;
    subscribe(&client, idle, growth, "2026-11-01T00:00:00Z", None).await;
    // Suspended: invoiced for what it used.
    let suspended = tenant(&client, "suspended").await;
    subscribe(&client, suspended, growth, "2026-11-01T00:00:00Z", None).await;
    usage(&client, suspended, "2026-11-03T00:00:00Z", 2, 2_000, 2_000).await;
    client
        .execute(
            "UPDATE tenants SET status = 'suspended' WHERE id = $1",
            &[&suspended],
        )
        .await
        .unwrap();
    // A plan with a base fee only: usage is never charged.
    let flat_tenant = tenant(&client, "flat").await;
    subscribe(&client, flat_tenant, flat, "2026-11-01T00:00:00Z", None).await;
    usage(
        &client,
        flat_tenant,
        "2026-11-03T00:00:00Z",
        2,
        99_999,
        99_999,
    )
    .await;
    // Free with no usage: a numbered invoice with no lines and a zero total.
    let free_tenant = tenant(&client, "free").await;
    subscribe(&client, free_tenant, free, "2026-11-01T00:00:00Z", None).await;

    // A dry run prints what it would create and writes nothing.
    let out = run_ok(&db, &["monthly", "--period", "2026-11", "--dry-run"]);
    let table = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        table.starts_with("TENANT"),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table.contains(&suspended.to_string()) && table.contains("1.00 USD"),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(invoices(&client).await.is_empty());

    let out = run_ok(&db, &["monthly", "--period", "2026-11"]);
    assert_eq!(summary(&out), (4, 0, 0));
    assert!(
        lines(&client, gone, "2026-11-01T00:00:00Z")
            .await
            .is_empty()
    );
    assert_eq!(
        lines(&client, idle, "2026-11-01T00:00:00Z").await,
        [kq("base_fee", 1, 4900)]
    );
    // 2,000 − 1,000 included = 1,000 × 0.001.
    assert_eq!(
        lines(&client, suspended, "2026-11-01T00:00:00Z").await,
        [kq("base_fee", 1, 4900), kq("usage", 1000, 100)]
    );
    assert_eq!(
        lines(&client, flat_tenant, "2026-11-01T00:00:00Z").await,
        [kq("base_fee", 1, 2000)]
    );
    assert!(
        lines(&client, free_tenant, "2026-11-01T00:00:00Z")
            .await
            .is_empty()
    );
    let all = invoices(&client).await;
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|i| i.2 == "finalized" && i.3.is_some()));
    assert!(all.iter().any(|i| i.0 == free_tenant && i.4 == 0));
    // One tenant only.
    let out = run_ok(
        &db,
        &[
            "monthly",
            "--period",
            "2026-10",
            "--tenant",
            &idle.to_string(),
        ],
    );
    assert_eq!(summary(&out), (0, 0, 0));
}

#[tokio::test]
async fn exit_codes_tell_a_cronjob_what_to_retry() {
    let db = TestDb::new().await;
    let code = |out: std::process::Output| out.status.code();
    assert_eq!(
        code(run(
            &db,
            &["--check-config", "monthly", "--period", "2026-11"],
            &[]
        )),
        Some(0)
    );
    // Bad configuration: 78, naming the setting.
    let out = run(&db, &["monthly", "--period", "2026-13"], &[]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--period"));
    let this_month = time::OffsetDateTime::now_utc();
    let open = format!(
        "{:04}-{:02}",
        this_month.year(),
        u8::from(this_month.month())
    );
    assert_eq!(
        code(run(&db, &["monthly", "--period", &open], &[])),
        Some(78)
    );
    assert_eq!(
        code(run(&db, &["hourly", "--lookback-hours", "0"], &[])),
        Some(78)
    );
    assert_eq!(code(run(&db, &["yearly"], &[])), Some(78));
    assert_eq!(
        code(run(&db, &["monthly"], &[("TOLLGATE_DATABASE_URL", "")])),
        Some(78)
    );
    // Database unreachable: 75, a retry may succeed.
    let out = run(
        &db,
        &["monthly"],
        &[(
            "TOLLGATE_DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/nothing",
        )],
    );
    assert_eq!(out.status.code(), Some(75));
    // Bad data: 65, a retry will not help.
    let client = db.client().await;
    let (usd, eur) = (
        plan(&client, "usd", GROWTH).await,
        plan(&client, "eur", &GROWTH.replace("USD", "EUR")).await,
    );
    let mixed = tenant(&client, "mixed").await;
    subscribe(
        &client,
        mixed,
        usd,
        "2026-11-01T00:00:00Z",
        Some("2026-11-15T00:00:00Z"),
    )
    .await;
    subscribe(&client, mixed, eur, "2026-11-15T00:00:00Z", None).await;
    let out = run(&db, &["monthly", "--period", "2026-11"], &[]);
    assert_eq!(out.status.code(), Some(65));
    assert_eq!(summary(&out), (0, 0, 1));
}

#[tokio::test]
async fn hourly_sums_latency_histograms_slot_by_slot_and_a_late_minute_is_added() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let acme = tenant(&client, "acme").await;
    // Two minutes of one hour: 3 requests in slot 2 and 4 in slot 5, then 5 more in slot 2.
    let minute = |when: &'static str, slot: i32, n: i64| {
        let client = &client;
        async move {
            client
                .execute(
                    "INSERT INTO usage_minute (minute, tenant_id, key_id, route_id, status_class, \
                       request_count, billable_count, request_bytes, response_bytes, \
                       latency_us_sum, latency_histogram) \
                     VALUES ($1, $2, NULL, NULL, 2, $3, $3, 0, 0, 0, \
                             tollgate_latency_histogram_of($4, $3))",
                    &[&at(when), &acme, &n, &slot],
                )
                .await
                .unwrap();
        }
    };
    minute("2026-10-20T09:01:00Z", 2, 3).await;
    minute("2026-10-20T09:02:00Z", 5, 4).await;
    run_ok(&db, &["hourly"]);
    let hour = || {
        let client = &client;
        async move {
            let row = client
                .query_one(
                    "SELECT request_count, latency_histogram FROM usage_hour \
                      WHERE tenant_id = $1 AND hour = '2026-10-20T09:00:00Z'",
                    &[&acme],
                )
                .await
                .unwrap();
            (row.get::<_, i64>(0), row.get::<_, Vec<i64>>(1))
        }
    };
    let mut expected = vec![0i64; tollgate_core::latency::SLOTS];
    expected[1] = 3;
    expected[4] = 4;
    assert_eq!(hour().await, (7, expected.clone()));
    minute("2026-10-20T09:03:00Z", 2, 5).await;
    run_ok(&db, &["hourly"]);
    expected[1] = 8;
    assert_eq!(hour().await, (12, expected));
}
