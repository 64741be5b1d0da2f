//! Plan limits: the request rate (GCRA) and the monthly quota, per tenant.
//!
//! Every decision is made in memory. Each tenant has a GCRA arrival time (`tat`) and a count
//! of admissions not yet reported to the cluster (`pending`). With Redis configured, the
//! [`sync`] service flushes every tenant's pending count in one pipelined round trip every
//! few tens of milliseconds: Redis adds it to the cluster-wide arrival time and the month's
//! quota counter, and answers with both, which become the node's new starting point. A node
//! thus decides from *cluster state at the last sync + its own admissions since*, like
//! APISIX/Kong's `sync_rate`, with no Redis round trip per request. Because Redis accumulates
//! every admission, nodes that over-admit between syncs are held back afterwards, so the
//! long-run total stays within the rate; the excess is bounded by one sync interval of
//! traffic per node and does not grow with time.
//!
//! Plans marked `strict` instead run one atomic Redis script per request (exact cluster-wide).
//! When Redis cannot be reached, a circuit breaker opens and decisions fall back to local
//! limits of `rate ÷ replicas` (fail-open plans) or refuse with 503 (fail-closed plans).
//! Refused requests never consume the rate or the quota.

mod sync;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use parking_lot::RwLock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use redis::aio::MultiplexedConnection;
use tollgate_core::plan::{FailureMode, Quota, QuotaCap};
use tollgate_core::{Plan, RatePolicy, TenantId};

use crate::gcra::{Gcra, RateDecision};

pub use sync::{SyncSettings, run_sync};

const SHARDS: usize = 64;
const NO_PENDING: u64 = u64::MAX;

/// Nanoseconds on a process-wide monotonic clock.
pub fn monotonic_nanos() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Limiter settings that do not come from plans.
#[derive(Debug, Clone)]
pub struct LimiterSettings {
    /// Proxy replicas sharing the cluster limit; local fallback limits are `rate ÷ replicas`.
    pub replicas: u32,
    /// Whether a Redis is configured: without one, limits are local (`rate ÷ replicas`).
    pub cluster: bool,
}

/// What the limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitVerdict {
    /// Within the limits.
    Allowed,
    /// Over the request rate (429 `rate_limited`).
    RateLimited,
    /// Over a hard monthly quota (429 `quota_exceeded`).
    QuotaExceeded,
    /// The cluster limiter is unreachable and the plan fails closed (503).
    Unavailable,
}

/// A decision and the numbers the response headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitDecision {
    /// The verdict.
    pub verdict: LimitVerdict,
    /// The rate policy that applied (the local share while the cluster limiter is down).
    pub policy: RatePolicy,
    /// The GCRA outcome (remaining, reset, retry).
    pub rate: RateDecision,
    /// The quota state, when the plan has a quota.
    pub quota: Option<QuotaState>,
}

/// Where a tenant stands against its monthly quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaState {
    /// Requests included per month.
    pub limit: u64,
    /// Requests used this month, this one included when it was admitted.
    pub used: u64,
    /// Hard or soft.
    pub cap: QuotaCap,
}

impl QuotaState {
    /// Requests left this month.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

/// Limiter metrics.
#[derive(Debug)]
pub struct LimiterMetrics {
    decisions: Family<DecisionLabels, Counter>,
    /// The decision counters by verdict, resolved once: counting is one atomic add.
    by_verdict: [Counter; 4],
    cluster_available: Gauge,
    sync_duration: SyncHistogram,
    sync_failures: Counter,
    tenants: Gauge,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    result: &'static str,
}

#[derive(Debug)]
struct SyncHistogram(Histogram);

impl Default for SyncHistogram {
    fn default() -> Self {
        Self(Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        ]))
    }
}

const VERDICTS: [(LimitVerdict, &str); 4] = [
    (LimitVerdict::Allowed, "allowed"),
    (LimitVerdict::RateLimited, "rate_limited"),
    (LimitVerdict::QuotaExceeded, "quota_exceeded"),
    (LimitVerdict::Unavailable, "unavailable"),
];

impl Default for LimiterMetrics {
    fn default() -> Self {
        let decisions = Family::<DecisionLabels, Counter>::default();
        // The family's guard ends with each closure call, before the next lookup.
        let by_verdict =
            VERDICTS.map(|(_, result)| decisions.get_or_create(&DecisionLabels { result }).clone());
        Self {
            decisions,
            by_verdict,
            cluster_available: Gauge::default(),
            sync_duration: SyncHistogram::default(),
            sync_failures: Counter::default(),
            tenants: Gauge::default(),
        }
    }
}

