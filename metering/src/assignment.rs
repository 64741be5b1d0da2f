//! Whether this consumer has work: the partitions the group assigned to it, against the
//! partitions the topic has.
//!
//! A consumer that has held no partition for longer than a grace period while the topic has
//! some is *stranded*: usage is piling up unread (a broker that never expired a dead member
//! did exactly that, issue 11). `/ready` then answers 503 with the reason, so an operator and
//! an alert on `metering_assigned_partitions` see it. The grace covers ordinary rebalances,
//! which leave a member without partitions for up to about a session timeout.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The consumer's assignment as the rebalance callbacks and metadata polls report it.
#[derive(Debug)]
pub struct PartitionAssignment {
    assigned: AtomicUsize,
    /// Partitions of the topic, or -1 while unknown.
    topic_partitions: AtomicI64,
    /// Since when nothing has been assigned (`None` while partitions are assigned).
    empty_since: Mutex<Option<Instant>>,
    grace: Duration,
}

impl PartitionAssignment {
    /// Nothing assigned yet, counting from now; stranded after `grace`.
    pub fn new(grace: Duration) -> Self {
        Self {
            assigned: AtomicUsize::new(0),
            topic_partitions: AtomicI64::new(-1),
            empty_since: Mutex::new(Some(Instant::now())),
            grace,
        }
    }

    /// Records the partitions assigned after a rebalance.
    pub fn set_assigned(&self, partitions: usize) {
        self.set_assigned_at(partitions, Instant::now());
    }

    fn set_assigned_at(&self, partitions: usize, now: Instant) {
        self.assigned.store(partitions, Ordering::Relaxed);
        if let Ok(mut since) = self.empty_since.lock() {
            match (partitions, *since) {
                (0, None) => *since = Some(now),
                (0, Some(_)) => {}
                (_, _) => *since = None,
            }
        }
    }

    /// Records how many partitions the topic has.
    pub fn set_topic_partitions(&self, partitions: usize) {
        self.topic_partitions.store(
            i64::try_from(partitions).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Partitions assigned now.
    pub fn assigned(&self) -> usize {
        self.assigned.load(Ordering::Relaxed)
    }

    /// Partitions of the topic, if known.
    pub fn topic_partitions(&self) -> Option<usize> {
        usize::try_from(self.topic_partitions.load(Ordering::Relaxed)).ok()
    }

    /// Why this consumer counts as stranded, if it does.
    pub fn stranded(&self) -> Option<String> {
        self.stranded_at(Instant::now())
    }

    fn stranded_at(&self, now: Instant) -> Option<String> {
        let topic = self.topic_partitions().filter(|&n| n > 0)?;
        let since = (*self.empty_since.lock().ok()?)?;
        let empty_for = now.saturating_duration_since(since);
        (empty_for > self.grace).then(|| {
            format!(
                "no partitions assigned for {} s while the topic has {topic}",
                empty_for.as_secs()
            )
        })
    }
}

impl Default for PartitionAssignment {
    /// A grace of one minute.
    fn default() -> Self {
        Self::new(Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(30);

    #[test]
    fn stranded_only_after_the_grace_and_only_when_the_topic_has_partitions() {
        let start = Instant::now();
        let assignment = PartitionAssignment::new(GRACE);
        let later = start + GRACE + Duration::from_secs(1);
        // The topic's size is unknown: no verdict.
        assert_eq!(assignment.stranded_at(later), None);
        assignment.set_topic_partitions(0);
        assert_eq!(assignment.stranded_at(later), None);
        assignment.set_topic_partitions(6);
        assert_eq!(assignment.stranded_at(start), None);
        let reason = assignment.stranded_at(later).unwrap();
        assert!(reason.contains("while the topic has 6"), "{reason}");
    }

    #[test]
    fn an_assignment_clears_the_verdict_and_losing_it_restarts_the_clock() {
        let start = Instant::now();
        let assignment = PartitionAssignment::new(GRACE);
        assignment.set_topic_partitions(6);
        assignment.set_assigned_at(3, start + Duration::from_secs(1));
        assert_eq!(assignment.assigned(), 3);
        assert_eq!(assignment.stranded_at(start + GRACE * 3), None);

        let revoked = start + GRACE * 3;
        assignment.set_assigned_at(0, revoked);
        // A second empty assignment does not restart the clock.
        assignment.set_assigned_at(0, revoked + GRACE / 2);
        assert_eq!(assignment.stranded_at(revoked + GRACE / 2), None);
        assert!(
            assignment
                .stranded_at(revoked + GRACE + Duration::from_secs(1))
                .is_some()
        );
    }
}
