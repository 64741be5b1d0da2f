//! What the limiter answers for one request: a verdict and the numbers the response headers
//! report.

use tollgate_core::RatePolicy;
use tollgate_core::plan::QuotaCap;

use crate::gcra::RateDecision;

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

/// A refused GCRA outcome that does not come from the GCRA (quota, unavailable).
pub(super) fn refused(retry_after: u64) -> RateDecision {
    RateDecision {
        allowed: false,
        remaining: 0,
        reset_after: retry_after,
        retry_after,
    }
}
