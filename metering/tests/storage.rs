//! Daily partitions of `usage_events` against the real PostgreSQL.
// Helpers outside #[test] fns: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use time::macros::date;
use tollgate_metering::partitions::{StorageMode, partition_name, prepare_storage, upkeep};
use tollgate_test_support::TestDb;

async fn partitions(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'usage_events'::regclass ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn partitions_are_created_ahead_rows_rescued_from_default_and_old_ones_dropped() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    assert_eq!(
        prepare_storage(&mut client, 30, 7).await.unwrap(),
        StorageMode::NativePartitions,
        "CI has no TimescaleDB"
    );
    // An event that arrived before its day's partition existed sits in the default partition.
    client
        .execute(
            "INSERT INTO usage_events (event_id, event_time, method, status, outcome, request_bytes, \
             response_bytes, total_latency_us, source) \
             VALUES (gen_random_uuid(), '2026-03-10T12:00:00Z', 'GET', 200, 'proxied', 1, 1, 1, 't')",
            &[],
        )
        .await
        .unwrap();

    let today = date!(2026 - 03 - 10);
    let report = upkeep(&mut client, today, 3, 30).await.unwrap();
    assert_eq!(report.created.len(), 5, "yesterday, today and 3 days ahead");
    assert!(report.created.contains(&partition_name(today)));
    let in_today: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {}", partition_name(today)),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_today, 1, "the row moved out of the default partition");

    // Running again creates nothing.
    assert!(
        upkeep(&mut client, today, 3, 30)
            .await
            .unwrap()
            .created
            .is_empty()
    );

    // Forty days later, partitions older than the 30-day retention are gone.
    let later = date!(2026 - 04 - 19);
    let report = upkeep(&mut client, later, 3, 30).await.unwrap();
    assert!(
        report.dropped.contains(&partition_name(today)),
        "{report:?}"
    );
    assert!(!partitions(&client).await.contains(&partition_name(today)));
    assert!(partitions(&client).await.contains(&partition_name(later)));
}
