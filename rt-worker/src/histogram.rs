//! Fixed-size log-linear latency histogram with one writer and lock-free readers.
//!
//! Buckets are 1 µs wide from 0 to 1024 µs. From 1024 µs up to 2^20 µs
//! (about 1.05 s) each power-of-two range is split into 64 equal buckets, so a
//! bucket is at most 1/64 (1.6 %) of its lower bound wide. Larger values land
//! in one overflow bucket. Exact minimum, maximum and sum are kept beside the
//! buckets.
//!
//! The writer (the loop thread) updates counters with Relaxed load and store,
//! which is correct only with a single writer. Readers load with Relaxed, so a
//! snapshot may mix values of adjacent cycles; counts never go backwards.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const LINEAR_BUCKETS: usize = 1024;
const SUB_BUCKET_BITS: u32 = 6;
const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;
/// log2 of the first value (in µs) past the linear range.
const FIRST_EXPONENT: u32 = 10;
/// log2 of the first value (in µs) that goes to the overflow bucket.
const OVERFLOW_EXPONENT: u32 = 20;
const OVERFLOW_INDEX: usize =
    LINEAR_BUCKETS + (OVERFLOW_EXPONENT - FIRST_EXPONENT) as usize * SUB_BUCKETS;

/// Number of buckets, including the overflow bucket.
pub const BUCKETS: usize = OVERFLOW_INDEX + 1;

/// Returns the bucket index of a latency in nanoseconds.
pub fn bucket_index(ns: u64) -> usize {
    let us = ns / 1000;
    if us < LINEAR_BUCKETS as u64 {
        return us as usize;
    }
    let exponent = 63 - us.leading_zeros();
    if exponent >= OVERFLOW_EXPONENT {
        return OVERFLOW_INDEX;
    }
    let sub = (us >> (exponent - SUB_BUCKET_BITS)) as usize & (SUB_BUCKETS - 1);
    LINEAR_BUCKETS + (exponent - FIRST_EXPONENT) as usize * SUB_BUCKETS + sub
}

/// Returns the lower bound of a bucket in nanoseconds.
pub fn bucket_lower_ns(index: usize) -> u64 {
    if index < LINEAR_BUCKETS {
        return index as u64 * 1000;
    }
    if index >= OVERFLOW_INDEX {
        return (1u64 << OVERFLOW_EXPONENT) * 1000;
    }
    let offset = index - LINEAR_BUCKETS;
    let exponent = FIRST_EXPONENT + (offset / SUB_BUCKETS) as u32;
    let sub = (offset % SUB_BUCKETS) as u64;
    ((SUB_BUCKETS as u64 + sub) << (exponent - SUB_BUCKET_BITS)) * 1000
}

/// Returns the exclusive upper bound of a bucket in nanoseconds
/// (`u64::MAX` for the overflow bucket).
pub fn bucket_upper_ns(index: usize) -> u64 {
    if index >= OVERFLOW_INDEX {
        u64::MAX
    } else {
        bucket_lower_ns(index + 1)
    }
}

/// Cumulative latency histogram written by one thread.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_ns: AtomicU64,
    min_ns: AtomicU64,
    max_ns: AtomicU64,
    /// Maximum since the last [`Histogram::take_window_max`].
    window_max_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// Allocates the histogram and writes every counter once, so that all its
    /// pages are resident before mlockall.
    pub fn new() -> Self {
        let buckets: Box<[AtomicU64]> = (0..BUCKETS).map(|_| AtomicU64::new(0)).collect();
        for bucket in buckets.iter() {
            bucket.store(0, Relaxed);
        }
        Self {
            buckets,
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            min_ns: AtomicU64::new(u64::MAX),
            max_ns: AtomicU64::new(0),
            window_max_ns: AtomicU64::new(0),
        }
    }

    /// Adds one latency sample. Only one thread may call this.
    ///
    /// Uses plain loads and stores, except `fetch_max` on the window maximum,
    /// which a reader resets concurrently. Neither allocates nor blocks.
    #[inline]
    pub fn record(&self, ns: u64) {
        let bucket = &self.buckets[bucket_index(ns)];
        bucket.store(bucket.load(Relaxed) + 1, Relaxed);
        self.sum_ns
            .store(self.sum_ns.load(Relaxed).saturating_add(ns), Relaxed);
        if ns < self.min_ns.load(Relaxed) {
            self.min_ns.store(ns, Relaxed);
        }
        if ns > self.max_ns.load(Relaxed) {
            self.max_ns.store(ns, Relaxed);
        }
        if ns > self.window_max_ns.load(Relaxed) {
            self.window_max_ns.fetch_max(ns, Relaxed);
        }
        // With Relaxed stores a reader may load a count that is out of step
        // with the buckets by a sample, so quantiles use the bucket sum.
        self.count.store(self.count.load(Relaxed) + 1, Relaxed);
    }

    /// Copies the cumulative counters into `out`, reusing its storage.
    pub fn snapshot_into(&self, out: &mut Snapshot) {
        for (dst, src) in out.buckets.iter_mut().zip(self.buckets.iter()) {
            *dst = src.load(Relaxed);
        }
        out.count = self.count.load(Relaxed);
        out.sum_ns = self.sum_ns.load(Relaxed);
        out.min_ns = self.min_ns.load(Relaxed);
        out.max_ns = self.max_ns.load(Relaxed);
    }

    /// Returns the maximum since the previous call and starts a new window.
    pub fn take_window_max(&self) -> u64 {
        self.window_max_ns.swap(0, Relaxed)
    }
}

