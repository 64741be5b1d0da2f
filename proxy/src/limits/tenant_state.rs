//! One tenant's limiter state on this node: arrival times, admissions not yet reported to the
//! cluster, and the month's quota count.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use tollgate_core::plan::{Quota, QuotaCap};
use tollgate_core::{Plan, RatePolicy};

use super::QuotaState;
use crate::gcra::Gcra;

/// `first_pending` when nothing is pending.
pub(super) const NO_PENDING: u64 = u64::MAX;

/// One tenant's limiter state.
#[derive(Debug)]
pub(super) struct TenantLimits {
    pub(super) policy: RatePolicy,
    pub(super) quota: Option<Quota>,
    pub(super) cluster: Gcra,
    pub(super) fallback_policy: RatePolicy,
    pub(super) fallback: Gcra,
    /// Arrival time under the full rate: cluster view after the last sync plus own admissions.
    pub(super) tat: AtomicU64,
    /// Arrival time under the local fallback share.
    pub(super) fallback_tat: AtomicU64,
    /// Admissions not yet reported to the cluster (rate and quota).
    pub(super) pending: AtomicU64,
    /// When the oldest pending admission happened (`NO_PENDING` when none).
    pub(super) first_pending: AtomicU64,
    /// Admissions while the cluster limiter was down: they count against the quota on
    /// recovery but not against the cluster rate, whose window has long passed.
    pub(super) pending_outage: AtomicU64,
    /// Quota used this month as of the last sync (cluster-wide with Redis).
    pub(super) quota_synced: AtomicU64,
    /// The month `quota_synced` belongs to.
    pub(super) quota_month: AtomicU32,
    pub(super) last_seen: AtomicU64,
}

impl TenantLimits {
    pub(super) fn new(plan: &Plan, replicas: u32, month: u32) -> Self {
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

    /// Whether this state was built for `plan`'s limits.
    pub(super) fn matches(&self, plan: &Plan) -> bool {
        self.policy == plan.rate() && self.quota == plan.quota()
    }

    pub(super) fn quota_used(&self) -> u64 {
        self.quota_synced
            .load(Ordering::Acquire)
            .saturating_add(self.pending.load(Ordering::Acquire))
    }

    /// Reserves one unit of quota; `Err` when a hard quota is exhausted.
    pub(super) fn reserve_quota(&self) -> Result<Option<QuotaState>, QuotaState> {
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

    pub(super) fn release_quota(&self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }

    pub(super) fn note_pending(&self, now: u64) {
        self.first_pending.fetch_min(now, Ordering::AcqRel);
    }
}
