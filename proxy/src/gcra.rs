//! The generic cell rate algorithm: one `u64` of state per key (the theoretical arrival time),
//! updated lock-free with compare-and-swap, exact for any rate and burst.
//!
//! A request at `now` is allowed when `max(tat, now) - now <= tolerance`, and then moves the
//! state to `max(tat, now) + period`. A refused request leaves the state alone, so rejections
//! never consume the limit. Times are nanoseconds on a monotonic clock chosen by the caller.

use std::sync::atomic::{AtomicU64, Ordering};

use tollgate_core::RatePolicy;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// A rate policy in the form GCRA works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Nanoseconds between requests at the sustained rate.
    period: u64,
    /// How far ahead of `now` the arrival time may run: `period × (burst − 1)`.
    tolerance: u64,
    burst: u32,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request may pass.
    pub allowed: bool,
    /// Requests that could still pass right now.
    pub remaining: u32,
    /// Nanoseconds until the full burst is available again.
    pub reset_after: u64,
    /// For a refusal: nanoseconds until one request would pass.
    pub retry_after: u64,
}

impl Gcra {
    /// From a plan's rate (requests per second, burst). Both are at least 1 in a valid plan;
    /// zero is treated as 1 rather than dividing by zero.
    pub fn new(policy: RatePolicy) -> Self {
        let rate = u64::from(policy.requests_per_second.max(1));
        let burst = policy.burst.max(1);
        let period = (NANOS_PER_SECOND / rate).max(1);
        Self {
            period,
            tolerance: period.saturating_mul(u64::from(burst - 1)),
            burst,
        }
    }

    /// Decides for a request at `now`, given and updating the key's arrival time `tat`.
    pub fn check(&self, tat: &mut u64, now: u64) -> RateDecision {
        let (decision, next) = self.decide(*tat, now);
        if let Some(next) = next {
            *tat = next;
        }
        decision
    }

