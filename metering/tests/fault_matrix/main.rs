//! The fault matrix: real `tollgate-proxy` and `tollgate-metering` processes under load,
//! killed (SIGKILL) or paused (SIGSTOP) with the `kill` command, against a PostgreSQL, Redis
//! and broker of each case's own (never the shared stack's: every other test uses those).
//!
//! Each case prints a row — requests sent, events produced (records on the topic), stored,
//! lost, duplicated — and asserts what issue 11 asks of it. The rows are also appended to
//! `target/tmp/fault-matrix.md`. Cases run one at a time (they share two cores and measure
//! loss windows); the whole binary takes a few minutes.
// Helpers outside #[test] fns: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]
#![allow(clippy::cast_possible_truncation, clippy::float_arithmetic)]

mod harness;
mod load;

use std::time::Duration;

use harness::{BATCH_WAIT, PARTITIONS, Row, SESSION_TIMEOUT, World, eventually};
use load::{Load, Outcome};
use tokio::time::{Instant, sleep};
use tollgate_test_support::fixtures::PlanLimits;

/// Requests per second, over this many keep-alive connections.
const RATE: u32 = 200;
const CONNECTIONS: u32 = 4;
/// The proxy's default `TOLLGATE_USAGE_STALL_MS`.
const STALL: Duration = Duration::from_millis(500);
/// Slack for a loaded, shared machine on top of every protocol bound.
const SLACK: Duration = Duration::from_secs(20);

/// One case at a time, across the test threads (and their runtimes).
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

fn assert_exact(row: &Row) {
    assert_eq!(row.lost, 0, "{row:?}");
    assert_eq!(row.duplicated, 0, "{row:?}");
    assert_eq!(row.stored, row.answered, "{row:?}");
}

