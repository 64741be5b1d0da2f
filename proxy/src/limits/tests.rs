//! The limiter's in-memory decisions, and its breaker against a Redis stand-in (the real
//! Redis side is tested through the binary in `tests/limits.rs`).

use std::time::Instant;

use prometheus_client::registry::Registry;
use proptest::prelude::*;
use tollgate_core::plan::PlanSpec;

use super::clock::current_month;
use super::*;

fn plan(rate: u32, burst: u32, quota: Option<(u64, &str)>, failure_mode: &str) -> Plan {
    let quota = quota.map(|(n, cap)| serde_json::json!({"included_requests": n, "cap": cap}));
    let spec: PlanSpec = serde_json::from_value(serde_json::json!({
        "id": tollgate_core::PlanId::new(),
        "name": "test",
        "rate": {"requests_per_second": rate, "burst": burst},
        "quota": quota,
        "failure_mode": failure_mode,
        "pricing": {"currency": "USD", "base_fee_minor": 0, "model": "flat"},
    }))
    .unwrap();
    Plan::new(spec).unwrap()
}

fn local() -> Limiter {
    Limiter::new(LimiterSettings {
        replicas: 1,
        cluster: false,
    })
}

fn verdicts(limiter: &Limiter, tenant: TenantId, plan: &Plan, n: usize) -> Vec<LimitVerdict> {
    let entry = limiter.entry(tenant, plan);
    (0..n)
        .map(|_| limiter.check_local(plan, &entry, 0, false).verdict)
        .collect()
}

#[test]
fn a_burst_passes_and_refusals_consume_neither_rate_nor_quota() {
    let limiter = local();
    let plan = plan(1, 3, Some((100, "hard")), "open");
    let tenant = TenantId::new();
    let got = verdicts(&limiter, tenant, &plan, 10);
    assert_eq!(&got[..3], [LimitVerdict::Allowed; 3]);
    assert!(got[3..].iter().all(|v| *v == LimitVerdict::RateLimited));
    let entry = limiter.entry(tenant, &plan);
    assert_eq!(entry.quota_used(), 3, "refused requests were counted");
}

#[test]
fn a_hard_quota_admits_exactly_its_allowance_and_a_soft_one_reports_overage() {
    let limiter = local();
    let hard = plan(1000, 1000, Some((5, "hard")), "open");
    let got = verdicts(&limiter, TenantId::new(), &hard, 8);
    assert_eq!(
        got,
        [
            [LimitVerdict::Allowed; 5].as_slice(),
            [LimitVerdict::QuotaExceeded; 3].as_slice()
        ]
        .concat()
    );

    let soft = plan(1000, 1000, Some((2, "soft")), "open");
    let tenant = TenantId::new();
    let entry = limiter.entry(tenant, &soft);
    let decisions: Vec<LimitDecision> = (0..3)
        .map(|_| limiter.check_local(&soft, &entry, 0, false))
        .collect();
    assert!(decisions.iter().all(|d| d.verdict == LimitVerdict::Allowed));
    let last = decisions[2].quota.unwrap();
    assert_eq!((last.used, last.remaining()), (3, 0));
}

#[test]
fn without_the_cluster_a_node_takes_its_share_or_refuses_when_the_plan_fails_closed() {
    let limiter = Limiter::new(LimiterSettings {
        replicas: 4,
        cluster: true,
    });
    // Redis has not answered yet: the local share is burst 8 / 4 replicas = 2.
    let open = plan(40, 8, None, "open");
    let got = verdicts(&limiter, TenantId::new(), &open, 4);
    assert_eq!(
        got,
        [
            LimitVerdict::Allowed,
            LimitVerdict::Allowed,
            LimitVerdict::RateLimited,
            LimitVerdict::RateLimited
        ]
    );
    let closed = plan(40, 8, None, "closed");
    let got = verdicts(&limiter, TenantId::new(), &closed, 2);
    assert_eq!(got, [LimitVerdict::Unavailable; 2]);
}

#[test]
fn a_new_rate_starts_fresh_but_the_month_count_carries_over() {
    let limiter = local();
    let tenant = TenantId::new();
    let before = plan(1, 2, Some((100, "hard")), "open");
    verdicts(&limiter, tenant, &before, 5);
    let after = plan(1, 4, Some((100, "hard")), "open");
    let got = verdicts(&limiter, tenant, &after, 5);
    assert_eq!(
        got.iter().filter(|v| **v == LimitVerdict::Allowed).count(),
        4
    );
    assert_eq!(limiter.entry(tenant, &after).quota_used(), 6);
}

