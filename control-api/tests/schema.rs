//! The schema as `tollgate-control-api migrate` applies it, against the real PostgreSQL.
// Helpers outside #[test] fns: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::Duration;

use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use tollgate_core::{EventId, KeyPepper, ParsedApiKey, TenantId};
use tollgate_test_support::TestDb;
use tollgate_test_support::fixtures::insert_tenant;

const BIN: &str = env!("CARGO_BIN_EXE_tollgate-control-api");

fn control_api(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> Output {
    let output = Command::new(BIN)
        .args(args)
        .env("TOLLGATE_DATABASE_URL", db.url())
        .envs(env.iter().copied())
        .output()
        .expect("running tollgate-control-api");
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Every table, column, index, constraint and trigger, as one comparable text.
async fn schema_snapshot(client: &Client) -> Vec<String> {
    let rows = client
        .query(
            "SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable \
               FROM information_schema.columns WHERE table_schema = 'public' \
             UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public' \
             UNION ALL SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid) \
               FROM pg_constraint WHERE connamespace = 'public'::regnamespace \
             UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE NOT tgisinternal \
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

async fn history_rows(client: &Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn migrating_an_up_to_date_database_is_a_noop() {
    let db = TestDb::empty().await;
    let first = control_api(&db, &["migrate"], &[]);
    assert!(
        String::from_utf8_lossy(&first.stderr)
            .contains(&format!("applied {} migration(s)", migration_count())),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let client = db.client().await;
    let before = schema_snapshot(&client).await;
    assert!(
        before
            .iter()
            .any(|l| l.starts_with("trigger api_keys_notify"))
    );
    let history_before = history_rows(&client).await;

    let second = control_api(&db, &["migrate"], &[]);
    assert!(String::from_utf8_lossy(&second.stderr).contains("applied 0 migration(s)"));
    assert_eq!(schema_snapshot(&client).await, before);
    assert_eq!(history_rows(&client).await, history_before);
}

#[tokio::test]
async fn concurrent_migrations_apply_each_migration_once() {
    let db = TestDb::empty().await;
    let runs: Vec<_> = (0..3)
        .map(|_| {
            Command::new(BIN)
                .arg("migrate")
                .env("TOLLGATE_DATABASE_URL", db.url())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for run in runs {
        let output = run.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let client = db.client().await;
    assert_eq!(
        history_rows(&client).await,
        i64::try_from(migration_count()).unwrap()
    );
}

/// The migrations shipped in `core/migrations`.
fn migration_count() -> usize {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../core/migrations"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count()
}

#[tokio::test]
async fn a_bad_database_url_names_the_setting() {
    let output = Command::new(BIN)
        .arg("migrate")
        .env("TOLLGATE_DATABASE_URL", "not a url")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TOLLGATE_DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn config_changes_are_announced_on_one_channel_with_table_and_id() {
    let db = TestDb::new().await;
    let (listener, mut connection) = tokio_postgres::connect(db.url(), NoTls).await.unwrap();
    let (tx, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(
        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx)).for_each(
            move |message| {
                if let Ok(AsyncMessage::Notification(n)) = message {
                    let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
                }
                std::future::ready(())
            },
        ),
    );
    listener
        .batch_execute("LISTEN tollgate_config")
        .await
        .unwrap();

    let client = db.client().await;
    let tenant = insert_tenant(&client, "acme").await;
    client
        .execute(
            "INSERT INTO api_keys (id, tenant_id, display_prefix, secret_hmac) \
             VALUES ('AbCdEf0123456789', $1, 'tg_live_AbCdEf0123456789', $2)",
            &[tenant.as_uuid(), &[0u8; 32].as_slice()],
        )
        .await
        .unwrap();
    // Bookkeeping only: must not make every proxy reload.
    client
        .execute("UPDATE api_keys SET last_used_at = now()", &[])
        .await
        .unwrap();
    client
        .execute(
            "UPDATE api_keys SET status = 'revoked', revoked_at = now()",
            &[],
        )
        .await
        .unwrap();

    let mut received = Vec::new();
    for _ in 0..3 {
        let (channel, payload) = tokio::time::timeout(Duration::from_secs(5), notifications.recv())
            .await
            .expect("notification within 5 s")
            .unwrap();
        assert_eq!(channel, "tollgate_config");
        received.push(serde_json::from_str::<serde_json::Value>(&payload).unwrap());
    }
    assert_eq!(
        received,
        [
            serde_json::json!({"table": "tenants", "op": "insert", "id": tenant.to_string()}),
            serde_json::json!({"table": "api_keys", "op": "insert", "id": "AbCdEf0123456789"}),
            serde_json::json!({"table": "api_keys", "op": "update", "id": "AbCdEf0123456789"}),
        ]
    );
    // Nothing for the last_used_at update: the queue holds nothing else.
    listener.batch_execute("SELECT 1").await.unwrap();
    assert!(notifications.try_recv().is_err());
}

#[tokio::test]
async fn usage_events_are_deduplicated_on_event_id_and_time() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let id = EventId::new();
    let insert = "INSERT INTO usage_events (event_id, event_time, tenant_id, method, status, outcome, \
                      request_bytes, response_bytes, total_latency_us, source) \
                  VALUES ($1, '2026-11-27T10:00:00Z', $2, 'GET', 200, 'proxied', 1, 2, 3, 'test') \
                  ON CONFLICT DO NOTHING";
    let tenant = TenantId::new();
    let first = client
        .execute(insert, &[id.as_uuid(), tenant.as_uuid()])
        .await
        .unwrap();
    let again = client
        .execute(insert, &[id.as_uuid(), tenant.as_uuid()])
        .await
        .unwrap();
    assert_eq!((first, again), (1, 0));
}

#[tokio::test]
async fn a_tenant_gets_one_invoice_per_period() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let tenant = insert_tenant(&client, "acme").await;
    let insert = "INSERT INTO invoices (id, tenant_id, period_start, period_end, currency) \
                  VALUES ($1, $2, '2026-11-01T00:00:00Z', '2026-12-01T00:00:00Z', 'USD')";
    client
        .execute(insert, &[&uuid::Uuid::now_v7(), tenant.as_uuid()])
        .await
        .unwrap();
    let duplicate = client
        .execute(insert, &[&uuid::Uuid::now_v7(), tenant.as_uuid()])
        .await
        .unwrap_err();
    assert_eq!(
        duplicate.as_db_error().unwrap().constraint(),
        Some("invoices_one_per_period")
    );
}

#[tokio::test]
async fn seeding_the_demo_is_idempotent_and_its_key_verifies() {
    let db = TestDb::new().await;
    let pepper_hex = "ab".repeat(32);
    let pepper = KeyPepper::from_hex(&pepper_hex).unwrap();
    let seed = |reuse: &str| {
        let out = control_api(
            &db,
            &["seed-demo"],
            &[
                ("TOLLGATE_KEY_PEPPER", &pepper_hex),
                ("TOLLGATE_DEMO_API_KEY", reuse),
            ],
        );
        let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains(&key),
            "the key must only go to stdout"
        );
        key
    };
    let first = seed("");
    let second = seed(&first);
    assert_eq!(first, second, "a working key is reused");
    let third = seed("tg_test_AAAAAAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB");
    assert_ne!(third, first, "an unknown key is replaced");

    let client = db.client().await;
    let counts: (i64, i64, i64, i64, i64) = {
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM plans), \
                        (SELECT count(*) FROM subscriptions), (SELECT count(*) FROM api_keys), \
                        (SELECT count(*) FROM routes)",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
    };
    assert_eq!(counts, (1, 1, 1, 2, 1));

    let parsed = ParsedApiKey::parse(&third).unwrap();
    let stored: Vec<u8> = client
        .query_one(
            "SELECT secret_hmac FROM api_keys WHERE id = $1",
            &[&parsed.id().as_str()],
        )
        .await
        .unwrap()
        .get(0);
    let stored = tollgate_core::KeyHash::from_slice(&stored).unwrap();
    assert!(parsed.verify(&pepper, &stored));
    let wrong = KeyPepper::from_hex(&"cd".repeat(32)).unwrap();
    assert!(!parsed.verify(&wrong, &stored));
}
