//! Login throttling per (account, client address) pair and per client address, in memory.
//!
//! A pair's failures slow that pair down (waits doubling up to a cap) instead of locking the
//! account: five wrong passwords from an attacker's address leave the owner, at theirs, free
//! to log in. Success clears the pair. Per address every attempt counts, whatever the
//! account, which bounds password spraying. Each replica throttles on its own, which
//! multiplies the budget by the replica count: acceptable for a control plane with a handful
//! of replicas.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::ThrottlePolicy;

/// Entries kept before expired ones are swept.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Counts login attempts and tells when a caller must wait.
#[derive(Debug)]
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    pairs: Mutex<HashMap<(String, String), Failures>>,
    ips: Mutex<HashMap<String, Window>>,
}

impl LoginThrottle {
    /// A throttle with `policy` and no history.
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            pairs: Mutex::new(HashMap::new()),
            ips: Mutex::new(HashMap::new()),
        }
    }

    /// Records an attempt from `ip` for `account` (a lower-cased email) and returns how long
    /// the caller must wait if it is over a limit.
    pub fn check(&self, account: &str, ip: &str) -> Option<Duration> {
        let now = Instant::now();
        let ip_wait = bump(
            &mut self.ips.lock(),
            ip,
            now,
            self.policy.ip_window,
            self.policy.ip_attempts,
        );
        let pairs = self.pairs.lock();
        let pair_wait = pairs
            .get(&(account.to_owned(), ip.to_owned()))
            .and_then(|failures| {
                let until = failures.last + self.delay_after(failures.count);
                (until > now).then(|| until - now)
            });
        ip_wait.into_iter().chain(pair_wait).max()
    }

    /// Records a failed attempt from `ip` for `account`.
    pub fn record_failure(&self, account: &str, ip: &str) {
        let now = Instant::now();
        let memory = self.policy.pair_memory;
        let mut pairs = self.pairs.lock();
        if pairs.len() > SWEEP_ABOVE {
            pairs.retain(|_, f| f.last + memory > now);
        }
        let failures = pairs
            .entry((account.to_owned(), ip.to_owned()))
            .or_insert(Failures {
                count: 0,
                last: now,
            });
        if failures.last + memory <= now {
            failures.count = 0;
        }
        failures.count = failures.count.saturating_add(1);
        failures.last = now;
    }

    /// Clears the pair's failures after a successful login.
    pub fn record_success(&self, account: &str, ip: &str) {
        self.pairs
            .lock()
            .remove(&(account.to_owned(), ip.to_owned()));
    }

    /// The wait after the `failures`-th failure of a pair: none within the free failures,
    /// then the base delay doubling per failure, up to the cap.
    fn delay_after(&self, failures: u32) -> Duration {
        let Some(over) = failures.checked_sub(self.policy.pair_free_failures) else {
            return Duration::ZERO;
        };
        let factor = 1u32.checked_shl(over).unwrap_or(u32::MAX);
        self.policy
            .pair_base_delay
            .saturating_mul(factor)
            .min(self.policy.pair_max_delay)
    }
}

/// Counts one event for `key` and returns the wait if the window already holds `limit`.
fn bump(
    map: &mut HashMap<String, Window>,
    key: &str,
    now: Instant,
    window: Duration,
    limit: u32,
) -> Option<Duration> {
    if map.len() > SWEEP_ABOVE {
        map.retain(|_, w| w.started + window > now);
    }
    let entry = map.entry(key.to_owned()).or_insert(Window {
        started: now,
        count: 0,
    });
    if entry.started + window <= now {
        *entry = Window {
            started: now,
            count: 0,
        };
    }
    if entry.count >= limit {
        return Some(entry.started + window - now);
    }
    entry.count = entry.count.saturating_add(1);
    None
}

/// Whole seconds to put in `Retry-After`, rounded up and at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs();
    if wait.subsec_nanos() > 0 || secs == 0 {
        secs + 1
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ThrottlePolicy {
        ThrottlePolicy {
            pair_free_failures: 2,
            pair_base_delay: Duration::from_secs(10),
            pair_max_delay: Duration::from_secs(35),
            pair_memory: Duration::from_secs(600),
            ip_attempts: 50,
            ip_window: Duration::from_secs(60),
        }
    }

    #[test]
    fn failures_slow_down_their_own_pair_only_and_a_success_clears_them() {
        let throttle = LoginThrottle::new(policy());
        for _ in 0..2 {
            assert!(throttle.check("a@x", "attacker").is_none());
            throttle.record_failure("a@x", "attacker");
        }
        // Past the free failures the pair waits the base delay...
        let wait = throttle.check("a@x", "attacker").unwrap();
        assert!(wait <= Duration::from_secs(10) && wait > Duration::from_secs(5));
        // ...while the owner at another address, and other accounts, are not slowed at all.
        assert!(throttle.check("a@x", "owner").is_none());
        assert!(throttle.check("b@x", "attacker").is_none());
        throttle.record_success("a@x", "attacker");
        assert!(throttle.check("a@x", "attacker").is_none());
    }

    #[test]
    fn waits_double_per_failure_up_to_the_cap() {
        let throttle = LoginThrottle::new(policy());
        let delays: Vec<u64> = (0..7).map(|n| throttle.delay_after(n).as_secs()).collect();
        assert_eq!(delays, [0, 0, 10, 20, 35, 35, 35]);
        assert_eq!(throttle.delay_after(u32::MAX), Duration::from_secs(35));
    }

    #[test]
    fn an_ip_is_limited_across_accounts() {
        let throttle = LoginThrottle::new(ThrottlePolicy {
            ip_attempts: 5,
            ..policy()
        });
        for n in 0..5 {
            assert!(throttle.check(&format!("u{n}@x"), "ip").is_none());
        }
        assert!(throttle.check("u9@x", "ip").is_some());
        assert!(throttle.check("u9@x", "other-ip").is_none());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }
}
