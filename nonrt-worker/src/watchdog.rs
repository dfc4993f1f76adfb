//! systemd watchdog thread. It sends WATCHDOG=1 every WatchdogSec/2, but
//! only when the work loop completed at least one cycle since the previous
//! check, so a stalled loop gets the service restarted by systemd.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use slog::Logger;

use crate::log::repeat::{RepeatCounter, SUMMARY_INTERVAL};
use crate::log::{log_recovery, log_repeated_error};
use crate::signals::Shutdown;
use crate::worker::Counters;

/// Returns true when the cycle counter advanced since the last check, which
/// is the only case in which the watchdog may be pinged.
pub fn should_ping(last_seen: u64, current: u64) -> bool {
    current != last_seen
}

/// Action taken by one watchdog check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The loop made progress: ping.
    Ping,
    /// The loop made progress again after a stall: ping and log the recovery.
    PingAfterStall { stalled_for: Duration },
    /// The loop made no progress: withhold the ping and log why.
    WithholdStallStarted,
    /// The loop is still stalled: withhold the ping, already logged.
    WithholdStallContinues,
}

/// State of the watchdog gating between two checks.
#[derive(Debug, Clone)]
pub struct Gate {
    last_seen: u64,
    stalled_since: Option<Instant>,
}

impl Gate {
    /// Starts gating from the cycle count at the time READY=1 was sent.
    pub fn new(cycles_at_start: u64) -> Gate {
        Gate {
            last_seen: cycles_at_start,
            stalled_since: None,
        }
    }

    /// Decides the action for a check at `now` that reads `current` cycles.
    pub fn check(&mut self, current: u64, now: Instant) -> Action {
        let advanced = should_ping(self.last_seen, current);
        self.last_seen = current;
        match (advanced, self.stalled_since) {
            (true, None) => Action::Ping,
            (true, Some(since)) => {
                self.stalled_since = None;
                Action::PingAfterStall {
                    stalled_for: now.saturating_duration_since(since),
                }
            }
            (false, None) => {
                self.stalled_since = Some(now);
                Action::WithholdStallStarted
            }
            (false, Some(_)) => Action::WithholdStallContinues,
        }
    }
}

/// Watchdog timeout given by systemd that the ping interval cannot serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchdogTooShort {
    pub timeout: Duration,
    pub period: Duration,
}

impl fmt::Display for WatchdogTooShort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "watchdog timeout WATCHDOG_USEC={} is too short for --period-ms {}: progress is \
             checked every WatchdogSec/2 and that must span at least two loop periods; \
             set WatchdogSec= to at least {} ms or lower --period-ms",
            self.timeout.as_micros(),
            self.period.as_millis(),
            4 * self.period.as_millis()
        )
    }
}

impl std::error::Error for WatchdogTooShort {}

/// Returns the ping interval (half the watchdog timeout) after checking
/// that it spans at least two loop periods, so a healthy loop always
/// advances the counter between two checks.
pub fn ping_interval(timeout: Duration, period: Duration) -> Result<Duration, WatchdogTooShort> {
    let interval = timeout / 2;
    if interval < period * 2 {
        return Err(WatchdogTooShort { timeout, period });
    }
    Ok(interval)
}

/// Settings and shared state of the watchdog thread.
pub struct WatchdogParts {
    pub interval: Duration,
    pub counters: Arc<Counters>,
    pub shutdown: Arc<Shutdown>,
    pub logger: Logger,
}

/// Starts the watchdog thread. `cycles_at_start` is the cycle count when
/// READY=1 was sent.
pub fn spawn(parts: WatchdogParts, cycles_at_start: u64) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || run(parts, cycles_at_start))
}

