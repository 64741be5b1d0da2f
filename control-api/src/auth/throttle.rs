//! Login throttling per account and per client IP, in memory.
//!
//! Per account only failures count (a user who finally types the right password is not
//! locked out by their own success); per IP every attempt counts, which bounds password
//! spraying across accounts. Each replica throttles on its own, which multiplies the budget by
//! the replica count: acceptable for a control plane with a handful of replicas.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::ThrottlePolicy;

/// Entries kept before expired windows are swept.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

/// Counts login attempts and tells when a caller must wait.
#[derive(Debug)]
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    accounts: Mutex<HashMap<String, Window>>,
    ips: Mutex<HashMap<String, Window>>,
}

impl LoginThrottle {
    /// A throttle with `policy` and no history.
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            accounts: Mutex::new(HashMap::new()),
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
        let accounts = self.accounts.lock();
        let account_wait = accounts.get(account).and_then(|w| {
            let end = w.started + self.policy.account_window;
            (w.count >= self.policy.account_failures && end > now).then(|| end - now)
        });
        ip_wait.into_iter().chain(account_wait).max()
    }

    /// Records a failed attempt for `account`.
    pub fn record_failure(&self, account: &str) {
        let mut accounts = self.accounts.lock();
        // The count saturates at the limit; `check` decides, so the result is not needed here.
        let _ = bump(
            &mut accounts,
            account,
            Instant::now(),
            self.policy.account_window,
            u32::MAX,
        );
    }

    /// Clears `account`'s failures after a successful login.
    pub fn record_success(&self, account: &str) {
        self.accounts.lock().remove(account);
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
            account_failures: 2,
            account_window: Duration::from_secs(60),
            ip_attempts: 5,
            ip_window: Duration::from_secs(60),
        }
    }

    #[test]
    fn an_account_locks_after_its_failures_and_a_success_clears_them() {
        let throttle = LoginThrottle::new(policy());
        assert!(throttle.check("a@x", "ip1").is_none());
        throttle.record_failure("a@x");
        assert!(throttle.check("a@x", "ip2").is_none());
        throttle.record_failure("a@x");
        let wait = throttle.check("a@x", "ip3").unwrap();
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(55));
        assert!(
            throttle.check("b@x", "ip3").is_none(),
            "other accounts are unaffected"
        );
        throttle.record_success("a@x");
        assert!(throttle.check("a@x", "ip4").is_none());
    }

    #[test]
    fn an_ip_is_limited_across_accounts() {
        let throttle = LoginThrottle::new(policy());
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
