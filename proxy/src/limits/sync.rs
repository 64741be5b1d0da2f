//! The delayed-sync service: one pipelined flush of every tenant's pending admissions per
//! interval, reporting each outcome to the [`super::breaker`]; it also keeps the month current
//! and forgets idle tenants.
//!
//! Times in Redis are microseconds from Redis' own clock (`TIME`), and nodes send ages and
//! receive backlogs (`tat − now`) rather than timestamps, so node clocks need not agree.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Limiter;
use super::clock::{current_month, monotonic_nanos};
use super::redis_keys::{QUOTA_TTL_SECONDS, micros, quota_key, rate_key};
use super::strict::{STRICT_SCRIPT, StrictClient};
use super::tenant_state::{NO_PENDING, TenantLimits};

/// Adds a node's admissions to the cluster's arrival time and month counter; answers with
/// the backlog (µs) and the month's total.
/// KEYS: rate, quota. ARGV: admissions, period µs, age of the oldest admission µs,
/// quota admissions, has quota (1/0), quota TTL s.
const SYNC_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then
  local first = now - tonumber(ARGV[3])
  if tat < first then tat = first end
  tat = tat + n * tonumber(ARGV[2])
  local ttl = math.ceil((tat - now) / 1000)
  if ttl < 0 then ttl = 0 end
  redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', ttl + 60000)
end
local used = 0
if ARGV[5] == '1' then
  used = redis.call('INCRBY', KEYS[2], tonumber(ARGV[4]))
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
end
return {math.floor(tat - now), used}
";

/// Tenants with admissions pending are flushed on every sync. Tenants seen in the last second
/// with nothing pending only have their cluster view refreshed on every `REFRESH_IDLE_EVERY`th
/// sync (200 ms at the default 20 ms): with many tenants each sending now and then, refreshing
/// them all every 20 ms was most of the Redis traffic and of the proxy's sync CPU. A node's
/// first admission after such a pause decides from a view at most that old, which the
/// over-admission bound (README, "Limits") already covers.
const REFRESH_IDLE_EVERY: u32 = 10;

/// How the sync service reaches Redis.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// `redis://…` URL.
    pub redis_url: String,
    /// Prefix of every key the limiter writes.
    pub key_prefix: String,
    /// Time between flushes: the staleness of a node's view of the cluster.
    pub interval: Duration,
    /// Deadline of one flush or strict decision; past it Redis counts as down.
    pub timeout: Duration,
    /// Time between reconnection attempts while Redis is down.
    pub retry_interval: Duration,
    /// Tenants idle this long are forgotten.
    pub idle_eviction: Duration,
}

impl SyncSettings {
    /// Defaults for `redis_url`: flush every 20 ms, 250 ms deadline, retry every 500 ms.
    pub fn new(redis_url: String) -> Self {
        Self {
            redis_url,
            key_prefix: "tollgate:".into(),
            interval: Duration::from_millis(20),
            timeout: Duration::from_millis(250),
            retry_interval: Duration::from_millis(500),
            idle_eviction: Duration::from_secs(600),
        }
    }
}

/// Runs until `shutdown`: flushes pending admissions, keeps the month current, forgets idle
/// tenants. Without `settings` (no Redis) only the local bookkeeping runs.
pub async fn run_sync(
    limiter: Arc<Limiter>,
    settings: Option<SyncSettings>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(settings) = settings else {
        run_local(&limiter, &mut shutdown).await;
        return;
    };
    let client = match redis::Client::open(settings.redis_url.as_str()) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "Invalid Redis URL; limits stay local.");
            run_local(&limiter, &mut shutdown).await;
            return;
        }
    };
    let sync_script = Script::new(SYNC_SCRIPT);
    let strict_script = Script::new(STRICT_SCRIPT);
    let mut connection: Option<MultiplexedConnection> = None;
    let mut next_attempt = Instant::now();
    let mut last_sweep = Instant::now();
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round = 0u32;
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            _ = ticker.tick() => {}
        }
        refresh_month(&limiter);
        if last_sweep.elapsed() >= Duration::from_secs(60) {
            limiter.evict_idle(monotonic_nanos(), settings.idle_eviction);
            last_sweep = Instant::now();
        }
        let conn = match &connection {
            Some(conn) => conn.clone(),
            None if Instant::now() < next_attempt => continue,
            None => match connect(&client, &settings, &[&sync_script, &strict_script]).await {
                Ok(conn) => {
                    connection = Some(conn.clone());
                    conn
                }
                Err(error) => {
                    tracing::debug!(%error, "Redis still unreachable.");
                    next_attempt = Instant::now() + settings.retry_interval;
                    continue;
                }
            },
        };
        let started = Instant::now();
        round = round.wrapping_add(1);
        let refresh_idle = round.is_multiple_of(REFRESH_IDLE_EVERY);
        match tokio::time::timeout(
            settings.timeout,
            flush(
                &limiter,
                &settings,
                conn.clone(),
                &sync_script,
                refresh_idle,
            ),
        )
        .await
        {
            Ok(Ok(())) => {
                limiter
                    .metrics
                    .sync_succeeded(started.elapsed().as_secs_f64());
                // The strict client first: a strict plan's next request finds it in place.
                if limiter.strict_connection.load().is_none() {
                    limiter.strict_connection.store(Some(Arc::new(StrictClient {
                        connection: conn,
                        prefix: settings.key_prefix.clone(),
                        timeout: settings.timeout,
                    })));
                }
                limiter.breaker.record_success();
            }
            Ok(Err(error)) => {
                mark_down(&limiter, &error);
                connection = None;
                next_attempt = Instant::now() + settings.retry_interval;
            }
            Err(_) => {
                mark_down(&limiter, &"flush timed out");
                connection = None;
                next_attempt = Instant::now() + settings.retry_interval;
            }
        }
    }
    // A last flush so a stopping node's admissions still count.
    if let Some(conn) = connection {
        let _ = tokio::time::timeout(
            settings.timeout,
            flush(&limiter, &settings, conn, &sync_script, false),
        )
        .await;
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// A flush failed: the connection is given up and the breaker opens.
fn mark_down(limiter: &Limiter, reason: &dyn std::fmt::Display) {
    limiter.metrics.sync_failed();
    limiter.strict_connection.store(None);
    limiter.breaker.record_failure(reason);
}

async fn connect(
    client: &redis::Client,
    settings: &SyncSettings,
    scripts: &[&Script],
) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(settings.timeout))
        .set_response_timeout(Some(settings.timeout));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    // Scripts are loaded on every (re)connection: a restarted Redis has forgotten them.
    for script in scripts {
        script.prepare_invoke().load_async(&mut conn).await?;
    }
    Ok(conn)
}