async fn load(world: &World) -> Load {
    Load::start(world.proxy_addr(), world.key.expose(), RATE, CONNECTIONS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metering_sigkilled_mid_batch_and_restarted_totals_exact_within_session_timeout_plus_a_batch()
 {
    let _serial = serial().await;
    let world = World::new(PlanLimits::default()).await;
    let proxy = world.start_proxy().await;
    let first = world.start_metering("metering-1").await;
    let load = load(&world).await;
    if !eventually(Duration::from_secs(60), || async {
        first.metric("metering_events_inserted_total").await > Some(0.0)
    })
    .await
    {
        panic!(
            "metering never stored anything: its /ready {:?}; proxy produced {:?}",
            harness::get(first.admin, "/ready").await,
            proxy.metric("usage_events_produced_total").await
        );
    }
    // Batches stay open up to two seconds under this load: the kill lands in one.
    sleep(Duration::from_millis(1300)).await;
    first.kill();
    // Replaced about a second later, as in the reported trial: the dead member's session is
    // still running when the new one joins.
    sleep(Duration::from_secs(1)).await;
    let second = world.start_metering("metering-2").await;
    sleep(Duration::from_secs(6)).await;
    let outcome = load.stop().await;
    let stopped = Instant::now();
    let (stored, took) = world
        .settle(&outcome, SESSION_TIMEOUT + BATCH_WAIT + SLACK, false)
        .await;
    let row = world
        .row("metering SIGKILL mid-batch, restarted", &outcome, &stored)
        .await;
    println!(
        "exact {:?} after the load stopped (bound: session timeout {SESSION_TIMEOUT:?} + one batch {BATCH_WAIT:?} + slack {SLACK:?}); replacement holds {:?} partitions",
        took,
        second.metric("metering_assigned_partitions").await
    );
    assert!(stopped.elapsed() <= SESSION_TIMEOUT + BATCH_WAIT + SLACK + Duration::from_secs(2));
    assert_exact(&row);
    assert_eq!(
        second.metric("metering_assigned_partitions").await,
        Some(f64::from(PARTITIONS))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_metering_replicas_one_sigkilled_the_other_takes_its_partitions() {
    let _serial = serial().await;
    let world = World::new(PlanLimits::default()).await;
    let _proxy = world.start_proxy().await;
    let first = world.start_metering("metering-1").await;
    let second = world.start_metering("metering-2").await;
    let load = load(&world).await;
    assert!(
        eventually(Duration::from_secs(90), || async {
            first.metric("metering_assigned_partitions").await > Some(0.0)
                && second.metric("metering_assigned_partitions").await > Some(0.0)
        })
        .await,
        "the replicas never split the partitions"
    );
    sleep(Duration::from_secs(2)).await;
    let killed = Instant::now();
    second.kill();
    let took_over = eventually(SESSION_TIMEOUT + SLACK, || async {
        first.metric("metering_assigned_partitions").await == Some(f64::from(PARTITIONS))
    })
    .await;
    let moved = killed.elapsed();
    sleep(Duration::from_secs(2)).await;
    let outcome = load.stop().await;
    let (stored, _) = world
        .settle(&outcome, SESSION_TIMEOUT + BATCH_WAIT + SLACK, false)
        .await;
    let row = world
        .row("2 metering, one SIGKILLed", &outcome, &stored)
        .await;
    println!("the survivor held all {PARTITIONS} partitions {moved:?} after the kill");
    assert!(
        took_over,
        "the survivor never took the dead replica's partitions"
    );
    assert_exact(&row);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_paused_for_thirty_seconds_no_request_fails_and_totals_are_exact() {
    let _serial = serial().await;
    let world = World::new(PlanLimits::default()).await;
    let proxy = world.start_proxy().await;
    let _metering = world.start_metering("metering").await;
    let load = load(&world).await;
    sleep(Duration::from_secs(3)).await;
    world.pause_broker();
    sleep(Duration::from_secs(30)).await;
    world.resume_broker();
    sleep(Duration::from_secs(3)).await;
    let outcome = load.stop().await;
    let (stored, took) = world.settle(&outcome, Duration::from_secs(90), false).await;
    let row = world.row("broker SIGSTOP 30 s", &outcome, &stored).await;
    println!(
        "exact {took:?} after the load stopped; the proxy spooled {:?} and replayed {:?}",
        proxy.metric("usage_events_spooled_total").await,
        proxy.metric("usage_events_replayed_total").await
    );
    assert_eq!(outcome.failed, 0, "{row:?}");
    assert_eq!(outcome.count_status(|s| s != 200), 0, "{row:?}");
    assert_exact(&row);
}

/// The events lost must all have been answered inside one of `windows` (start, end).
fn assert_lost_only_within(
    outcome: &Outcome,
    row: &Row,
    stored: &std::collections::HashSet<uuid::Uuid>,
    windows: &[(Instant, Instant)],
) {
    let outside: Vec<_> = outcome
        .answers
        .iter()
        .filter(|a| a.event_id.is_some_and(|id| !stored.contains(&id)))
        .filter(|a| {
            !windows
                .iter()
                .any(|(from, to)| a.at >= *from && a.at <= *to)
        })
        .collect();
    let first = windows.first().map(|w| w.0);
    let offsets: Vec<String> = outside
        .iter()
        .take(10)
        .map(|a| format!("{:?}", first.map(|f| a.at.saturating_duration_since(f))))
        .collect();
    assert!(
        outside.is_empty(),
        "{} lost events were answered outside the crash's loss window (answered this long after \
         its first window opened: {offsets:?}): {row:?}",
        outside.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_sigkilled_with_the_broker_up_loses_only_its_last_milliseconds() {
    let _serial = serial().await;
    let world = World::new(PlanLimits::default()).await;
    let proxy = world.start_proxy().await;
    let _metering = world.start_metering("metering").await;
    let load = load(&world).await;
    sleep(Duration::from_secs(4)).await;
    let killing = Instant::now();
    proxy.kill();
    // Responses the proxy wrote before it died are read later by a client on a busy machine:
    // the window ends a little after the process is gone.
    let killed = Instant::now();
    sleep(Duration::from_millis(500)).await;
    let restarted = world.start_proxy().await;
    sleep(Duration::from_secs(3)).await;
    let outcome = load.stop().await;
    let (stored, _) = world.settle(&outcome, Duration::from_secs(60), true).await;
    let row = world
        .row("proxy SIGKILL, broker up", &outcome, &stored)
        .await;
    println!(
        "lost {} events (at {RATE} req/s); the restarted proxy replayed {:?}",
        row.lost,
        restarted.metric("usage_events_replayed_total").await
    );
    assert_eq!(row.duplicated, 0, "{row:?}");
    // In memory with a healthy broker: ~2 ms in the queue, linger 5 ms, the round trip.
    assert_lost_only_within(
        &outcome,
        &row,
        &stored,
        &[(
            killing - Duration::from_secs(2),
            killed + Duration::from_secs(2),
        )],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_sigkilled_with_the_broker_paused_loses_at_most_the_stall_window() {
    let _serial = serial().await;
    let world = World::new(PlanLimits::default()).await;
    let proxy = world.start_proxy().await;
    let _metering = world.start_metering("metering").await;
    let load = load(&world).await;
    sleep(Duration::from_secs(3)).await;
    let paused = Instant::now();
    world.pause_broker();
    sleep(Duration::from_secs(4)).await;
    let killing = Instant::now();
    proxy.kill();
    let killed = Instant::now();
    world.resume_broker();
    let restarted = world.start_proxy().await;
    sleep(Duration::from_secs(3)).await;
    let outcome = load.stop().await;
    let (stored, _) = world.settle(&outcome, Duration::from_secs(90), true).await;
    let row = world
        .row("proxy SIGKILL, broker paused", &outcome, &stored)
        .await;
    let replayed = restarted.metric("usage_events_replayed_total").await;
    println!(
        "lost {} events (at {RATE} req/s, stall window {STALL:?}); the restarted proxy replayed {replayed:?} from the spool",
        row.lost
    );
    assert_eq!(row.duplicated, 0, "{row:?}");
    assert!(replayed > Some(0.0), "nothing reached the spool: {row:?}");
    // What librdkafka held when the broker stalled (the stall window after the pause), and
    // the last moments before the kill (queue, spool writer's group commit).
    assert_lost_only_within(
        &outcome,
        &row,
        &stored,
        &[
            (
                paused - Duration::from_secs(1),
                paused + STALL + Duration::from_secs(1),
            ),
            (
                killing - Duration::from_secs(2),
                killed + Duration::from_secs(2),
            ),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_for_ten_seconds_the_proxy_serves_and_metering_resumes() {
    let _serial = serial().await;
    let world = World::new(PlanLimits::default()).await;
    let _proxy = world.start_proxy().await;
    let metering = world.start_metering("metering").await;
    let load = load(&world).await;
    sleep(Duration::from_secs(3)).await;
    world.postgres.stop();
    eprintln!("[fault-matrix] PostgreSQL stopped");
    sleep(Duration::from_secs(10)).await;
    world.postgres.start_again();
    eprintln!("[fault-matrix] PostgreSQL started");
    sleep(Duration::from_secs(2)).await;
    let outcome = load.stop().await;
    let (stored, took) = world.settle(&outcome, Duration::from_secs(60), false).await;
    let row = world
        .row("PostgreSQL stopped 10 s", &outcome, &stored)
        .await;
    println!(
        "exact {took:?} after the load stopped; metering saw {:?} failed writes",
        metering.metric("metering_db_errors_total").await
    );
    assert_eq!(outcome.failed, 0, "{row:?}");
    assert_eq!(outcome.count_status(|s| s != 200), 0, "{row:?}");
    assert_exact(&row);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_local_limits_and_no_5xx_then_cluster_limits_again() {
    let _serial = serial().await;
    // Limited below the load, so limits visibly apply throughout.
    let limits = PlanLimits {
        rate_per_second: 100,
        burst: 20,
        ..PlanLimits::default()
    };
    let mut world = World::new(limits).await;
    let proxy = world.start_proxy().await;
    let _metering = world.start_metering("metering").await;
    let cluster = "gateway_limiter_cluster_available";
    let load = load(&world).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            proxy.metric(cluster).await == Some(1.0)
        })
        .await,
        "the proxy never used Redis"
    );
    sleep(Duration::from_secs(2)).await;
    world.redis.kill();
    eprintln!("[fault-matrix] Redis SIGKILLed");
    let local = eventually(Duration::from_secs(10), || async {
        proxy.metric(cluster).await == Some(0.0)
    })
    .await;
    let down_from = Instant::now();
    sleep(Duration::from_secs(3)).await;
    let down_to = Instant::now();
    world.redis.start_again();
    eprintln!("[fault-matrix] Redis started");
    let back = eventually(Duration::from_secs(15), || async {
        proxy.metric(cluster).await == Some(1.0)
    })
    .await;
    sleep(Duration::from_secs(2)).await;
    let outcome = load.stop().await;
    let (stored, _) = world.settle(&outcome, Duration::from_secs(60), false).await;
    let row = world
        .row("Redis SIGKILLed, restarted", &outcome, &stored)
        .await;
    let down: Vec<_> = outcome
        .answers
        .iter()
        .filter(|a| a.at >= down_from && a.at <= down_to)
        .collect();
    let limited_while_down = down.iter().filter(|a| a.status == 429).count();
    println!(
        "{} answers while Redis was down, {limited_while_down} of them 429 (local limits); {} of all answers 429",
        down.len(),
        outcome.count_status(|s| s == 429)
    );
    assert!(local, "the proxy never fell back to local limits");
    assert!(back, "the proxy never returned to cluster limits");
    assert!(
        limited_while_down > 0 && limited_while_down < down.len(),
        "local limits did not apply while Redis was down: {limited_while_down} of {} limited",
        down.len()
    );
    assert_eq!(outcome.failed, 0, "{row:?}");
    assert_eq!(outcome.count_status(|s| s >= 500), 0, "{row:?}");
    assert!(
        outcome.count_status(|s| s == 429) > 0,
        "limits never applied: {row:?}"
    );
    assert_exact(&row);
}