impl LimiterMetrics {
    /// Registers the limiter's metrics.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "gateway_limiter_decisions",
            "Limiter decisions by result",
            self.decisions.clone(),
        );
        registry.register(
            "gateway_limiter_cluster_available",
            "1 while the cluster limiter (Redis) is in use, 0 while local fallback limits apply",
            self.cluster_available.clone(),
        );
        registry.register(
            "gateway_limiter_sync_duration_seconds",
            "Round trip of one delayed-sync flush to Redis",
            self.sync_duration.0.clone(),
        );
        registry.register(
            "gateway_limiter_sync_failures",
            "Failed flushes to Redis",
            self.sync_failures.clone(),
        );
        registry.register(
            "gateway_limiter_tenants",
            "Tenants with limiter state on this node",
            self.tenants.clone(),
        );
    }

    fn count(&self, verdict: LimitVerdict) {
        if let Some(index) = VERDICTS.iter().position(|(v, _)| *v == verdict) {
            self.by_verdict[index].inc();
        }
    }
}

/// One tenant's limiter state.
#[derive(Debug)]
struct TenantLimits {
    policy: RatePolicy,
    quota: Option<Quota>,
    cluster: Gcra,
    fallback_policy: RatePolicy,
    fallback: Gcra,
    /// Arrival time under the full rate: cluster view after the last sync plus own admissions.
    tat: AtomicU64,
    /// Arrival time under the local fallback share.
    fallback_tat: AtomicU64,
    /// Admissions not yet reported to the cluster (rate and quota).
    pending: AtomicU64,
    /// When the oldest pending admission happened (`NO_PENDING` when none).
    first_pending: AtomicU64,
    /// Admissions while the cluster limiter was down: they count against the quota on
    /// recovery but not against the cluster rate, whose window has long passed.
    pending_outage: AtomicU64,
    /// Quota used this month as of the last sync (cluster-wide with Redis).
    quota_synced: AtomicU64,
    /// The month `quota_synced` belongs to.
    quota_month: AtomicU32,
    last_seen: AtomicU64,
}

impl TenantLimits {
    fn new(plan: &Plan, replicas: u32, month: u32) -> Self {
        let policy = plan.rate();
        let replicas = replicas.max(1);
        let fallback_policy = RatePolicy {
            requests_per_second: (policy.requests_per_second / replicas).max(1),
            burst: (policy.burst / replicas).max(1),
            strict: policy.strict,
        };
        Self {
            policy,
            quota: plan.quota(),
            cluster: Gcra::new(policy),
            fallback_policy,
            fallback: Gcra::new(fallback_policy),
            tat: AtomicU64::new(0),
            fallback_tat: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            first_pending: AtomicU64::new(NO_PENDING),
            pending_outage: AtomicU64::new(0),
            quota_synced: AtomicU64::new(0),
            quota_month: AtomicU32::new(month),
            last_seen: AtomicU64::new(0),
        }
    }

    fn quota_used(&self) -> u64 {
        self.quota_synced
            .load(Ordering::Acquire)
            .saturating_add(self.pending.load(Ordering::Acquire))
    }

    /// Reserves one unit of quota; `None` when a hard quota is exhausted.
    fn reserve_quota(&self) -> Result<Option<QuotaState>, QuotaState> {
        let Some(quota) = self.quota else {
            self.pending.fetch_add(1, Ordering::AcqRel);
            return Ok(None);
        };
        let before = self.pending.fetch_add(1, Ordering::AcqRel);
        let used = self
            .quota_synced
            .load(Ordering::Acquire)
            .saturating_add(before)
            .saturating_add(1);
        let state = QuotaState {
            limit: quota.included_requests,
            used,
            cap: quota.cap,
        };
        if quota.cap == QuotaCap::Hard && used > quota.included_requests {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(QuotaState {
                used: used - 1,
                ..state
            });
        }
        Ok(Some(state))
    }

    fn release_quota(&self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }

    fn note_pending(&self, now: u64) {
        self.first_pending.fetch_min(now, Ordering::AcqRel);
    }
}

type Shard = RwLock<HashMap<TenantId, Arc<TenantLimits>>>;

/// The limiter: per-tenant state, shared by every worker thread and the sync service.
#[derive(Debug)]
pub struct Limiter {
    shards: Box<[Shard]>,
    hasher: std::collections::hash_map::RandomState,
    settings: LimiterSettings,
    /// True while Redis answers: decisions use the cluster rate.
    cluster_up: AtomicBool,
    /// The month (`year × 12 + month`) quotas count against, refreshed by the sync service.
    month: AtomicU32,
    /// The connection strict-mode requests use; set by the sync service while Redis is up.
    strict_connection: ArcSwapOption<StrictClient>,
    metrics: LimiterMetrics,
}

