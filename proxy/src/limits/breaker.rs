//! The circuit breaker around the cluster limiter (Redis).
//!
//! While it is closed, decisions use the cluster-wide rate; while it is open, the local share
//! (`rate ÷ replicas`) or a refusal for fail-closed plans. Every path that learns something
//! about Redis (a sync flush, a strict decision) reports to this one type, and only it changes
//! the state, the `gateway_limiter_cluster_available` gauge and the two log lines, all in one
//! transition: before, a failed strict decision cleared the flag alone, so the gauge stayed
//! at 1 and the next failed flush, finding the flag already clear, never logged the outage.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;

/// Whether the cluster limiter is in use, with its gauge and log lines.
#[derive(Debug)]
pub(super) struct ClusterBreaker {
    /// True while Redis answers (the breaker is closed). Read on every decision.
    in_use: AtomicBool,
    /// Serialises transitions, so the gauge and the log follow the flag in the same order;
    /// taken only when the state is about to change, never on the request path's reads.
    transition: Mutex<()>,
    /// 1 while `in_use`, 0 otherwise; set only here.
    gauge: Gauge,
}

impl ClusterBreaker {
    /// Open (local limits) until Redis first answers; `gauge` reads 0 until then.
    pub(super) fn new(gauge: Gauge) -> Self {
        gauge.set(0);
        Self {
            in_use: AtomicBool::new(false),
            transition: Mutex::new(()),
            gauge,
        }
    }

    /// Whether decisions use the cluster-wide limit.
    pub(super) fn in_use(&self) -> bool {
        self.in_use.load(Ordering::Acquire)
    }

    /// Redis answered: cluster limits from now on. Logs only when that is news.
    pub(super) fn record_success(&self) {
        if self.transition_to(true) {
            tracing::info!("Cluster rate limits in force (Redis reachable).");
        }
    }

    /// Redis failed (`reason`): local limits from now on. Logs only when that is news.
    pub(super) fn record_failure(&self, reason: &dyn Display) {
        if self.transition_to(false) {
            tracing::warn!(
                %reason,
                "Redis unreachable: local rate limits (rate ÷ replicas) until it returns."
            );
        }
    }

    /// Moves to `in_use`; true when the state changed.
    fn transition_to(&self, in_use: bool) -> bool {
        if self.in_use() == in_use {
            return false;
        }
        let _transition = self.transition.lock();
        if self.in_use() == in_use {
            return false;
        }
        self.in_use.store(in_use, Ordering::Release);
        self.gauge.set(i64::from(in_use));
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn the_gauge_follows_every_transition_and_repeats_change_nothing() {
        let gauge = Gauge::default();
        gauge.set(7);
        let breaker = ClusterBreaker::new(gauge.clone());
        assert_eq!((breaker.in_use(), gauge.get()), (false, 0));
        assert!(!breaker.transition_to(false), "already open");
        assert!(breaker.transition_to(true));
        assert_eq!((breaker.in_use(), gauge.get()), (true, 1));
        assert!(!breaker.transition_to(true), "already closed");
        breaker.record_failure(&"script failed");
        assert_eq!((breaker.in_use(), gauge.get()), (false, 0));
        breaker.record_success();
        assert_eq!((breaker.in_use(), gauge.get()), (true, 1));
    }

    #[test]
    fn racing_reports_leave_the_gauge_equal_to_the_state() {
        for _ in 0..50 {
            let gauge = Gauge::default();
            let breaker = Arc::new(ClusterBreaker::new(gauge.clone()));
            let threads: Vec<_> = (0..4)
                .map(|n| {
                    let breaker = breaker.clone();
                    std::thread::spawn(move || {
                        for i in 0..500 {
                            if (i + n) % 2 == 0 {
                                breaker.transition_to(true);
                            } else {
                                breaker.transition_to(false);
                            }
                        }
                    })
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
            assert_eq!(gauge.get(), i64::from(breaker.in_use()));
        }
    }
}
