//! State shared between the poller and the HTTP server.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::parse::UnitProperties;

/// Reason label values of `mxrc_monitor_poll_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollErrorReason {
    Spawn,
    Timeout,
    ExitStatus,
    OutputTooLarge,
    InvalidUtf8,
    Parse,
}

impl PollErrorReason {
    pub const ALL: [PollErrorReason; 6] = [
        PollErrorReason::Spawn,
        PollErrorReason::Timeout,
        PollErrorReason::ExitStatus,
        PollErrorReason::OutputTooLarge,
        PollErrorReason::InvalidUtf8,
        PollErrorReason::Parse,
    ];

    pub fn label(self) -> &'static str {
        match self {
            PollErrorReason::Spawn => "spawn",
            PollErrorReason::Timeout => "timeout",
            PollErrorReason::ExitStatus => "exit_status",
            PollErrorReason::OutputTooLarge => "output_too_large",
            PollErrorReason::InvalidUtf8 => "invalid_utf8",
            PollErrorReason::Parse => "parse",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Unit properties from one successful poll.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub units: Vec<UnitProperties>,
    /// Unix time in seconds at which the poll finished.
    pub taken_at_unix: f64,
}

/// systemd manager properties, refreshed less often than the units.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ManagerInfo {
    pub version: Option<String>,
    pub system_state: Option<String>,
}

/// Poll counters and the latest snapshot, as served on /metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MonitorState {
    pub snapshot: Option<Arc<Snapshot>>,
    pub manager: ManagerInfo,
    pub polls_total: u64,
    pub poll_errors_total: [u64; 6],
    pub parse_errors_total: u64,
    /// Whether at least one poll has finished.
    pub polled: bool,
    pub last_poll_success: bool,
    pub last_poll_duration_seconds: f64,
    pub last_success_unix: Option<f64>,
    /// Monotonic time of the latest successful poll, for the watchdog.
    pub last_success_at: Option<Instant>,
}

impl MonitorState {
    pub fn record_error(&mut self, reason: PollErrorReason) {
        self.poll_errors_total[reason.index()] += 1;
    }

    pub fn errors_for(&self, reason: PollErrorReason) -> u64 {
        self.poll_errors_total[reason.index()]
    }

    /// Returns whether the served snapshot is older than the latest poll attempt.
    pub fn is_stale(&self) -> bool {
        self.polled && !self.last_poll_success
    }
}

/// Handle to the state shared by the poller, the watchdog and the HTTP server.
///
/// A std mutex is enough because every critical section is a copy or a
/// counter update and never awaits.
#[derive(Clone, Debug, Default)]
pub struct SharedState(Arc<Mutex<MonitorState>>);

impl SharedState {
    pub fn read(&self) -> MonitorState {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn update<R>(&self, change: impl FnOnce(&mut MonitorState) -> R) -> R {
        let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut guard)
    }
}
