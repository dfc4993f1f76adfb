//! Counters shared by the loop thread and its readers, and the STATUS= text.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::histogram::{Histogram, Snapshot};

/// Counters written by the loop thread (single writer) and read with Relaxed
/// loads by the main and watchdog threads.
#[derive(Default)]
pub struct LoopStats {
    /// Completed cycles. The watchdog treats an unchanged value as a stall.
    pub cycles: AtomicU64,
    /// Cycles whose work ended after the next deadline.
    pub overruns: AtomicU64,
    /// Deadlines skipped after overruns.
    pub missed_cycles: AtomicU64,
    /// Current number of consecutive overruns (0 after an on-time cycle).
    pub overrun_streak: AtomicU64,
    /// Wakeup latency (actual wakeup minus deadline) per cycle.
    pub latency: Histogram,
    /// Log records dropped because the ring was full.
    pub log_dropped: Arc<AtomicU64>,
    /// Set when SCHED_FIFO, affinity or mlockall failed under --rt-policy degraded.
    pub degraded: AtomicBool,
}

/// One STATUS= publication. All latencies are in whole microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    pub cycles: u64,
    pub overruns: u64,
    pub lat_min_us: u64,
    pub lat_avg_us: u64,
    pub lat_p99_us: u64,
    pub lat_max_us: u64,
    pub win_lat_p99_us: u64,
    pub win_lat_max_us: u64,
    pub log_dropped: u64,
    pub degraded: bool,
}

impl fmt::Display for Status {
    /// Formats the STATUS= text. The MXRC exporter parses these key names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cycles={} overruns={} lat_min_us={} lat_avg_us={} lat_p99_us={} \
             lat_max_us={} win_lat_p99_us={} win_lat_max_us={} log_dropped={} degraded={}",
            self.cycles,
            self.overruns,
            self.lat_min_us,
            self.lat_avg_us,
            self.lat_p99_us,
            self.lat_max_us,
            self.win_lat_p99_us,
            self.win_lat_max_us,
            self.log_dropped,
            u8::from(self.degraded),
        )
    }
}

/// Turns the shared counters into [`Status`] values, one per window.
///
/// A window is the time between two calls of [`StatusReader::next_window`];
/// window figures are deltas of the cumulative histogram.
pub struct StatusReader {
    previous: Snapshot,
    current: Snapshot,
    window: Snapshot,
}

impl Default for StatusReader {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusReader {
    /// Allocates the snapshot buffers once; later calls reuse them.
    pub fn new() -> Self {
        Self {
            previous: Snapshot::default(),
            current: Snapshot::default(),
            window: Snapshot::default(),
        }
    }

    /// Reads the counters, closes the current window and returns the status.
    pub fn next_window(&mut self, stats: &LoopStats) -> Status {
        stats.latency.snapshot_into(&mut self.current);
        let window_max_ns = stats.latency.take_window_max();
        self.window.set_delta(&self.current, &self.previous);
        if self.window.count > 0 && window_max_ns > 0 {
            // The exact window maximum is tighter than the delta's bucket bound.
            self.window.max_ns = window_max_ns;
        }
        let status = Status {
            cycles: stats.cycles.load(Relaxed),
            overruns: stats.overruns.load(Relaxed),
            lat_min_us: self.current.min() / 1000,
            lat_avg_us: self.current.mean() / 1000,
            lat_p99_us: self.current.quantile(0.99) / 1000,
            lat_max_us: self.current.max_ns / 1000,
            win_lat_p99_us: self.window.quantile(0.99) / 1000,
            win_lat_max_us: window_max_ns / 1000,
            log_dropped: stats.log_dropped.load(Relaxed),
            degraded: stats.degraded.load(Relaxed),
        };
        std::mem::swap(&mut self.previous, &mut self.current);
        status
    }

    /// Number of samples in the window closed by the last `next_window` call.
    pub fn window_samples(&self) -> u64 {
        self.window.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_has_exporter_keys_in_order() {
        let status = Status {
            cycles: 12000,
            overruns: 3,
            lat_min_us: 1,
            lat_avg_us: 4,
            lat_p99_us: 9,
            lat_max_us: 57,
            win_lat_p99_us: 8,
            win_lat_max_us: 20,
            log_dropped: 0,
            degraded: true,
        };
        assert_eq!(
            status.to_string(),
            "cycles=12000 overruns=3 lat_min_us=1 lat_avg_us=4 lat_p99_us=9 lat_max_us=57 \
             win_lat_p99_us=8 win_lat_max_us=20 log_dropped=0 degraded=1"
        );
    }

    #[test]
    fn status_text_of_fresh_stats_is_all_zero() {
        let stats = LoopStats::default();
        let text = StatusReader::new().next_window(&stats).to_string();
        assert_eq!(
            text,
            "cycles=0 overruns=0 lat_min_us=0 lat_avg_us=0 lat_p99_us=0 lat_max_us=0 \
             win_lat_p99_us=0 win_lat_max_us=0 log_dropped=0 degraded=0"
        );
    }

    #[test]
    fn status_text_values_are_integers() {
        let stats = LoopStats::default();
        stats.latency.record(2_999);
        let text = StatusReader::new().next_window(&stats).to_string();
        for pair in text.split(' ') {
            let (key, value) = pair.split_once('=').unwrap();
            assert!(value.parse::<u64>().is_ok(), "{key}={value}");
        }
    }

    #[test]
    fn second_window_covers_only_new_samples() {
        let stats = LoopStats::default();
        let mut reader = StatusReader::new();
        for _ in 0..100 {
            stats.latency.record(100_000);
        }
        let first = reader.next_window(&stats);
        assert_eq!(first.win_lat_p99_us, 100);
        assert_eq!(first.win_lat_max_us, 100);

        for _ in 0..100 {
            stats.latency.record(5_000);
        }
        let second = reader.next_window(&stats);
        assert_eq!(reader.window_samples(), 100);
        assert_eq!(second.win_lat_p99_us, 5);
        assert_eq!(second.win_lat_max_us, 5);
        assert_eq!(second.lat_max_us, 100);
        assert_eq!(second.lat_min_us, 5);
    }
}
