//! Latency histograms with fixed buckets, as `usage_minute.latency_histogram` stores them
//! (migration V7), and percentile estimates from them.
//!
//! Fixed buckets because their counts add: a minute's histogram is the element-wise sum of its
//! events', an hour's of its minutes', so metering's upsert and the hourly roll-up stay exact
//! under redelivery just as `request_count` does. The price is resolution: a percentile is
//! only known to lie in one bucket, and [`LatencyHistogram::percentile`] interpolates within
//! it, so the answer is an estimate whose honest bound is that bucket's upper edge.

/// Upper bounds of the buckets in ms, ascending; the same list as the SQL function
/// `tollgate_latency_bounds_ms()` (a test of the control API compares them). Slot `i` counts
/// latencies in `[BOUNDS_MS[i-1], BOUNDS_MS[i])` (0 below the first), and one more slot, the
/// overflow, counts everything from the last bound up.
pub const BOUNDS_MS: [u64; 28] = [
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000,
    5000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000,
];

/// Slots of a histogram: one per bound plus the overflow.
pub const SLOTS: usize = BOUNDS_MS.len() + 1;

/// Why a stored histogram cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistogramError {
    /// The array has the wrong number of slots.
    #[error("a latency histogram has {SLOTS} slots, this one has {0}")]
    WrongLength(usize),
    /// A slot holds a negative count.
    #[error("latency histogram slot {0} holds a negative count")]
    NegativeCount(usize),
}

/// Counts per latency bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: [u64; SLOTS],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self { counts: [0; SLOTS] }
    }
}

/// A percentile as a histogram can tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PercentileEstimate {
    /// Linear interpolation within the bucket holding the percentile, in µs: exact if latencies
    /// are spread evenly inside the bucket. For the overflow bucket, its lower edge.
    pub estimate_us: u64,
    /// The bucket's lower edge in µs: the percentile is at least this.
    pub at_least_us: u64,
    /// The bucket's upper edge in µs: the percentile is below this. `None` in the overflow
    /// bucket (beyond the last bound).
    pub below_us: Option<u64>,
}

impl LatencyHistogram {
    /// The slot a latency in µs falls in.
    pub fn slot_of(latency_us: u64) -> usize {
        // latency_us < 1000 * bound exactly when latency_us / 1000 < bound, as SQL computes it.
        let ms = latency_us / 1000;
        BOUNDS_MS.partition_point(|&bound| bound <= ms)
    }

    /// Counts one latency in µs.
    pub fn record(&mut self, latency_us: u64) {
        let slot = Self::slot_of(latency_us);
        self.counts[slot] = self.counts[slot].saturating_add(1);
    }

