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
//!
//! By concern: [`Limiter`] here (per-tenant state in shards, the dispatch between decisions),
//! `decision` (what is answered), `local` (the in-memory decision), `strict` (the per-request
//! script), `sync` (the delayed-sync service), `breaker` (the one owner of "cluster
//! available", its gauge and log lines), `tenant_state`, `redis_keys`, `clock`, `metrics`.

mod breaker;
mod clock;
mod decision;
mod local;
mod metrics;
mod redis_keys;
mod strict;
mod sync;
mod tenant_state;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use parking_lot::RwLock;
use tollgate_core::{Plan, TenantId};

use breaker::ClusterBreaker;
use strict::StrictClient;
use tenant_state::TenantLimits;

pub use clock::{monotonic_nanos, seconds_until_next_month};
pub use decision::{LimitDecision, LimitVerdict, QuotaState};
pub use metrics::LimiterMetrics;
pub use sync::{SyncSettings, run_sync};

const SHARDS: usize = 64;

/// Limiter settings that do not come from plans.
#[derive(Debug, Clone)]
pub struct LimiterSettings {
    /// Proxy replicas sharing the cluster limit; local fallback limits are `rate ÷ replicas`.
    pub replicas: u32,
    /// Whether a Redis is configured: without one, limits are local (`rate ÷ replicas`).
    pub cluster: bool,
}

type Shard = RwLock<HashMap<TenantId, Arc<TenantLimits>>>;

/// The limiter: per-tenant state, shared by every worker thread and the sync service.
#[derive(Debug)]
pub struct Limiter {
    shards: Box<[Shard]>,
    hasher: std::collections::hash_map::RandomState,
    settings: LimiterSettings,
    /// Whether Redis answers, and so whether decisions use the cluster rate.
    breaker: ClusterBreaker,
    /// The month (`year × 12 + month`) quotas count against, refreshed by the sync service.
    month: AtomicU32,
    /// The connection strict-mode requests use; set by the sync service while Redis is up.
    strict_connection: ArcSwapOption<StrictClient>,
    metrics: LimiterMetrics,
}

impl Limiter {
    /// A limiter with no tenant state yet.
    pub fn new(settings: LimiterSettings) -> Self {
        let shards = (0..SHARDS).map(|_| RwLock::default()).collect();
        let metrics = LimiterMetrics::default();
        Self {
            shards,
            hasher: std::collections::hash_map::RandomState::new(),
            // Until the first successful sync, cluster tenants use their local share.
            breaker: ClusterBreaker::new(metrics.cluster_available_gauge()),
            month: AtomicU32::new(clock::current_month(time::OffsetDateTime::now_utc())),
            strict_connection: ArcSwapOption::empty(),
            settings,
            metrics,
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
        self.breaker.record_success();
    }

    /// Whether decisions currently use the cluster-wide limit.
    pub fn cluster_available(&self) -> bool {
        self.settings.cluster && self.breaker.in_use()
    }

    fn shard(&self, tenant: TenantId) -> &Shard {
        let index = usize::try_from(self.hasher.hash_one(tenant) % SHARDS as u64).unwrap_or(0);
        &self.shards[index]
    }

    /// The tenant's state, created (or replaced after a plan change) on demand.
    fn entry(&self, tenant: TenantId, plan: &Plan) -> Arc<TenantLimits> {
        let shard = self.shard(tenant);
        if let Some(entry) = shard.read().get(&tenant)
            && entry.matches(plan)
        {
            return entry.clone();
        }
        let mut map = shard.write();
        let month = self.month.load(Ordering::Acquire);
        let mut added = false;
        let entry = map
            .entry(tenant)
            .and_modify(|entry| {
                if !entry.matches(plan) {
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
            self.metrics.tenant_added();
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
        self.metrics.set_tenants(self.tenant_count());
    }
}

#[cfg(test)]
mod fake_redis;
#[cfg(test)]
mod tests;
