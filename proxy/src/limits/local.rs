//! The in-memory decision: no I/O, one CAS on the tenant's arrival time.

use std::sync::atomic::Ordering;

use tollgate_core::Plan;
use tollgate_core::plan::FailureMode;

use super::decision::refused;
use super::tenant_state::TenantLimits;
use super::{LimitDecision, LimitVerdict, Limiter, QuotaState};

impl Limiter {
    /// The full rate while the cluster limiter is up (`cluster`), the local share (or a
    /// refusal for fail-closed plans) while it is down.
    pub(super) fn check_local(
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
}