/// Plain copy of the histogram counters, for computing statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub buckets: Box<[u64]>,
    pub count: u64,
    pub sum_ns: u64,
    /// `u64::MAX` while empty.
    pub min_ns: u64,
    pub max_ns: u64,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            buckets: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            sum_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
        }
    }
}

impl Snapshot {
    /// Stores `current - previous` bucket by bucket into `self`: the samples
    /// recorded between the two snapshots. Min and max are not derivable
    /// from deltas and are set from the bucket bounds of the delta.
    pub fn set_delta(&mut self, current: &Snapshot, previous: &Snapshot) {
        for ((dst, cur), prev) in self
            .buckets
            .iter_mut()
            .zip(current.buckets.iter())
            .zip(previous.buckets.iter())
        {
            *dst = cur.saturating_sub(*prev);
        }
        self.count = self.buckets.iter().sum();
        self.sum_ns = current.sum_ns.saturating_sub(previous.sum_ns);
        let first = self.buckets.iter().position(|&n| n > 0);
        let last = self.buckets.iter().rposition(|&n| n > 0);
        self.min_ns = first.map_or(u64::MAX, bucket_lower_ns);
        self.max_ns = last.map_or(0, |i| bucket_upper_ns(i).min(current.max_ns));
    }

    /// Returns the smallest sample, or 0 when empty.
    pub fn min(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.min_ns
        }
    }

    /// Returns the mean sample, or 0 when empty.
    pub fn mean(&self) -> u64 {
        self.sum_ns.checked_div(self.count).unwrap_or(0)
    }

    /// Returns an upper estimate of the `q` quantile (0 < q <= 1) in ns: the
    /// upper bound of the bucket that contains the sample of rank ceil(q * count),
    /// capped at the recorded maximum. Returns 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (index, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_upper_ns(index).min(self.max_ns);
            }
        }
        self.max_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(h: &Histogram) -> Snapshot {
        let mut s = Snapshot::default();
        h.snapshot_into(&mut s);
        s
    }

    #[test]
    fn bucket_boundaries_linear_range() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(999), 0);
        assert_eq!(bucket_index(1000), 1);
        assert_eq!(bucket_index(1_023_999), 1023);
        assert_eq!(bucket_lower_ns(1023), 1_023_000);
        assert_eq!(bucket_upper_ns(1023), 1_024_000);
    }

    #[test]
    fn bucket_boundaries_log_range() {
        // 1024..2048 µs is split into 64 buckets of 16 µs.
        assert_eq!(bucket_index(1_024_000), 1024);
        assert_eq!(bucket_index(1_039_999), 1024);
        assert_eq!(bucket_index(1_040_000), 1025);
        assert_eq!(bucket_lower_ns(1025), 1_040_000);
        // 2048..4096 µs uses 32 µs buckets.
        assert_eq!(bucket_index(2_048_000), 1024 + 64);
        assert_eq!(bucket_upper_ns(1024 + 64), 2_080_000);
    }

    #[test]
    fn bucket_bounds_contain_their_values() {
        let mut ns = 0;
        while ns < 2_000_000_000 {
            let i = bucket_index(ns);
            assert!(
                bucket_lower_ns(i) <= ns && ns < bucket_upper_ns(i),
                "ns={ns} i={i}"
            );
            ns = ns * 5 / 4 + 777;
        }
    }

    #[test]
    fn bucket_width_at_most_one_64th() {
        for i in LINEAR_BUCKETS..OVERFLOW_INDEX {
            let width = bucket_upper_ns(i) - bucket_lower_ns(i);
            assert!(width * 64 <= bucket_lower_ns(i), "bucket {i}");
        }
    }

    #[test]
    fn overflow_bucket_takes_over_one_second() {
        assert_eq!(bucket_index(1_048_576_000), OVERFLOW_INDEX);
        assert_eq!(bucket_index(u64::MAX), OVERFLOW_INDEX);
        assert_eq!(bucket_index(1_048_575_999), OVERFLOW_INDEX - 1);
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let s = snapshot(&Histogram::new());
        assert_eq!(s.min(), 0);
        assert_eq!(s.mean(), 0);
        assert_eq!(s.quantile(0.99), 0);
        assert_eq!(s.max_ns, 0);
    }

    #[test]
    fn min_max_avg_are_exact() {
        let h = Histogram::new();
        for ns in [3_500, 10_250, 1_500_000, 7_000] {
            h.record(ns);
        }
        let s = snapshot(&h);
        assert_eq!(s.count, 4);
        assert_eq!(s.min(), 3_500);
        assert_eq!(s.max_ns, 1_500_000);
        assert_eq!(s.mean(), (3_500 + 10_250 + 1_500_000 + 7_000) / 4);
    }

    #[test]
    fn p99_with_outliers_below_one_percent() {
        let h = Histogram::new();
        for _ in 0..990 {
            h.record(10_200);
        }
        for _ in 0..10 {
            h.record(500_000);
        }
        // Rank 990 is the last 10 µs sample; the bucket is [10, 11) µs.
        assert_eq!(snapshot(&h).quantile(0.99), 11_000);
    }

    #[test]
    fn p99_with_outliers_above_one_percent() {
        let h = Histogram::new();
        for _ in 0..989 {
            h.record(10_200);
        }
        for _ in 0..11 {
            h.record(500_300);
        }
        // Capped at the recorded maximum inside the [500, 501) µs bucket.
        assert_eq!(snapshot(&h).quantile(0.99), 500_300);
    }

    #[test]
    fn p99_of_uniform_distribution() {
        let h = Histogram::new();
        for us in 0..1000u64 {
            h.record(us * 1000 + 500);
        }
        // Rank 990 is 989.5 µs, in the [989, 990) µs bucket.
        assert_eq!(snapshot(&h).quantile(0.99), 990_000);
        assert_eq!(snapshot(&h).quantile(0.5), 500_000);
    }

    #[test]
    fn window_delta_counts_only_new_samples() {
        let h = Histogram::new();
        for _ in 0..100 {
            h.record(5_000);
        }
        let before = snapshot(&h);
        for _ in 0..50 {
            h.record(40_000);
        }
        let after = snapshot(&h);
        let mut window = Snapshot::default();
        window.set_delta(&after, &before);
        assert_eq!(window.count, 50);
        assert_eq!(window.sum_ns, 50 * 40_000);
        assert_eq!(window.min(), 40_000);
        assert_eq!(window.quantile(0.99), 40_000);
        assert_eq!(after.count, 150);
        assert_eq!(after.quantile(0.5), 6_000);
    }

    #[test]
    fn window_delta_empty_when_no_new_samples() {
        let h = Histogram::new();
        h.record(5_000);
        let s = snapshot(&h);
        let mut window = Snapshot::default();
        window.set_delta(&s, &s);
        assert_eq!(window.count, 0);
        assert_eq!(window.quantile(0.99), 0);
        assert_eq!(window.max_ns, 0);
    }

    #[test]
    fn window_max_resets_on_take() {
        let h = Histogram::new();
        h.record(70_000);
        h.record(20_000);
        assert_eq!(h.take_window_max(), 70_000);
        h.record(30_000);
        assert_eq!(h.take_window_max(), 30_000);
        assert_eq!(h.take_window_max(), 0);
    }
}