#[test]
fn the_quota_resets_on_the_first_of_the_month() {
    let end_of_june = time::macros::datetime!(2026-06-30 23:59:30 UTC);
    assert_eq!(seconds_until_next_month(end_of_june), 30);
    let new_year = time::macros::datetime!(2026-12-31 23:00:00 UTC);
    assert_eq!(seconds_until_next_month(new_year), 3600);
    assert_eq!(
        current_month(time::macros::datetime!(2027-01-01 00:00:00 UTC)),
        current_month(new_year) + 1
    );
}

proptest! {
    /// Whatever the timing, a hard quota never admits more than its allowance, the rate never
    /// admits more than burst + elapsed/period, and every admission is counted once.
    #[test]
    fn admissions_respect_both_limits(
        rate in 1u32..200, burst in 1u32..20, included in 1u64..60,
        gaps in proptest::collection::vec(0u64..50_000_000, 1..200),
    ) {
        let limiter = local();
        let plan = plan(rate, burst, Some((included, "hard")), "open");
        let entry = limiter.entry(TenantId::new(), &plan);
        let (mut now, mut admitted) = (0u64, 0u64);
        for gap in gaps {
            now += gap;
            if limiter.check_local(&plan, &entry, now, false).verdict == LimitVerdict::Allowed {
                admitted += 1;
            }
        }
        prop_assert!(admitted <= included);
        prop_assert!(admitted <= u64::from(burst) + now.div_ceil(entry.fallback.period()));
        prop_assert_eq!(entry.quota_used(), admitted);
    }
}

/// Log lines, captured for one test (the subscriber is the test thread's default).
#[derive(Clone, Default)]
struct Logs(Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Logs {
    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock())
            .matches(needle)
            .count()
    }
}

/// The value of the unlabelled metric `name` as a scrape would read it.
fn scraped(registry: &Registry, name: &str) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or("absent")
        .to_owned()
}

fn cluster_gauge(registry: &Registry) -> String {
    scraped(registry, "gateway_limiter_cluster_available")
}

/// Awaits `condition`, checking every millisecond for at most ten seconds.
async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn strict_plan() -> Plan {
    let spec: PlanSpec = serde_json::from_value(serde_json::json!({
        "id": tollgate_core::PlanId::new(),
        "name": "strict",
        "rate": {"requests_per_second": 10, "burst": 10, "strict": true},
        "failure_mode": "open",
        "pricing": {"currency": "USD", "base_fee_minor": 0, "model": "flat"},
    }))
    .unwrap();
    Plan::new(spec).unwrap()
}

/// The breaker, its gauge and its log line change together, whichever path trips it: here a
/// strict decision whose script fails while the sync service's connection stays up.
#[tokio::test]
async fn a_failed_strict_decision_opens_the_breaker_its_gauge_and_its_log_line_together() {
    let logs = Logs::default();
    let _subscriber = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish(),
    );
    let redis = fake_redis::FakeRedis::start().await;
    let limiter = Arc::new(Limiter::new(LimiterSettings {
        replicas: 2,
        cluster: true,
    }));
    let mut registry = Registry::default();
    limiter.metrics().register(&mut registry);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let settings = SyncSettings {
        interval: Duration::from_millis(5),
        retry_interval: Duration::from_millis(5),
        ..SyncSettings::new(redis.url())
    };
    let sync = tokio::spawn(run_sync(limiter.clone(), Some(settings), shutdown));

    until("the cluster limiter is in use", || {
        limiter.cluster_available()
    })
    .await;
    assert_eq!(cluster_gauge(&registry), "1");
    assert_eq!(logs.count("Cluster rate limits in force"), 1);

    redis.fail_scripts(true);
    let decision = limiter.check(TenantId::new(), &strict_plan()).await;
    assert_eq!(decision.verdict, LimitVerdict::Allowed, "decided locally");
    assert_eq!(decision.policy.requests_per_second, 5, "the local share");
    assert!(!limiter.cluster_available());
    assert_eq!(
        cluster_gauge(&registry),
        "0",
        "the gauge says the cluster limiter is in use while it is not"
    );
    assert_eq!(logs.count("Redis unreachable"), 1);

    // The sync service's flushes fail too (the admission just made is pending): the breaker is
    // already open, so nothing changes and nothing is logged twice.
    until("a flush failed", || {
        scraped(&registry, "gateway_limiter_sync_failures_total") != "0"
    })
    .await;
    assert_eq!(cluster_gauge(&registry), "0");
    assert_eq!(logs.count("Redis unreachable"), 1);

    redis.fail_scripts(false);
    until("the cluster limiter is back", || {
        limiter.cluster_available()
    })
    .await;
    assert_eq!(cluster_gauge(&registry), "1");
    assert_eq!(logs.count("Cluster rate limits in force"), 2);

    stop.send(true).unwrap();
    sync.await.unwrap();
}