fn run(parts: WatchdogParts, cycles_at_start: u64) {
    let mut gate = Gate::new(cycles_at_start);
    let mut ping_failures = RepeatCounter::new(SUMMARY_INTERVAL);
    let mut next_check = Instant::now() + parts.interval;

    while !parts.shutdown.wait_until(next_check) {
        next_check += parts.interval;
        let current = parts.counters.snapshot().cycles;
        match gate.check(current, Instant::now()) {
            Action::Ping => ping(&parts.logger, &mut ping_failures),
            Action::PingAfterStall { stalled_for } => {
                slog::warn!(parts.logger, "work loop made progress again; watchdog pings resumed";
                    "cycles" => current, "stalled_ms" => stalled_for.as_millis() as u64);
                ping(&parts.logger, &mut ping_failures);
            }
            Action::WithholdStallStarted => {
                slog::error!(parts.logger,
                    "work loop made no progress since the last watchdog check; withholding WATCHDOG=1 so that systemd restarts the service";
                    "cycles" => current, "check_interval_ms" => parts.interval.as_millis() as u64);
            }
            Action::WithholdStallContinues => {}
        }
    }
}

fn ping(logger: &Logger, failures: &mut RepeatCounter) {
    match sd_notify::notify(&[NotifyState::Watchdog]) {
        Ok(()) => log_recovery(logger, failures, "WATCHDOG=1 sent again after failures"),
        Err(error) => log_repeated_error(
            logger,
            failures,
            "failed to send WATCHDOG=1 to systemd",
            &error,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advanced_counter_pings() {
        assert!(should_ping(10, 11));
        assert!(should_ping(10, 500));
    }

    #[test]
    fn unchanged_counter_does_not_ping() {
        assert!(!should_ping(10, 10));
        assert!(!should_ping(0, 0));
    }

    #[test]
    fn progress_each_check_pings() {
        let start = Instant::now();
        let mut gate = Gate::new(1);
        assert_eq!(gate.check(3, start), Action::Ping);
        assert_eq!(gate.check(5, start + Duration::from_secs(1)), Action::Ping);
    }

    #[test]
    fn stall_withholds_and_logs_once() {
        let start = Instant::now();
        let mut gate = Gate::new(1);
        assert_eq!(gate.check(3, start), Action::Ping);
        assert_eq!(
            gate.check(3, start + Duration::from_secs(1)),
            Action::WithholdStallStarted
        );
        assert_eq!(
            gate.check(3, start + Duration::from_secs(2)),
            Action::WithholdStallContinues
        );
        assert_eq!(
            gate.check(3, start + Duration::from_secs(3)),
            Action::WithholdStallContinues
        );
    }

    #[test]
    fn no_progress_since_ready_withholds() {
        let mut gate = Gate::new(1);
        assert_eq!(gate.check(1, Instant::now()), Action::WithholdStallStarted);
    }

    #[test]
    fn progress_after_stall_reports_duration() {
        let start = Instant::now();
        let mut gate = Gate::new(1);
        gate.check(1, start);
        gate.check(1, start + Duration::from_secs(1));
        assert_eq!(
            gate.check(2, start + Duration::from_secs(3)),
            Action::PingAfterStall {
                stalled_for: Duration::from_secs(3)
            }
        );
        assert_eq!(gate.check(4, start + Duration::from_secs(4)), Action::Ping);
    }

    #[test]
    fn ping_interval_is_half_the_timeout() {
        let interval = ping_interval(Duration::from_secs(2), Duration::from_millis(100)).unwrap();
        assert_eq!(interval, Duration::from_secs(1));
    }

    #[test]
    fn ping_interval_of_two_periods_accepted() {
        let interval =
            ping_interval(Duration::from_millis(400), Duration::from_millis(100)).unwrap();
        assert_eq!(interval, Duration::from_millis(200));
    }

    #[test]
    fn watchdog_shorter_than_four_periods_rejected() {
        let err =
            ping_interval(Duration::from_millis(399), Duration::from_millis(100)).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("WATCHDOG_USEC=399000"), "{message}");
        assert!(message.contains("--period-ms 100"), "{message}");
        assert!(message.contains("at least 400 ms"), "{message}");
    }
}
