//! Plan limits through the `tollgate-proxy` binary: headers, quota, three proxies sharing one
//! Redis, a Redis outage, strict mode.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::float_arithmetic,
    clippy::cast_precision_loss
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{
    Fixture, Proxy, echo_upstream, error_code, fixture_with, get, send, start_proxy,
    start_proxy_with,
};
use tokio::net::TcpStream;
use tollgate_test_support::fixtures::PlanLimits;
use tollgate_test_support::{FaultyLink, TestRedis};

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

async fn cluster(f: &Fixture, redis_url: &str, prefix: &str, n: usize) -> Vec<Proxy> {
    let mut proxies = Vec::new();
    for _ in 0..n {
        let env = [
            ("TOLLGATE_REDIS_URL", redis_url.to_owned()),
            ("TOLLGATE_REDIS_KEY_PREFIX", prefix.to_owned()),
            ("TOLLGATE_PROXY_REPLICAS", n.to_string()),
        ];
        proxies.push(start_proxy_with(f, &env).await);
    }
    for proxy in &proxies {
        wait_for_metric(proxy, "gateway_limiter_cluster_available 1").await;
    }
    proxies
}

/// Polls the proxy's `/metrics` until a line equals `line`.
async fn wait_for_metric(proxy: &Proxy, line: &str) {
    let started = Instant::now();
    loop {
        let mut conn = TcpStream::connect(proxy.admin).await.unwrap();
        let (_, _, body) = send(&mut conn, "GET /metrics HTTP/1.1\r\nhost: admin\r\n\r\n").await;
        if body.lines().any(|l| l == line) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no `{line}` in /metrics within 10 s:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ready_status(proxy: &Proxy) -> u16 {
    let mut conn = TcpStream::connect(proxy.admin).await.unwrap();
    send(&mut conn, "GET /ready HTTP/1.1\r\nhost: admin\r\n\r\n")
        .await
        .0
}

/// Status counts of a paced run.
#[derive(Debug, Default)]
struct Tally {
    ok: AtomicU64,
    limited: AtomicU64,
    other: AtomicU64,
}

/// Sends `rps` requests per second to each proxy for `duration`, over 4 connections each.
async fn drive(proxies: &[SocketAddr], auth: &str, rps: u64, duration: Duration) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for &addr in proxies {
        for _ in 0..4 {
            let (tally, request) = (tally.clone(), get("/api/x", auth));
            tasks.push(tokio::spawn(async move {
                let mut conn = TcpStream::connect(addr).await.unwrap();
                let mut ticker = tokio::time::interval(Duration::from_micros(4_000_000 / rps));
                let started = Instant::now();
                while started.elapsed() < duration {
                    ticker.tick().await;
                    match send(&mut conn, &request).await.0 {
                        200 => tally.ok.fetch_add(1, Ordering::Relaxed),
                        429 => tally.limited.fetch_add(1, Ordering::Relaxed),
                        _ => tally.other.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_passes_then_429_carries_the_rate_limit_headers_and_retry_after() {
    let upstream = echo_upstream().await;
    let limits = PlanLimits {
        rate_per_second: 1,
        burst: 5,
        ..PlanLimits::default()
    };
    let f = fixture_with(upstream, limits).await;
    let proxy = start_proxy(&f).await;
    let auth = format!("x-api-key: {}\r\n", f.key.expose());
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    for expected_remaining in (0..5).rev() {
        let (status, headers, _) = send(&mut conn, &get("/api/x", &auth)).await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "x-ratelimit-limit"), Some("5"));
        let remaining = expected_remaining.to_string();
        assert_eq!(
            header(&headers, "x-ratelimit-remaining"),
            Some(remaining.as_str())
        );
        assert_eq!(
            header(&headers, "ratelimit-policy"),
            Some("\"burst\";q=5;w=5")
        );
        assert!(
            header(&headers, "ratelimit")
                .is_some_and(|v| v.starts_with(&format!("\"burst\";r={remaining};t=")))
        );
    }
    let (status, headers, body) = send(&mut conn, &get("/api/x", &auth)).await;
    assert_eq!((status, error_code(&body).as_str()), (429, "rate_limited"));
    assert_eq!(header(&headers, "retry-after"), Some("1"));
    assert_eq!(header(&headers, "x-ratelimit-remaining"), Some("0"));
    assert!(!headers.contains("connection: close"), "{headers}");
    // Refusals do not consume: hammering does not push the next admission further out.
    for _ in 0..20 {
        assert_eq!(send(&mut conn, &get("/api/x", &auth)).await.0, 429);
    }
    let refused_at = Instant::now();
    loop {
        let (status, _, _) = send(&mut conn, &get("/api/x", &auth)).await;
        if status == 200 {
            break;
        }
        assert!(
            refused_at.elapsed() < Duration::from_millis(1500),
            "no admission one period later"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_quota_refuses_with_quota_exceeded_and_a_soft_one_reports_overage() {
    let upstream = echo_upstream().await;
    for (cap, included) in [("hard", 3), ("soft", 2)] {
        let limits = PlanLimits {
            quota: Some((included, cap)),
            ..PlanLimits::default()
        };
        let f = fixture_with(upstream, limits).await;
        let proxy = start_proxy(&f).await;
        let auth = format!("x-api-key: {}\r\n", f.key.expose());
        let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
        for left in (0..included).rev() {
            let (status, headers, _) = send(&mut conn, &get("/api/x", &auth)).await;
            assert_eq!(status, 200, "{cap}");
            assert_eq!(
                header(&headers, "x-quota-remaining"),
                Some(left.to_string().as_str())
            );
            assert_eq!(
                header(&headers, "x-quota-limit"),
                Some(included.to_string().as_str())
            );
        }
        let (status, headers, body) = send(&mut conn, &get("/api/x", &auth)).await;
        if cap == "hard" {
            assert_eq!(
                (status, error_code(&body).as_str()),
                (429, "quota_exceeded")
            );
            let retry: u64 = header(&headers, "retry-after").unwrap().parse().unwrap();
            assert!((1..=31 * 24 * 3600).contains(&retry), "retry-after {retry}");
            // The rate-limit headers describe the quota that refused, not the burst.
            assert_eq!(
                header(&headers, "ratelimit"),
                Some(format!("\"quota\";r=0;t={retry}").as_str())
            );
            assert_eq!(
                header(&headers, "x-ratelimit-reset"),
                Some(retry.to_string().as_str())
            );
            assert_eq!(header(&headers, "x-ratelimit-remaining"), Some("0"));
            assert_eq!(
                header(&headers, "x-ratelimit-limit"),
                Some(included.to_string().as_str())
            );
            assert_eq!(headers.matches("retry-after:").count(), 1, "{headers}");
        } else {
            assert_eq!(status, 200);
            assert_eq!(header(&headers, "x-quota-remaining"), Some("0"));
            assert_eq!(header(&headers, "x-quota-overage"), Some("1"));
        }
    }
}

const CLUSTER_RATE: i32 = 40;
const CLUSTER_BURST: i32 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_proxies_sharing_redis_hold_the_cluster_limit_at_five_times_the_rate() {
    let upstream = echo_upstream().await;
    let limits = PlanLimits {
        rate_per_second: CLUSTER_RATE,
        burst: CLUSTER_BURST,
        ..PlanLimits::default()
    };
    let f = fixture_with(upstream, limits).await;
    let redis = TestRedis::new();
    let proxies = cluster(&f, redis.url(), redis.prefix(), 3).await;
    let addrs: Vec<SocketAddr> = proxies.iter().map(|p| p.addr).collect();
    let auth = format!("x-api-key: {}\r\n", f.key.expose());

    let offered_per_proxy = u64::try_from(CLUSTER_RATE).unwrap() * 5 / 3;
    let started = Instant::now();
    let tally = drive(&addrs, &auth, offered_per_proxy, Duration::from_secs(10)).await;
    let elapsed = started.elapsed();
    let ok = tally.ok.load(Ordering::Relaxed);
    let allowed =
        u64::try_from(CLUSTER_RATE).unwrap() * u64::try_from(elapsed.as_millis()).unwrap() / 1000
            + u64::try_from(CLUSTER_BURST).unwrap();
    let offered = ok + tally.limited.load(Ordering::Relaxed);
    println!(
        "3 proxies, {elapsed:?} at {offered} requests ({}x the limit): admitted {ok}, limit {allowed}, \
         over-admission {:+.2} %",
        offered / allowed.max(1),
        (ok as f64 / allowed as f64 - 1.0) * 100.0
    );
    assert_eq!(
        tally.other.load(Ordering::Relaxed),
        0,
        "only 200 and 429 expected"
    );
    assert!(
        ok * 100 <= allowed * 105,
        "admitted {ok} > 1.05 × {allowed}"
    );
    assert!(
        ok * 100 >= allowed * 80,
        "admitted {ok}: the limit starves traffic (limit {allowed})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_falls_back_to_local_limits_without_errors_and_cluster_limits_resume() {
    let upstream = echo_upstream().await;
    let limits = PlanLimits {
        rate_per_second: CLUSTER_RATE,
        burst: CLUSTER_BURST,
        ..PlanLimits::default()
    };
    let f = fixture_with(upstream, limits).await;
    let redis = TestRedis::new();
    let redis_addr = redis
        .url()
        .rsplit('@')
        .next()
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .parse()
        .unwrap();
    let link = FaultyLink::start(redis_addr).await;
    let url = redis
        .url()
        .replace(&redis_addr.to_string(), &link.addr().to_string());
    let proxies = cluster(&f, &url, redis.prefix(), 3).await;
    let addrs: Vec<SocketAddr> = proxies.iter().map(|p| p.addr).collect();
    let auth = format!("x-api-key: {}\r\n", f.key.expose());
    let per_proxy = u64::try_from(CLUSTER_RATE).unwrap() * 5 / 3;
    let rate = u64::try_from(CLUSTER_RATE).unwrap();
    let phase = Duration::from_secs(3);

    link.cut();
    for proxy in &proxies {
        wait_for_metric(proxy, "gateway_limiter_cluster_available 0").await;
    }
    // Phase 1, Redis down, all traffic on one proxy: it holds its local share (rate ÷ 3), while
    // the others keep serving too.
    let started = Instant::now();
    let outage = drive(&addrs[..1], &auth, per_proxy * 3, phase).await;
    let secs = u64::try_from(started.elapsed().as_millis()).unwrap();
    for proxy in &proxies {
        assert_eq!(
            ready_status(proxy).await,
            200,
            "/ready must stay 200 without Redis"
        );
    }
    let others = drive(&addrs[1..], &auth, 1, Duration::from_millis(500)).await;
    assert!(
        others.ok.load(Ordering::Relaxed) > 0,
        "the other proxies stopped serving"
    );
    let ok = outage.ok.load(Ordering::Relaxed);
    let burst = u64::try_from(CLUSTER_BURST).unwrap();
    let local_bound = (rate / 3) * secs / 1000 + burst / 3 + 1;
    println!("Redis down for {secs} ms, one proxy: admitted {ok}, local share {local_bound}");
    assert_eq!(
        outage.other.load(Ordering::Relaxed),
        0,
        "no 5xx while Redis is down"
    );
    assert!(
        ok <= local_bound,
        "local limits did not hold: {ok} > {local_bound}"
    );
    assert!(ok > 0 && outage.limited.load(Ordering::Relaxed) > 0);

    // Phase 2, Redis back: the same proxy alone gets the whole cluster rate again.
    link.restore();
    for proxy in &proxies {
        wait_for_metric(proxy, "gateway_limiter_cluster_available 1").await;
    }
    let started = Instant::now();
    let after = drive(&addrs[..1], &auth, per_proxy * 3, phase).await;
    let secs = u64::try_from(started.elapsed().as_millis()).unwrap();
    let ok = after.ok.load(Ordering::Relaxed);
    let cluster_rate = rate * secs / 1000;
    println!(
        "Redis back, {secs} ms, one proxy: admitted {ok}, cluster rate {cluster_rate} + burst {burst}"
    );
    assert_eq!(after.other.load(Ordering::Relaxed), 0);
    // Well above what the local share would admit in the same time: the cluster rate is
    // back. (Not "close to the cluster rate": on a loaded machine the client may not offer
    // that many requests.)
    let local_share = (rate / 3) * secs / 1000 + burst / 3 + 1;
    assert!(
        ok * 2 >= local_share * 3,
        "cluster limits did not resume: {ok} admitted, the local share alone allows {local_share}"
    );
    assert!(
        ok <= (cluster_rate + burst) * 105 / 100,
        "over the cluster limit: {ok} > {cluster_rate} + {burst}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_plans_admit_exactly_the_burst_across_proxies() {
    let upstream = echo_upstream().await;
    let limits = PlanLimits {
        rate_per_second: 1,
        burst: 5,
        strict: true,
        ..PlanLimits::default()
    };
    let f = fixture_with(upstream, limits).await;
    let redis = TestRedis::new();
    let proxies = cluster(&f, redis.url(), redis.prefix(), 3).await;
    let auth = format!("x-api-key: {}\r\n", f.key.expose());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for proxy in &proxies {
        for _ in 0..10 {
            let (addr, request) = (proxy.addr, get("/api/x", &auth));
            tasks.push(tokio::spawn(async move {
                let mut conn = TcpStream::connect(addr).await.unwrap();
                send(&mut conn, &request).await.0
            }));
        }
    }
    let mut admitted = 0;
    for task in tasks {
        let status = task.await.unwrap();
        assert!(status == 200 || status == 429, "status {status}");
        admitted += u64::from(status == 200);
    }
    // One more per elapsed second at 1/s.
    let bound = 5 + started.elapsed().as_secs();
    assert!(
        (5..=bound).contains(&admitted),
        "admitted {admitted} of 30, burst 5"
    );
}