/// A Redis connection and the key prefix, for strict-mode decisions.
#[derive(Debug)]
struct StrictClient {
    connection: MultiplexedConnection,
    prefix: String,
    timeout: Duration,
}

impl Limiter {
    /// A limiter with no tenant state yet.
    pub fn new(settings: LimiterSettings) -> Self {
        let shards = (0..SHARDS).map(|_| RwLock::default()).collect();
        Self {
            shards,
            hasher: std::collections::hash_map::RandomState::new(),
            // Until the first successful sync, cluster tenants use their local share.
            cluster_up: AtomicBool::new(false),
            month: AtomicU32::new(current_month(time::OffsetDateTime::now_utc())),
            strict_connection: ArcSwapOption::empty(),
            settings,
            metrics: LimiterMetrics::default(),
        }
    }

    /// The limiter's metrics.
    pub fn metrics(&self) -> &LimiterMetrics {
        &self.metrics
    }

    /// Treats the cluster limiter as reachable before any sync, so benches can measure the
    /// cluster path (admissions pending for the next sync) without Redis.
    #[doc(hidden)]
    pub fn assume_cluster_available(&self) {
        self.cluster_up.store(true, Ordering::Release);
    }

    /// Whether decisions currently use the cluster-wide limit.
    pub fn cluster_available(&self) -> bool {
        self.settings.cluster && self.cluster_up.load(Ordering::Acquire)
    }

    fn shard(&self, tenant: TenantId) -> &Shard {
        let index = usize::try_from(self.hasher.hash_one(tenant) % SHARDS as u64).unwrap_or(0);
        &self.shards[index]
    }

    /// The tenant's state, created (or replaced after a plan change) on demand.
    fn entry(&self, tenant: TenantId, plan: &Plan) -> Arc<TenantLimits> {
        let shard = self.shard(tenant);
        let current =
            |entry: &TenantLimits| entry.policy == plan.rate() && entry.quota == plan.quota();
        if let Some(entry) = shard.read().get(&tenant)
            && current(entry)
        {
            return entry.clone();
        }
        let mut map = shard.write();
        let month = self.month.load(Ordering::Acquire);
        let mut added = false;
        let entry = map
            .entry(tenant)
            .and_modify(|entry| {
                if !current(entry) {
                    // A new rate starts fresh; the month's quota count carries over.
                    let replaced = TenantLimits::new(plan, self.settings.replicas, month);
                    replaced
                        .quota_synced
                        .store(entry.quota_used(), Ordering::Release);
                    *entry = Arc::new(replaced);
                }
            })
            .or_insert_with(|| {
                added = true;
                Arc::new(TenantLimits::new(plan, self.settings.replicas, month))
            })
            .clone();
        drop(map);
        if added {
            self.metrics.tenants.inc();
        }
        entry
    }

    fn tenant_count(&self) -> usize {
        self.shards.iter().map(|shard| shard.read().len()).sum()
    }

    /// Decides for one request of `tenant` under `plan`. Awaits Redis only for strict plans.
    pub async fn check(&self, tenant: TenantId, plan: &Plan) -> LimitDecision {
        let entry = self.entry(tenant, plan);
        let now = monotonic_nanos();
        entry.last_seen.store(now, Ordering::Relaxed);
        let cluster = self.cluster_available();
        let decision = if cluster && entry.policy.strict {
            match self.check_strict(tenant, plan, &entry).await {
                Some(decision) => decision,
                None => self.check_local(plan, &entry, now, false),
            }
        } else {
            self.check_local(plan, &entry, now, cluster)
        };
        self.metrics.count(decision.verdict);
        decision
    }