    /// As [`Gcra::check`], on shared state, without a lock.
    pub fn check_atomic(&self, tat: &AtomicU64, now: u64) -> RateDecision {
        let mut current = tat.load(Ordering::Acquire);
        loop {
            let (decision, next) = self.decide(current, now);
            let Some(next) = next else { return decision };
            match tat.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return decision,
                Err(actual) => current = actual,
            }
        }
    }

    /// Nanoseconds between requests at the sustained rate.
    pub fn period(&self) -> u64 {
        self.period
    }

    /// How far ahead of now the arrival time may run, nanoseconds.
    pub fn tolerance(&self) -> u64 {
        self.tolerance
    }

    /// The decision a shared arrival time `backlog` nanoseconds ahead of now implies, for a
    /// request that was (`allowed`) or was not admitted by another decider (Redis).
    pub fn from_backlog(&self, backlog: i64, allowed: bool) -> RateDecision {
        let ahead = u64::try_from(backlog).unwrap_or(0);
        if allowed {
            let headroom = (self.tolerance + self.period).saturating_sub(ahead) / self.period;
            RateDecision {
                allowed: true,
                remaining: u32::try_from(headroom).unwrap_or(u32::MAX).min(self.burst),
                reset_after: ahead,
                retry_after: 0,
            }
        } else {
            RateDecision {
                allowed: false,
                remaining: 0,
                reset_after: ahead,
                retry_after: ahead.saturating_sub(self.tolerance).max(1),
            }
        }
    }

    /// The arrival time for `now` after a cluster sync: the cluster's backlog plus
    /// `own` admissions made since the flush that learnt it.
    pub fn resync(&self, now: u64, backlog: i64, own: u64) -> u64 {
        now.saturating_add(u64::try_from(backlog).unwrap_or(0))
            .saturating_add(own.saturating_mul(self.period))
    }

    fn decide(&self, tat: u64, now: u64) -> (RateDecision, Option<u64>) {
        let start = tat.max(now);
        let ahead = start - now;
        if ahead > self.tolerance {
            let retry_after = ahead - self.tolerance;
            let decision = RateDecision {
                allowed: false,
                remaining: 0,
                reset_after: ahead,
                retry_after,
            };
            return (decision, None);
        }
        let next = start.saturating_add(self.period);
        let used = next - now;
        // Whole periods of headroom left under tolerance + one period.
        let headroom = (self.tolerance + self.period).saturating_sub(used) / self.period;
        let decision = RateDecision {
            allowed: true,
            remaining: u32::try_from(headroom).unwrap_or(u32::MAX).min(self.burst),
            reset_after: used,
            retry_after: 0,
        };
        (decision, Some(next))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn gcra(rate: u32, burst: u32) -> Gcra {
        Gcra::new(RatePolicy {
            requests_per_second: rate,
            burst,
            strict: false,
        })
    }

    #[test]
    fn a_burst_passes_then_the_next_request_waits_one_period() {
        let limiter = gcra(10, 3);
        let mut tat = 0;
        let decisions: Vec<RateDecision> = (0..4).map(|_| limiter.check(&mut tat, 0)).collect();
        assert_eq!(
            decisions.iter().map(|d| d.allowed).collect::<Vec<_>>(),
            [true, true, true, false]
        );
        assert_eq!(
            decisions.iter().map(|d| d.remaining).collect::<Vec<_>>(),
            [2, 1, 0, 0]
        );
        assert_eq!(decisions[3].retry_after, 100_000_000, "one period at 10/s");
        assert!(limiter.check(&mut tat, 100_000_000).allowed);
    }

    #[test]
    fn a_refusal_does_not_consume_the_limit() {
        let limiter = gcra(1, 1);
        let mut tat = 0;
        assert!(limiter.check(&mut tat, 0).allowed);
        let before = tat;
        for now in [1, 10, 500_000_000] {
            assert!(!limiter.check(&mut tat, now).allowed);
            assert_eq!(tat, before);
        }
        assert!(limiter.check(&mut tat, NANOS_PER_SECOND).allowed);
    }

    #[test]
    fn atomic_and_plain_checks_agree() {
        let limiter = gcra(5, 2);
        let (mut plain, shared) = (0, AtomicU64::new(0));
        for now in (0..40).map(|i| i * 70_000_000) {
            assert_eq!(
                limiter.check(&mut plain, now),
                limiter.check_atomic(&shared, now)
            );
        }
    }

    #[test]
    fn concurrent_checks_admit_exactly_the_burst() {
        let limiter = gcra(1, 100);
        let tat = AtomicU64::new(0);
        let admitted = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        if limiter.check_atomic(&tat, 0).allowed {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::Relaxed), 100);
    }

    proptest! {
        /// In any window of length w, at most burst + ⌈w / period⌉ requests pass.
        #[test]
        fn no_window_admits_more_than_burst_plus_rate(
            rate in 1u32..1000, burst in 1u32..50,
            gaps in proptest::collection::vec(0u64..20_000_000, 1..300),
        ) {
            let limiter = gcra(rate, burst);
            let mut tat = 0;
            let mut now = 0;
            let mut admitted = Vec::new();
            for gap in gaps {
                now += gap;
                if limiter.check(&mut tat, now).allowed {
                    admitted.push(now);
                }
            }
            for (i, &start) in admitted.iter().enumerate() {
                for (j, &end) in admitted.iter().enumerate().skip(i) {
                    let count = (j - i + 1) as u64;
                    let bound = u64::from(burst) + (end - start).div_ceil(limiter.period);
                    prop_assert!(count <= bound, "{count} admitted in {} ns", end - start);
                }
            }
        }

        /// Requests that arrive no faster than the rate always pass.
        #[test]
        fn traffic_at_the_rate_is_never_refused(rate in 1u32..10_000, burst in 1u32..10, n in 1usize..200) {
            let limiter = gcra(rate, burst);
            let mut tat = 0;
            for i in 0..n as u64 {
                prop_assert!(limiter.check(&mut tat, i * limiter.period).allowed);
            }
        }
    }
}
