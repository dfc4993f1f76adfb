//! Counting of repeated errors so that a failure that recurs every cycle is
//! logged once and then summarised, not logged on every occurrence.

use std::time::{Duration, Instant};

/// Default time between two summaries of the same repeated error.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// Logging decision for one occurrence of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// First occurrence since the last success: log it in full.
    First,
    /// Counted only, because a summary is not due yet.
    Suppressed,
    /// Log a summary: `count` occurrences (this one included) since the last
    /// report, over `span`.
    Summary { count: u64, span: Duration },
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

impl RepeatCounter {
    /// Creates a counter that allows one summary per `interval`.
    pub fn new(interval: Duration) -> RepeatCounter {
        RepeatCounter {
            interval,
            unreported: 0,
            total: 0,
            last_report: None,
        }
    }

    /// Records one occurrence at `now` and returns what to log.
    pub fn record_error(&mut self, now: Instant) -> Report {
        self.total += 1;
        let Some(last_report) = self.last_report else {
            self.last_report = Some(now);
            return Report::First;
        };

        self.unreported += 1;
        let span = now.saturating_duration_since(last_report);
        if span < self.interval {
            return Report::Suppressed;
        }

        let count = self.unreported;
        self.unreported = 0;
        self.last_report = Some(now);
        Report::Summary { count, span }
    }

    /// Records a success. Returns the number of occurrences since the last
    /// success if there were any, so the caller can log the recovery.
    pub fn record_success(&mut self) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let total = self.total;
        self.total = 0;
        self.unreported = 0;
        self.last_report = None;
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(10);

    #[test]
    fn first_error_reported_in_full() {
        let mut counter = RepeatCounter::new(INTERVAL);
        assert_eq!(counter.record_error(Instant::now()), Report::First);
    }

    #[test]
    fn repeats_within_interval_suppressed() {
        let start = Instant::now();
        let mut counter = RepeatCounter::new(INTERVAL);
        counter.record_error(start);
        assert_eq!(
            counter.record_error(start + Duration::from_secs(1)),
            Report::Suppressed
        );
        assert_eq!(
            counter.record_error(start + Duration::from_secs(2)),
            Report::Suppressed
        );
    }

    #[test]
    fn summary_after_interval_counts_repeats() {
        let start = Instant::now();
        let mut counter = RepeatCounter::new(INTERVAL);
        counter.record_error(start);
        counter.record_error(start + Duration::from_secs(1));
        counter.record_error(start + Duration::from_secs(2));
        let report = counter.record_error(start + Duration::from_secs(11));
        assert_eq!(
            report,
            Report::Summary {
                count: 3,
                span: Duration::from_secs(11)
            }
        );
    }

    #[test]
    fn summary_resets_unreported_count() {
        let start = Instant::now();
        let mut counter = RepeatCounter::new(INTERVAL);
        counter.record_error(start);
        counter.record_error(start + Duration::from_secs(11));
        assert_eq!(
            counter.record_error(start + Duration::from_secs(12)),
            Report::Suppressed
        );
        let report = counter.record_error(start + Duration::from_secs(22));
        assert_eq!(
            report,
            Report::Summary {
                count: 2,
                span: Duration::from_secs(11)
            }
        );
    }

    #[test]
    fn success_without_errors_returns_none() {
        let mut counter = RepeatCounter::new(INTERVAL);
        assert_eq!(counter.record_success(), None);
    }

    #[test]
    fn success_after_errors_returns_total() {
        let start = Instant::now();
        let mut counter = RepeatCounter::new(INTERVAL);
        counter.record_error(start);
        counter.record_error(start + Duration::from_secs(1));
        assert_eq!(counter.record_success(), Some(2));
        assert_eq!(counter.record_success(), None);
    }

    #[test]
    fn error_after_recovery_reported_in_full() {
        let start = Instant::now();
        let mut counter = RepeatCounter::new(INTERVAL);
        counter.record_error(start);
        counter.record_success();
        assert_eq!(
            counter.record_error(start + Duration::from_secs(1)),
            Report::First
        );
    }
}