    /// The in-memory decision: the full rate while the cluster limiter is up, the local
    /// share (or a refusal for fail-closed plans) while it is down.
    fn check_local(
        &self,
        plan: &Plan,
        entry: &TenantLimits,
        now: u64,
        cluster: bool,
    ) -> LimitDecision {
        let degraded = self.settings.cluster && !cluster;
        let (gcra, tat, policy) = if cluster {
            (&entry.cluster, &entry.tat, entry.policy)
        } else {
            (&entry.fallback, &entry.fallback_tat, entry.fallback_policy)
        };
        if degraded && plan.failure_mode() == FailureMode::Closed {
            return LimitDecision {
                verdict: LimitVerdict::Unavailable,
                policy,
                rate: refused(0),
                quota: None,
            };
        }
        let quota = match entry.reserve_quota() {
            Ok(quota) => quota,
            Err(state) => {
                return LimitDecision {
                    verdict: LimitVerdict::QuotaExceeded,
                    policy,
                    rate: refused(0),
                    quota: Some(state),
                };
            }
        };
        let rate = gcra.check_atomic(tat, now);
        if !rate.allowed {
            entry.release_quota();
            return LimitDecision {
                verdict: LimitVerdict::RateLimited,
                policy,
                rate,
                quota: quota.map(|q| QuotaState {
                    used: q.used.saturating_sub(1),
                    ..q
                }),
            };
        }
        entry.note_pending(now);
        if degraded {
            entry.pending_outage.fetch_add(1, Ordering::AcqRel);
        }
        LimitDecision {
            verdict: LimitVerdict::Allowed,
            policy,
            rate,
            quota,
        }
    }

    /// One atomic Redis script decides; `None` when Redis failed (the caller falls back).
    async fn check_strict(
        &self,
        tenant: TenantId,
        plan: &Plan,
        entry: &TenantLimits,
    ) -> Option<LimitDecision> {
        let client = self.strict_connection.load_full()?;
        let month = self.month.load(Ordering::Acquire);
        let outcome = tokio::time::timeout(
            client.timeout,
            sync::strict_decision(
                client.connection.clone(),
                &client.prefix,
                tenant,
                plan,
                month,
            ),
        )
        .await;
        let reply = match outcome {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => {
                tracing::warn!(%error, "Strict rate-limit script failed; deciding locally.");
                self.cluster_up.store(false, Ordering::Release);
                return None;
            }
            Err(_) => {
                tracing::warn!("Strict rate-limit script timed out; deciding locally.");
                self.cluster_up.store(false, Ordering::Release);
                return None;
            }
        };
        let policy = entry.policy;
        let quota = plan.quota().map(|q| QuotaState {
            limit: q.included_requests,
            used: reply.quota_used,
            cap: q.cap,
        });
        if let Some(state) = quota {
            entry.quota_synced.store(state.used, Ordering::Release);
        }
        let verdict = match reply.verdict {
            sync::StrictVerdict::Allowed => LimitVerdict::Allowed,
            sync::StrictVerdict::RateLimited => LimitVerdict::RateLimited,
            sync::StrictVerdict::QuotaExceeded => LimitVerdict::QuotaExceeded,
        };
        let rate = entry
            .cluster
            .from_backlog(reply.backlog_nanos, verdict == LimitVerdict::Allowed);
        Some(LimitDecision {
            verdict,
            policy,
            rate,
            quota,
        })
    }

    /// Every tenant's state, for the sync service.
    fn tenants(&self) -> Vec<(TenantId, Arc<TenantLimits>)> {
        let mut all = Vec::new();
        for shard in &self.shards {
            all.extend(shard.read().iter().map(|(id, entry)| (*id, entry.clone())));
        }
        all
    }

    /// Forgets tenants idle for longer than `idle` with nothing left to report.
    fn evict_idle(&self, now: u64, idle: Duration) {
        let idle = u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX);
        for shard in &self.shards {
            shard.write().retain(|_, entry| {
                entry.pending.load(Ordering::Acquire) > 0
                    || now.saturating_sub(entry.last_seen.load(Ordering::Relaxed)) < idle
            });
        }
        self.metrics
            .tenants
            .set(i64::try_from(self.tenant_count()).unwrap_or(i64::MAX));
    }
}

fn refused(retry_after: u64) -> RateDecision {
    RateDecision {
        allowed: false,
        remaining: 0,
        reset_after: retry_after,
        retry_after,
    }
}

/// `year × 12 + month − 1` of a UTC time: the quota period.
fn current_month(now: time::OffsetDateTime) -> u32 {
    let year = u32::try_from(now.year()).unwrap_or(0);
    year * 12 + u32::from(u8::from(now.month())) - 1
}

/// Seconds from `now` to the start of the next UTC month: when quotas reset.
pub fn seconds_until_next_month(now: time::OffsetDateTime) -> u64 {
    let (year, month) = match now.month() {
        time::Month::December => (now.year() + 1, time::Month::January),
        month => (now.year(), month.next()),
    };
    let Ok(start) = time::Date::from_calendar_date(year, month, 1) else {
        return 0;
    };
    let next = start.midnight().assume_utc();
    u64::try_from((next - now).whole_seconds()).unwrap_or(0)
}

#[cfg(test)]
mod tests;
