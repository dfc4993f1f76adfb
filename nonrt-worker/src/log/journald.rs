//! journald output built on slog-journald, with the level mapping the MXRC
//! binaries share and a stderr fallback when a send fails.

use std::sync::Mutex;
use std::time::Instant;

use slog::{Drain, Level, OwnedKVList, Record, RecordStatic};
use slog_journald::JournaldDrain;

use super::repeat::{RepeatCounter, Report, SUMMARY_INTERVAL};
use super::stderr::StderrDrain;

/// Path of the journald native protocol socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Returns the level to hand to slog-journald so that the journald PRIORITY
/// equals [`super::syslog_priority`] of the original level.
///
/// slog-journald 3.0.0 maps Info to PRIORITY 5 (notice), Debug to 6 and
/// Trace to 7. The MXRC convention is info 6 and debug 7, so Info and Debug
/// are shifted down by one level before the record reaches it.
pub fn level_for_slog_journald(level: Level) -> Level {
    match level {
        Level::Critical => Level::Critical,
        Level::Error => Level::Error,
        Level::Warning => Level::Warning,
        Level::Info => Level::Debug,
        Level::Debug | Level::Trace => Level::Trace,
    }
}

/// Drain that sends each record to journald and, when the send fails,
/// writes it to stderr instead. Failures are counted and reported on
/// stderr once, then as a summary at most every [`SUMMARY_INTERVAL`].
pub struct JournaldOutput {
    journald: JournaldDrain,
    fallback: StderrDrain,
    failures: Mutex<RepeatCounter>,
}

impl JournaldOutput {
    /// Creates the drain. It does not contact journald until the first record.
    pub fn new() -> JournaldOutput {
        JournaldOutput {
            journald: JournaldDrain::default(),
            fallback: StderrDrain::new(),
            failures: Mutex::new(RepeatCounter::new(SUMMARY_INTERVAL)),
        }
    }

    /// Sends `record` to journald with the MXRC level mapping.
    pub fn send(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog_journald::Error> {
        let mapped_static = RecordStatic {
            location: record.location(),
            tag: record.tag(),
            level: level_for_slog_journald(record.level()),
        };
        let mapped = Record::new(&mapped_static, record.msg(), record.kv());
        self.journald.log(&mapped, values)
    }

    fn report_failure(&self, error: &slog_journald::Error) {
        let report = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .record_error(Instant::now());
        match report {
            Report::First => self.fallback.write_notice(
                Level::Error,
                &format!(
                    "failed to send a log record to journald at {JOURNAL_SOCKET}: {error}; \
                     writing records to stderr until journald accepts them again"
                ),
            ),
            Report::Suppressed => {}
            Report::Summary { count, span } => self.fallback.write_notice(
                Level::Error,
                &format!(
                    "journald send failed {count} more times in the last {}s; last error: {error}",
                    span.as_secs()
                ),
            ),
        }
    }

    fn report_success(&self) {
        let recovered = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .record_success();
        if let Some(count) = recovered {
            self.fallback.write_notice(
                Level::Info,
                &format!("journald accepts log records again after {count} failed sends"),
            );
        }
    }
}

impl Drain for JournaldOutput {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        match self.send(record, values) {
            Ok(()) => self.report_success(),
            Err(error) => {
                self.report_failure(&error);
                let _ = self.fallback.log(record, values);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::syslog_priority;

    /// Copy of the private `level_to_priority` table of slog-journald 3.0.0
    /// (src/lib.rs), as syslog numbers. Recheck it when upgrading the crate.
    fn slog_journald_3_priority(level: Level) -> u8 {
        match level {
            Level::Critical => 2,
            Level::Error => 3,
            Level::Warning => 4,
            Level::Info => 5,
            Level::Debug => 6,
            Level::Trace => 7,
        }
    }

    #[test]
    fn journald_priority_matches_convention() {
        let levels = [
            Level::Critical,
            Level::Error,
            Level::Warning,
            Level::Info,
            Level::Debug,
        ];
        for level in levels {
            assert_eq!(
                slog_journald_3_priority(level_for_slog_journald(level)),
                syslog_priority(level),
                "level {level:?}"
            );
        }
    }

    #[test]
    fn syslog_priority_table() {
        assert_eq!(syslog_priority(Level::Critical), 2);
        assert_eq!(syslog_priority(Level::Error), 3);
        assert_eq!(syslog_priority(Level::Warning), 4);
        assert_eq!(syslog_priority(Level::Info), 6);
        assert_eq!(syslog_priority(Level::Debug), 7);
        assert_eq!(syslog_priority(Level::Trace), 7);
    }
}
