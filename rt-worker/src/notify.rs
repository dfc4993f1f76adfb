//! sd_notify sending with repeated failures counted instead of logged each time.

use std::time::Instant;

use sd_notify::NotifyState;
use slog::{error, info, Logger};

use crate::repeat::{RepeatCounter, Report};

/// Sends notifications to systemd. A failure is not fatal: the first one is
/// logged in full, repeats are summarised once a minute, and the first
/// success after failures is logged once.
#[derive(Default)]
pub struct Notifier {
    failures: RepeatCounter,
}

impl Notifier {
    /// Sends `state` to NOTIFY_SOCKET; does nothing when it is unset.
    pub fn send(&mut self, log: &Logger, state: &[NotifyState]) {
        let error = match sd_notify::notify(state) {
            Ok(()) => {
                if let Some(failures) = self.failures.record_success() {
                    info!(log, "sd_notify works again"; "FAILURES" => failures);
                }
                return;
            }
            Err(error) => error,
        };
        let message = state_names(state);
        match self.failures.record_error(Instant::now()) {
            Report::First => error!(log, "sd_notify failed; repeats are summarised once a minute";
                "ERROR" => error.to_string(), "NOTIFY_STATE" => message),
            Report::Summary { count, elapsed } => error!(log,
                "sd_notify failed {} more times in the last {} s", count, elapsed.as_secs();
                "ERROR" => error.to_string(), "NOTIFY_STATE" => message, "FAILURES" => count),
            Report::Suppressed => {}
        }
    }
}

/// Returns the variable names of a notification, e.g. "READY STATUS".
fn state_names(state: &[NotifyState]) -> String {
    let names: Vec<String> = state
        .iter()
        .map(|s| {
            let text = s.to_string();
            text.split('=').next().unwrap_or_default().to_string()
        })
        .collect();
    names.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_without_values() {
        let state = [
            NotifyState::Ready,
            NotifyState::Status("cycles=1 overruns=0"),
        ];
        assert_eq!(state_names(&state), "READY STATUS");
    }
}
