//! Passive upstream health: an upstream that refused or timed out a connection is skipped for
//! a while by every route that uses it, so one dead member of a pool costs one failed
//! connection per cool-down, not one per request. When every member is down, the pool is used
//! anyway (better a failed attempt than a certain 502).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use parking_lot::RwLock;

use crate::limits::monotonic_nanos;

/// How long a failed upstream is skipped.
pub const COOL_DOWN: Duration = Duration::from_secs(10);

/// Upstreams known to be failing, and until when.
#[derive(Debug, Default)]
pub struct UpstreamHealth {
    down_until: RwLock<HashMap<SocketAddr, u64>>,
}

impl UpstreamHealth {
    /// Records a failed connection to `addr`.
    pub fn mark_down(&self, addr: SocketAddr) {
        let until = monotonic_nanos()
            .saturating_add(u64::try_from(COOL_DOWN.as_nanos()).unwrap_or(u64::MAX));
        self.down_until.write().insert(addr, until);
    }

    /// Picks from `pool`, starting at `start`, the first member not cooling down; `start`'s
    /// member when all are.
    pub fn pick(&self, pool: &[SocketAddr], start: usize) -> Option<SocketAddr> {
        self.pick_index(pool, start)
            .and_then(|i| pool.get(i).copied())
    }

    /// As [`Self::pick`], the member's index.
    pub fn pick_index(&self, pool: &[SocketAddr], start: usize) -> Option<usize> {
        if pool.is_empty() {
            return None;
        }
        let first = start % pool.len();
        let down = self.down_until.read();
        if down.is_empty() || pool.len() == 1 {
            return Some(first);
        }
        let now = monotonic_nanos();
        let healthy = |addr: &SocketAddr| down.get(addr).is_none_or(|until| *until <= now);
        Some(
            (0..pool.len())
                .map(|i| (start + i) % pool.len())
                .find(|&i| pool.get(i).is_some_and(healthy))
                .unwrap_or(first),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_member_is_skipped_and_a_dead_pool_is_still_tried() {
        let (a, b) = (
            SocketAddr::from(([127, 0, 0, 1], 1)),
            SocketAddr::from(([127, 0, 0, 1], 2)),
        );
        let health = UpstreamHealth::default();
        assert_eq!(health.pick(&[a, b], 0), Some(a));
        health.mark_down(a);
        assert_eq!(health.pick(&[a, b], 0), Some(b));
        assert_eq!(health.pick(&[a, b], 1), Some(b));
        health.mark_down(b);
        assert_eq!(health.pick(&[a, b], 0), Some(a));
        assert_eq!(health.pick(&[], 0), None);
    }
}
