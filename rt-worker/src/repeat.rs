//! Counting of repeated errors: a failure that recurs is logged in full once,
//! then counted and summarised at most once per interval.

use std::time::{Duration, Instant};

/// Time between two summaries of the same repeated error.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// Logging decision for one occurrence of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// First occurrence since the last success: log it in full.
    First,
    /// Counted only, because a summary is not due yet.
    Suppressed,
    /// Log a summary of `count` occurrences (this one included) since the
    /// last report, which was `elapsed` ago.
    Summary { count: u64, elapsed: Duration },
}

/// Counter for one kind of repeated error.
#[derive(Debug, Clone)]
pub struct RepeatCounter {
    interval: Duration,
    /// Occurrences not yet reported in a log record.
    unreported: u64,
    /// Occurrences since the last success, reported or not.
    total: u64,
    last_report: Option<Instant>,
}

impl Default for RepeatCounter {
    fn default() -> Self {
        Self::new(SUMMARY_INTERVAL)
    }
}

impl RepeatCounter {
    /// Creates a counter that allows one summary per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            unreported: 0,
            total: 0,
            last_report: None,
        }
    }

    /// Counts one occurrence at `now` and returns what to log.
    pub fn record_error(&mut self, now: Instant) -> Report {
        self.total += 1;
        let Some(last_report) = self.last_report else {
            self.last_report = Some(now);
            return Report::First;
        };

        self.unreported += 1;
        let elapsed = now.saturating_duration_since(last_report);
        if elapsed < self.interval {
            return Report::Suppressed;
        }

        let count = self.unreported;
        self.unreported = 0;
        self.last_report = Some(now);
        Report::Summary { count, elapsed }
    }

    /// Records a success. Returns the number of failures since the previous
    /// success, if any, so that the caller can log the recovery once.
    pub fn record_success(&mut self) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let total = self.total;
        *self = Self::new(self.interval);
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_first_error_logged_in_full() {
        let mut counter = RepeatCounter::new(Duration::from_secs(60));
        assert_eq!(counter.record_error(Instant::now()), Report::First);
    }

    #[test]
    fn repeat_errors_within_interval_suppressed() {
        let start = Instant::now();
        let mut counter = RepeatCounter::new(Duration::from_secs(60));
        counter.record_error(start);
        for second in 1..60 {
            let now = start + Duration::from_secs(second);
            assert_eq!(counter.record_error(now), Report::Suppressed);
        }
    }

    #[test]
    fn repeat_summary_after_interval_counts_suppressed() {
        let start = Instant::now();
        let mut counter = RepeatCounter::new(Duration::from_secs(60));
        counter.record_error(start);
        counter.record_error(start + Duration::from_secs(10));
        counter.record_error(start + Duration::from_secs(20));
        let report = counter.record_error(start + Duration::from_secs(61));
        assert_eq!(
            report,
            Report::Summary {
                count: 3,
                elapsed: Duration::from_secs(61)
            }
        );
        let next = counter.record_error(start + Duration::from_secs(62));
        assert_eq!(next, Report::Suppressed);
    }

    #[test]
    fn repeat_success_returns_total_and_resets() {
        let start = Instant::now();
        let mut counter = RepeatCounter::new(Duration::from_secs(60));
        assert_eq!(counter.record_success(), None);
        counter.record_error(start);
        counter.record_error(start);
        assert_eq!(counter.record_success(), Some(2));
        assert_eq!(counter.record_success(), None);
        assert_eq!(counter.record_error(start), Report::First);
    }
}
