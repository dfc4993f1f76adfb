//! systemd notifications: readiness, watchdog and stopping.

use std::time::Duration;

use sd_notify::NotifyState;
use slog::{info, warn, Logger};

use crate::snapshot::SharedState;

/// Sends READY=1; does nothing when NOTIFY_SOCKET is unset.
pub fn notify_ready(log: &Logger) {
    if let Err(error) = sd_notify::notify(&[NotifyState::Ready]) {
        warn!(log, "failed to send READY=1 to systemd"; "error" => %error);
    }
}

/// Sends STOPPING=1; does nothing when NOTIFY_SOCKET is unset.
pub fn notify_stopping(log: &Logger) {
    if let Err(error) = sd_notify::notify(&[NotifyState::Stopping]) {
        warn!(log, "failed to send STOPPING=1 to systemd"; "error" => %error);
    }
}

/// Sends WATCHDOG=1 at half the watchdog timeout while polls succeed.
///
/// The timeout comes from WATCHDOG_USEC (and WATCHDOG_PID) set by systemd.
/// A ping is sent only when the latest successful poll is younger than the
/// timeout, so systemd restarts the exporter when polling is stuck or keeps
/// failing. Returns at once when the watchdog is disabled.
pub async fn run_watchdog(state: SharedState, log: Logger) {
    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    info!(log, "systemd watchdog enabled"; "timeout_ms" => timeout.as_millis() as u64);
    let mut ticker = tokio::time::interval(timeout / 2);
    let mut pinging = true;
    loop {
        ticker.tick().await;
        let healthy = is_recent(&state, timeout);
        if healthy {
            if let Err(error) = sd_notify::notify(&[NotifyState::Watchdog]) {
                warn!(log, "failed to send WATCHDOG=1 to systemd"; "error" => %error);
            }
        }
        if healthy != pinging {
            pinging = healthy;
            if healthy {
                info!(log, "resumed watchdog pings because a poll succeeded");
            } else {
                warn!(log, "stopped watchdog pings because no poll succeeded within the watchdog timeout";
                    "timeout_ms" => timeout.as_millis() as u64);
            }
        }
    }
}

fn is_recent(state: &SharedState, timeout: Duration) -> bool {
    state.update(|state| {
        state
            .last_success_at
            .is_some_and(|at| at.elapsed() < timeout)
    })
}
