//! STATUS= updates to systemd and the per-window child span.
//!
//! Every status interval is one window. Its records carry a new SPAN_ID with
//! PARENT_SPAN_ID set to the process span.

use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use slog::Logger;

use crate::log::repeat::{RepeatCounter, Report, SUMMARY_INTERVAL};
use crate::log::{log_recovery, log_repeated_error, Logging};
use crate::signals::Shutdown;
use crate::worker::{Counters, Snapshot};

/// Formats the STATUS= text: `cycles=N ticks_late=N uptime_s=N`.
pub fn format_status(snapshot: Snapshot, uptime: Duration) -> String {
    format!(
        "cycles={} ticks_late={} uptime_s={}",
        snapshot.cycles,
        snapshot.ticks_late,
        uptime.as_secs()
    )
}

/// Sends STATUS= with the current counters.
pub fn send_status(snapshot: Snapshot, uptime: Duration) -> io::Result<()> {
    sd_notify::notify(&[NotifyState::Status(&format_status(snapshot, uptime))])
}

/// Settings and shared state of the status thread.
pub struct StatusParts {
    pub interval: Duration,
    pub period: Duration,
    pub started: Instant,
    pub counters: Arc<Counters>,
    pub shutdown: Arc<Shutdown>,
    pub logging: Logging,
}

/// Starts the thread that sends STATUS= once per interval.
pub fn spawn(parts: StatusParts) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("status".into())
        .spawn(move || run(parts))
}

/// Failure counters of the status thread.
struct Failures {
    status_send: RepeatCounter,
    span_id: RepeatCounter,
    late_windows: RepeatCounter,
    idle_windows: RepeatCounter,
}

fn run(parts: StatusParts) {
    let mut failures = Failures {
        status_send: RepeatCounter::new(SUMMARY_INTERVAL),
        span_id: RepeatCounter::new(SUMMARY_INTERVAL),
        late_windows: RepeatCounter::new(SUMMARY_INTERVAL),
        idle_windows: RepeatCounter::new(SUMMARY_INTERVAL),
    };
    let mut window_logger = open_window(&parts.logging, &mut failures.span_id);
    let mut window_start = parts.counters.snapshot();
    let mut next_update = Instant::now() + parts.interval;

    while !parts.shutdown.wait_until(next_update) {
        next_update += parts.interval;
        let snapshot = parts.counters.snapshot();

        match send_status(snapshot, parts.started.elapsed()) {
            Ok(()) => log_recovery(
                &window_logger,
                &mut failures.status_send,
                "STATUS= sent again after failures",
            ),
            Err(error) => log_repeated_error(
                &window_logger,
                &mut failures.status_send,
                "failed to send STATUS= to systemd",
                &error,
            ),
        }

        close_window(
            &window_logger,
            &parts,
            window_start,
            snapshot,
            &mut failures,
        );
        window_logger = open_window(&parts.logging, &mut failures.span_id);
        window_start = snapshot;
    }
}

/// Returns the logger of a new window span, or the process logger if no
/// span id could be generated.
fn open_window(logging: &Logging, failures: &mut RepeatCounter) -> Logger {
    match logging.child_span() {
        Ok((logger, _)) => {
            log_recovery(
                logging.logger(),
                failures,
                "span ids generated again after failures",
            );
            logger
        }
        Err(error) => {
            log_repeated_error(
                logging.logger(),
                failures,
                "failed to generate a span id for a status window; logging under the process span",
                &error,
            );
            logging.logger().clone()
        }
    }
}

/// Logs the window summary at debug level, and windows without cycles or
/// with late ticks at warning level, once and then as a summary.
fn close_window(
    logger: &Logger,
    parts: &StatusParts,
    start: Snapshot,
    end: Snapshot,
    failures: &mut Failures,
) {
    let cycles = end.cycles.saturating_sub(start.cycles);
    let ticks_late = end.ticks_late.saturating_sub(start.ticks_late);
    let period_ms = parts.period.as_millis() as u64;
    slog::debug!(logger, "status window closed";
        "window_cycles" => cycles, "window_ticks_late" => ticks_late,
        "cycles" => end.cycles, "ticks_late" => end.ticks_late);

    check_idle_window(logger, cycles, end, &mut failures.idle_windows);
    check_late_window(
        logger,
        cycles,
        ticks_late,
        end,
        period_ms,
        &mut failures.late_windows,
    );
}

/// Warns when the loop completed no cycle in a whole window. With the
/// watchdog enabled systemd restarts the service soon after, but without
/// it this record and STATUS= are the only signs of a stalled loop.
fn check_idle_window(
    logger: &Logger,
    cycles: u64,
    end: Snapshot,
    idle_windows: &mut RepeatCounter,
) {
    if cycles > 0 {
        if let Some(windows) = idle_windows.record_success() {
            slog::info!(logger, "work loop completes cycles again"; "idle_windows" => windows);
        }
        return;
    }
    match idle_windows.record_error(Instant::now()) {
        Report::First => slog::warn!(logger, "work loop completed no cycle in this status window";
            "cycles" => end.cycles),
        Report::Suppressed => {}
        Report::Summary { count, span } => {
            slog::warn!(logger, "work loop still completes no cycles";
            "idle_windows" => count, "repeat_window_s" => span.as_secs(), "cycles" => end.cycles)
        }
    }
}

fn check_late_window(
    logger: &Logger,
    cycles: u64,
    ticks_late: u64,
    end: Snapshot,
    period_ms: u64,
    late_windows: &mut RepeatCounter,
) {
    if ticks_late == 0 {
        if let Some(windows) = late_windows.record_success() {
            slog::info!(logger, "work loop meets its deadlines again"; "late_windows" => windows);
        }
        return;
    }
    match late_windows.record_error(Instant::now()) {
        Report::First => slog::warn!(logger, "work loop missed deadlines in this status window";
            "window_ticks_late" => ticks_late, "window_cycles" => cycles, "period_ms" => period_ms),
        Report::Suppressed => {}
        Report::Summary { count, span } => slog::warn!(logger, "work loop keeps missing deadlines";
            "late_windows" => count, "repeat_window_s" => span.as_secs(),
            "ticks_late" => end.ticks_late, "period_ms" => period_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_has_integer_fields_in_order() {
        let snapshot = Snapshot {
            cycles: 1234,
            ticks_late: 5,
        };
        let status = format_status(snapshot, Duration::from_millis(61_999));
        assert_eq!(status, "cycles=1234 ticks_late=5 uptime_s=61");
    }

    #[test]
    fn status_at_start_is_all_zero() {
        let status = format_status(Snapshot::default(), Duration::ZERO);
        assert_eq!(status, "cycles=0 ticks_late=0 uptime_s=0");
    }

    #[test]
    fn status_values_are_plain_integers() {
        let snapshot = Snapshot {
            cycles: u64::MAX,
            ticks_late: 0,
        };
        let status = format_status(snapshot, Duration::from_secs(86_400));
        for pair in status.split(' ') {
            let (key, value) = pair.split_once('=').unwrap();
            assert!(!key.is_empty());
            assert!(value.parse::<u64>().is_ok(), "{pair}");
        }
    }
}
