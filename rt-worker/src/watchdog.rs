//! Watchdog thread "mxrc-rt-wdog": sends WATCHDOG=1 only while the loop makes
//! progress and is not stuck in an overrun streak.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use slog::{error, info, warn, Logger};

use crate::notify::{Notifier, WatchdogSocket};
use crate::rtloop::LoopShared;

/// Name (thread comm) of the watchdog thread.
pub const WATCHDOG_THREAD_NAME: &str = "mxrc-rt-wdog";

/// Outcome of one watchdog check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    NoProgress,
    OverrunStreak { streak: u64 },
}

/// Decides whether to ping, from the cycle counter at the last check and now.
pub fn judge(last_cycles: u64, cycles: u64, streak: u64, overrun_limit: u64) -> Verdict {
    if cycles == last_cycles {
        Verdict::NoProgress
    } else if streak >= overrun_limit {
        Verdict::OverrunStreak { streak }
    } else {
        Verdict::Healthy
    }
}

/// A running watchdog thread; `stop` ends it.
pub struct Watchdog {
    handle: JoinHandle<()>,
    stop: Arc<AtomicBool>,
}

impl Watchdog {
    /// Stops the thread and waits for it.
    pub fn stop(self) {
        self.stop.store(true, Relaxed);
        self.handle.thread().unpark();
        let _ = self.handle.join();
    }
}

/// Spawns the watchdog thread if systemd enabled the watchdog for this
/// process (WATCHDOG_USEC, and WATCHDOG_PID matching if set). It checks every
/// half of the interval systemd gives.
pub fn spawn(
    shared: Arc<LoopShared>,
    overrun_limit: u64,
    period: Duration,
    log: Logger,
) -> std::io::Result<Option<Watchdog>> {
    // WATCHDOG_USEC=0 would make the check interval zero and the thread spin.
    let Some(timeout) = sd_notify::watchdog_enabled().filter(|t| !t.is_zero()) else {
        info!(
            log,
            "systemd watchdog not enabled (WATCHDOG_USEC unset or 0); not sending WATCHDOG=1"
        );
        return Ok(None);
    };
    let interval = timeout / 2;
    info!(log, "systemd watchdog enabled";
          "WATCHDOG_USEC" => timeout.as_micros() as u64,
          "PING_INTERVAL_MS" => interval.as_millis() as u64,
          "OVERRUN_LIMIT" => overrun_limit);
    if period >= interval {
        warn!(log, "loop period is not shorter than the watchdog check interval, so some \
                    checks see no new cycle and skip WATCHDOG=1; raise WatchdogSec= or \
                    lower --period-us";
              "PERIOD_US" => period.as_micros() as u64,
              "PING_INTERVAL_MS" => interval.as_millis() as u64);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = stop.clone();
    let handle = thread::Builder::new()
        .name(WATCHDOG_THREAD_NAME.into())
        .spawn(move || {
            crate::setup::reset_to_sched_other(&log, WATCHDOG_THREAD_NAME);
            run(&shared, overrun_limit, interval, &thread_stop, &log);
        })?;
    Ok(Some(Watchdog { handle, stop }))
}

fn run(shared: &LoopShared, limit: u64, interval: Duration, stop: &AtomicBool, log: &Logger) {
    let mut last_cycles = shared.stats.cycles.load(Relaxed);
    let mut last_progress = Instant::now();
    let mut unhealthy = false;
    let mut notifier = Notifier::default();
    // A failed connect leaves None, and every ping then goes through the
    // notifier, which logs the error.
    let mut socket = WatchdogSocket::from_env().ok().flatten();
    let mut next_check = Instant::now() + interval;
    loop {
        // park_timeout may return early (spurious wakeup or unpark), and an
        // early check could see no new cycle, so sleep until the deadline.
        loop {
            if stop.load(Relaxed) {
                return;
            }
            let now = Instant::now();
            if now >= next_check {
                break;
            }
            thread::park_timeout(next_check - now);
        }
        // After a delay longer than an interval, restart the schedule from now
        // instead of catching up with back-to-back checks.
        next_check += interval;
        if next_check < Instant::now() {
            next_check = Instant::now() + interval;
        }
        let cycles = shared.stats.cycles.load(Relaxed);
        let streak = shared.stats.overrun_streak.load(Relaxed);
        let verdict = judge(last_cycles, cycles, streak, limit);
        if cycles != last_cycles {
            last_progress = Instant::now();
        }
        last_cycles = cycles;

        if verdict == Verdict::Healthy {
            if unhealthy {
                info!(log, "loop healthy again; resuming WATCHDOG=1"; "CYCLE" => cycles);
                unhealthy = false;
            }
            if socket.as_mut().is_none_or(|s| s.ping().is_err()) {
                notifier.send(log, &[NotifyState::Watchdog]);
            }
            continue;
        }
        if !unhealthy {
            unhealthy = true;
            log_unhealthy(log, verdict, cycles, last_progress.elapsed(), limit);
        }
    }
}

fn log_unhealthy(log: &Logger, verdict: Verdict, cycles: u64, stalled: Duration, limit: u64) {
    match verdict {
        Verdict::NoProgress => error!(log,
            "loop made no progress for {} ms; not sending WATCHDOG=1", stalled.as_millis();
            "CYCLE" => cycles, "STALLED_MS" => stalled.as_millis() as u64),
        Verdict::OverrunStreak { streak } => error!(log,
            "overrun streak {} >= limit {}; not sending WATCHDOG=1", streak, limit;
            "CYCLE" => cycles, "STREAK" => streak, "OVERRUN_LIMIT" => limit),
        Verdict::Healthy => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_pings_when_cycles_advance() {
        assert_eq!(judge(10, 11, 0, 100), Verdict::Healthy);
        assert_eq!(judge(10, 500, 99, 100), Verdict::Healthy);
    }

    #[test]
    fn watchdog_skips_ping_when_frozen() {
        assert_eq!(judge(10, 10, 0, 100), Verdict::NoProgress);
    }

    #[test]
    fn watchdog_skips_ping_at_overrun_limit() {
        assert_eq!(
            judge(10, 20, 100, 100),
            Verdict::OverrunStreak { streak: 100 }
        );
    }
}