async fn run_local(limiter: &Limiter, shutdown: &mut watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut sweeps = 0u32;
    loop {
        tokio::select! {
            _ = stopped(shutdown) => return,
            _ = ticker.tick() => {}
        }
        refresh_month(limiter);
        // Without a cluster, the quota count is this node's own: fold pending into it.
        for (_, entry) in limiter.tenants() {
            let pending = entry.pending.load(Ordering::Acquire);
            if pending > 0 {
                entry.quota_synced.fetch_add(pending, Ordering::AcqRel);
                entry.pending.fetch_sub(pending, Ordering::AcqRel);
            }
        }
        sweeps += 1;
        if sweeps.is_multiple_of(60) {
            limiter.evict_idle(monotonic_nanos(), Duration::from_secs(600));
        }
    }
}

/// A new month starts every tenant's quota from zero.
fn refresh_month(limiter: &Limiter) {
    let month = current_month(time::OffsetDateTime::now_utc());
    if limiter.month.swap(month, Ordering::AcqRel) != month {
        for (_, entry) in limiter.tenants() {
            entry.quota_synced.store(0, Ordering::Release);
            entry.quota_month.store(month, Ordering::Release);
        }
    }
}

/// What one tenant reports in a flush.
struct Report {
    entry: Arc<TenantLimits>,
    admitted: u64,
    outage: u64,
}

/// Sends every tenant's pending admissions (and, with `refresh_idle`, refreshes the view of
/// recently active tenants with none pending) in one pipelined round trip, then moves each
/// tenant's view to the cluster's answer.
async fn flush(
    limiter: &Limiter,
    settings: &SyncSettings,
    mut conn: MultiplexedConnection,
    script: &Script,
    refresh_idle: bool,
) -> redis::RedisResult<()> {
    let now = monotonic_nanos();
    let recent = u64::try_from(Duration::from_secs(1).as_nanos()).unwrap_or(u64::MAX);
    let month = limiter.month.load(Ordering::Acquire);
    let mut pipe = redis::pipe();
    let mut reports = Vec::new();
    for (tenant, entry) in limiter.tenants() {
        let admitted = entry.pending.load(Ordering::Acquire);
        let active = now.saturating_sub(entry.last_seen.load(Ordering::Relaxed)) < recent;
        if admitted == 0 && !(active && refresh_idle) {
            continue;
        }
        let outage = entry.pending_outage.load(Ordering::Acquire).min(admitted);
        let first = entry.first_pending.load(Ordering::Acquire);
        let age = if first == NO_PENDING {
            0
        } else {
            now.saturating_sub(first) / 1000
        };
        pipe.cmd("EVALSHA")
            .arg(script.get_hash())
            .arg(2)
            .arg(rate_key(&settings.key_prefix, tenant))
            .arg(quota_key(&settings.key_prefix, tenant, month))
            .arg(admitted - outage)
            .arg(micros(entry.cluster.period()))
            .arg(age)
            .arg(admitted)
            .arg(u8::from(entry.quota.is_some()))
            .arg(QUOTA_TTL_SECONDS);
        reports.push(Report {
            entry,
            admitted,
            outage,
        });
    }
    if reports.is_empty() {
        // Nothing to report: a PING keeps the breaker honest.
        return redis::cmd("PING").query_async::<()>(&mut conn).await;
    }
    let replies: Vec<(i64, u64)> = pipe.query_async(&mut conn).await?;
    let now = monotonic_nanos();
    for (report, (backlog_us, used)) in reports.iter().zip(replies) {
        let entry = &report.entry;
        if entry.quota.is_some() {
            // Store the total before releasing pending: briefly counting twice errs on the
            // side of the quota.
            entry.quota_synced.store(used, Ordering::Release);
        }
        let left = entry
            .pending
            .fetch_sub(report.admitted, Ordering::AcqRel)
            .saturating_sub(report.admitted);
        entry
            .pending_outage
            .fetch_sub(report.outage, Ordering::AcqRel);
        entry
            .first_pending
            .store(if left == 0 { NO_PENDING } else { now }, Ordering::Release);
        let backlog = backlog_us.saturating_mul(1000);
        entry
            .tat
            .store(entry.cluster.resync(now, backlog, left), Ordering::Release);
    }
    Ok(())
}
