//! STATUS= publication by the main thread, one statistics window at a time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use sd_notify::NotifyState;
use slog::{debug, info, warn, Logger};

use crate::log::{new_span_id, Loggers, SpanId};
use crate::notify::Notifier;
use crate::repeat::{RepeatCounter, Report};
use crate::stats::{LoopStats, Status, StatusReader};

/// Sends READY=1, STATUS= and STOPPING=1, and logs each closed statistics
/// window under its own child span.
pub struct StatusPublisher<'a> {
    loggers: &'a Loggers,
    stats: &'a LoopStats,
    /// Span id of the open window, shared with the log thread.
    window_span: &'a AtomicU64,
    reader: StatusReader,
    notifier: Notifier,
    /// Windows in which the log ring dropped records.
    drop_windows: RepeatCounter,
    last_dropped: u64,
}

impl<'a> StatusPublisher<'a> {
    pub fn new(loggers: &'a Loggers, stats: &'a LoopStats, window_span: &'a AtomicU64) -> Self {
        Self {
            loggers,
            stats,
            window_span,
            reader: StatusReader::new(),
            notifier: Notifier::default(),
            drop_windows: RepeatCounter::default(),
            last_dropped: 0,
        }
    }

    /// Sends READY=1 with the first STATUS=.
    pub fn send_ready(&mut self) {
        let status = self.reader.next_window(self.stats);
        let text = status.to_string();
        let log = &self.loggers.root;
        self.notifier
            .send(log, &[NotifyState::Ready, NotifyState::Status(&text)]);
        info!(log, "ready: sent READY=1"; "DEGRADED" => status.degraded);
    }

    /// Sends STOPPING=1.
    pub fn send_stopping(&mut self) {
        self.notifier
            .send(&self.loggers.root, &[NotifyState::Stopping]);
    }

    /// Closes the window, sends STATUS=, logs the window at debug and opens
    /// a new window span.
    pub fn publish_window(&mut self) {
        let status = self.reader.next_window(self.stats);
        let text = status.to_string();
        self.notifier
            .send(&self.loggers.root, &[NotifyState::Status(&text)]);

        let span = SpanId(self.window_span.load(Relaxed));
        let window_log = self.loggers.child_span(span);
        debug!(window_log, "statistics window closed";
               "STATUS" => &text, "SAMPLES" => self.reader.window_samples(),
               "WIN_LAT_P99_US" => status.win_lat_p99_us,
               "WIN_LAT_MAX_US" => status.win_lat_max_us);
        self.log_drops(&window_log, &status);
        let next = new_span_or_zero(&self.loggers.root);
        self.window_span.store(next, Relaxed);
    }

    /// Returns the status after the loop has stopped.
    pub fn final_status(&mut self) -> Status {
        self.reader.next_window(self.stats)
    }

    /// Logs ring drops of the closed window: the first window with drops in
    /// full, later ones summarised once a minute, and the first clean window.
    fn log_drops(&mut self, log: &Logger, status: &Status) {
        let new_drops = status.log_dropped - self.last_dropped;
        self.last_dropped = status.log_dropped;
        if new_drops == 0 {
            if let Some(windows) = self.drop_windows.record_success() {
                info!(log, "log ring no longer drops records"; "WINDOWS_WITH_DROPS" => windows);
            }
            return;
        }
        match self.drop_windows.record_error(Instant::now()) {
            Report::First => warn!(log,
                "log ring full: loop records were dropped; repeats are summarised once a minute";
                "DROPPED_IN_WINDOW" => new_drops, "DROPPED_TOTAL" => status.log_dropped),
            Report::Summary { count, elapsed } => warn!(log,
                "log ring dropped records in {} more windows in the last {} s",
                count, elapsed.as_secs();
                "DROPPED_TOTAL" => status.log_dropped),
            Report::Suppressed => {}
        }
    }
}

/// Returns a new span id, or 0 (logged) when /dev/urandom cannot be read.
pub fn new_span_or_zero(log: &Logger) -> u64 {
    match new_span_id() {
        Ok(span) => span.0,
        Err(e) => {
            warn!(log, "failed to create a span id"; "ERROR" => e);
            0
        }
    }
}