    /// Adds another histogram's counts (merging two periods or rows).
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine = mine.saturating_add(theirs);
        }
    }

    /// The counts, one per slot.
    pub fn counts(&self) -> &[u64; SLOTS] {
        &self.counts
    }

    /// Requests counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0, |sum, c| sum.saturating_add(*c))
    }

    /// Reads a stored `int8[]`.
    pub fn from_stored(counts: &[i64]) -> Result<Self, HistogramError> {
        if counts.len() != SLOTS {
            return Err(HistogramError::WrongLength(counts.len()));
        }
        let mut histogram = Self::default();
        for (slot, (&stored, count)) in counts.iter().zip(histogram.counts.iter_mut()).enumerate() {
            *count = u64::try_from(stored).map_err(|_| HistogramError::NegativeCount(slot))?;
        }
        Ok(histogram)
    }

    /// Lower and upper edge of a slot in µs (no upper edge for the overflow).
    pub fn slot_edges_us(slot: usize) -> (u64, Option<u64>) {
        let lower = match slot {
            0 => 0,
            _ => BOUNDS_MS.get(slot - 1).map_or(0, |ms| ms * 1000),
        };
        (lower, BOUNDS_MS.get(slot).map(|ms| ms * 1000))
    }

    /// The `percent`-th percentile (nearest rank: the smallest latency with at least `percent`
    /// % of requests at or below it), estimated within its bucket; `None` without requests or
    /// for a `percent` outside 1–100.
    pub fn percentile(&self, percent: u8) -> Option<PercentileEstimate> {
        if !(1..=100).contains(&percent) {
            return None;
        }
        let total = u128::from(self.total());
        if total == 0 {
            return None;
        }
        // Nearest rank, 1-based: ceil(percent × total / 100), in integers.
        let rank = (u128::from(percent) * total).div_ceil(100);
        let mut before = 0u128;
        for (slot, &count) in self.counts.iter().enumerate() {
            let count = u128::from(count);
            if before + count >= rank {
                let (lower, upper) = Self::slot_edges_us(slot);
                let estimate = match upper {
                    Some(upper) => {
                        let width = u128::from(upper - lower);
                        // rank - before is in 1..=count: the estimate lies in (lower, upper].
                        lower + u64::try_from(width * (rank - before) / count).unwrap_or(0)
                    }
                    None => lower,
                };
                return Some(PercentileEstimate {
                    estimate_us: estimate,
                    at_least_us: lower,
                    below_us: upper,
                });
            }
            before += count;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn of(latencies_us: &[u64]) -> LatencyHistogram {
        let mut h = LatencyHistogram::default();
        for &l in latencies_us {
            h.record(l);
        }
        h
    }

    #[test]
    fn slots_follow_the_bounds_with_inclusive_lower_edges() {
        assert_eq!(LatencyHistogram::slot_of(0), 0);
        assert_eq!(LatencyHistogram::slot_of(999), 0);
        assert_eq!(LatencyHistogram::slot_of(1000), 1);
        assert_eq!(LatencyHistogram::slot_of(599_999_999), SLOTS - 2);
        assert_eq!(LatencyHistogram::slot_of(600_000_000), SLOTS - 1);
        assert_eq!(LatencyHistogram::slot_of(u64::MAX), SLOTS - 1);
    }

    #[test]
    fn p95_of_a_hundred_requests_interpolates_in_its_bucket() {
        // 95 fast requests (0.5 ms) and 5 slow ones (40 ms): the 95th is the last fast one.
        let mut latencies = vec![500; 95];
        latencies.extend([40_000; 5]);
        let p95 = of(&latencies).percentile(95).unwrap();
        assert_eq!(
            p95,
            PercentileEstimate {
                estimate_us: 1000,
                at_least_us: 0,
                below_us: Some(1000)
            }
        );
        // p96 lands among the slow ones: [30 ms, 50 ms), the first of five → 30 + 20/5 ms.
        let p96 = of(&latencies).percentile(96).unwrap();
        assert_eq!(p96.estimate_us, 34_000);
        assert_eq!((p96.at_least_us, p96.below_us), (30_000, Some(50_000)));
    }

    #[test]
    fn no_requests_no_percentile_and_the_overflow_has_no_upper_edge() {
        assert_eq!(LatencyHistogram::default().percentile(95), None);
        assert_eq!(of(&[1]).percentile(0), None);
        assert_eq!(of(&[1]).percentile(101), None);
        let slow = of(&[700_000_000]).percentile(95).unwrap();
        assert_eq!(slow.estimate_us, 600_000_000);
        assert_eq!(slow.below_us, None);
    }

    #[test]
    fn stored_arrays_of_the_wrong_shape_are_refused() {
        assert_eq!(
            LatencyHistogram::from_stored(&[0; 3]),
            Err(HistogramError::WrongLength(3))
        );
        let mut stored = [0i64; SLOTS];
        stored[4] = -1;
        assert_eq!(
            LatencyHistogram::from_stored(&stored),
            Err(HistogramError::NegativeCount(4))
        );
        stored[4] = 7;
        assert_eq!(LatencyHistogram::from_stored(&stored).unwrap().total(), 7);
    }

    proptest! {
        #[test]
        fn the_true_percentile_lies_in_the_bucket_the_estimate_names(
            latencies in prop::collection::vec(0u64..700_000_000, 1..300),
            percent in 1u8..=100,
        ) {
            let mut sorted = latencies.clone();
            sorted.sort_unstable();
            let rank = (usize::from(percent) * sorted.len()).div_ceil(100);
            let exact = sorted[rank - 1];
            let p = of(&latencies).percentile(percent).unwrap();
            prop_assert!(p.at_least_us <= exact);
            prop_assert!(p.below_us.is_none_or(|below| exact < below));
            prop_assert!(p.at_least_us <= p.estimate_us);
            prop_assert!(p.below_us.is_none_or(|below| p.estimate_us <= below));
        }

        #[test]
        fn merging_is_recording_everything_in_one(
            a in prop::collection::vec(0u64..700_000_000, 0..100),
            b in prop::collection::vec(0u64..700_000_000, 0..100),
        ) {
            let mut merged = of(&a);
            merged.merge(&of(&b));
            let all: Vec<u64> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(merged, of(&all));
        }

        #[test]
        fn percentiles_do_not_decrease(
            latencies in prop::collection::vec(0u64..700_000_000, 1..200),
            p in 1u8..100,
        ) {
            let h = of(&latencies);
            let (lo, hi) = (h.percentile(p).unwrap(), h.percentile(p + 1).unwrap());
            prop_assert!(lo.estimate_us <= hi.estimate_us);
        }
    }
}
