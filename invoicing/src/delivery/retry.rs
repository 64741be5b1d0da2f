//! Retries with capped exponential backoff and jitter, shared by every external call.
//!
//! Jitter spreads the retries of concurrent jobs (two `monthly` processes hitting the same
//! rate limit must not retry in lockstep); the cap bounds how long one step can stall.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

/// How often and how patiently a call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles for each later one.
    pub base_delay: Duration,
    /// Longest delay between two attempts, also for a server's `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt `attempt` (1-based): `base · 2^(attempt-1)`, capped,
    /// then "equal jitter" (uniform in the upper half), so it never collapses to zero.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let full = self
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let half = full / 2;
        let jitter_range = u64::try_from(half.as_micros()).unwrap_or(u64::MAX);
        let jitter = if jitter_range == 0 {
            0
        } else {
            random_u64() % (jitter_range + 1)
        };
        half + Duration::from_micros(jitter)
    }

    /// The delay a server asked for (`Retry-After` in seconds), within the cap.
    pub fn server_delay(&self, retry_after: Duration) -> Duration {
        retry_after.min(self.max_delay)
    }
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // The system RNG does not fail on Linux; without it the delay is simply unjittered.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        return 0;
    }
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_stay_within_the_cap_and_keep_half_of_it() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let first = policy.delay_after(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.delay_after(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = policy.delay_after(30);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_secs(1));
        }
        assert_eq!(
            policy.server_delay(Duration::from_secs(60)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn jitter_varies() {
        let policy = RetryPolicy::default();
        let delays: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| policy.delay_after(4)).collect();
        assert!(delays.len() > 1, "{delays:?}");
    }
}
