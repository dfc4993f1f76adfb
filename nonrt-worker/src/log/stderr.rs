//! Line-oriented slog drain for stderr.
//!
//! One record is one line: `<timestamp> <LEVEL> <message> KEY=value ...`.
//! Keys are printed with the names journald would store them under, so the
//! same search terms work on both outputs. When stderr is itself a journald
//! stream (JOURNAL_STREAM matches fd 2), each line starts with the `<N>`
//! syslog priority prefix instead of a timestamp, so journald keeps the level.

use std::fmt::{self, Write as _};
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::MetadataExt;
use std::time::{SystemTime, UNIX_EPOCH};

use slog::{Drain, Key, Level, OwnedKVList, Record, KV};

use super::{field_name, syslog_priority};

/// Keys that only make sense in journald and are left out of stderr lines.
const JOURNALD_ONLY_KEYS: &[&str] = &["SYSLOG_IDENTIFIER"];

/// Drain that writes one line per record to stderr.
#[derive(Debug, Clone)]
pub struct StderrDrain {
    journal_stream: bool,
}

impl StderrDrain {
    /// Creates a drain and checks once whether stderr is a journald stream.
    pub fn new() -> StderrDrain {
        StderrDrain {
            journal_stream: stderr_is_journal_stream(),
        }
    }

    /// Writes one line that does not come from a slog record, such as a
    /// notice about the journald drain itself.
    pub fn write_notice(&self, level: Level, message: &str) {
        let mut line = String::new();
        self.write_prefix(&mut line, level);
        line.push_str(message);
        line.push('\n');
        let _ = io::stderr().lock().write_all(line.as_bytes());
    }

    fn write_prefix(&self, line: &mut String, level: Level) {
        if self.journal_stream {
            let _ = write!(line, "<{}>", syslog_priority(level));
        } else {
            let _ = write!(line, "{} ", format_utc(SystemTime::now()));
        }
        let _ = write!(line, "{:<5} ", level_label(level));
    }

    /// Formats `record` as one line without the trailing newline.
    pub fn format_line(&self, record: &Record, values: &OwnedKVList) -> String {
        let mut line = String::new();
        self.write_prefix(&mut line, record.level());
        let _ = write!(line, "{}", record.msg());

        // slog serializes pairs last-first, so each group is reversed to
        // print the pairs in the order they were written.
        let mut record_fields = FieldCollector::default();
        let _ = record.kv().serialize(record, &mut record_fields);
        let mut context_fields = FieldCollector::default();
        let _ = values.serialize(record, &mut context_fields);
        for (name, value) in record_fields
            .fields
            .iter()
            .rev()
            .chain(context_fields.fields.iter().rev())
        {
            write_field(&mut line, name, value);
        }
        line
    }
}

impl Default for StderrDrain {
    fn default() -> Self {
        StderrDrain::new()
    }
}

impl Drain for StderrDrain {
    type Ok = ();
    type Err = io::Error;

    fn log(&self, record: &Record, values: &OwnedKVList) -> io::Result<()> {
        let mut line = self.format_line(record, values);
        line.push('\n');
        io::stderr().lock().write_all(line.as_bytes())
    }
}

fn level_label(level: Level) -> &'static str {
    match level {
        Level::Critical => "CRIT",
        Level::Error => "ERROR",
        Level::Warning => "WARN",
        Level::Info => "INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

/// Collects (journald field name, value) pairs of a record.
#[derive(Default)]
struct FieldCollector {
    fields: Vec<(String, String)>,
}

impl slog::Serializer for FieldCollector {
    fn emit_arguments(&mut self, key: Key, val: &fmt::Arguments) -> slog::Result {
        let name = field_name(key);
        if !JOURNALD_ONLY_KEYS.contains(&name.as_str()) {
            self.fields.push((name, val.to_string()));
        }
        Ok(())
    }
}

/// Appends ` NAME=value`, quoting values that are empty or contain spaces,
/// quotes or control characters.
fn write_field(line: &mut String, name: &str, value: &str) {
    let needs_quotes = value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c.is_control());
    if needs_quotes {
        let _ = write!(line, " {name}={value:?}");
    } else {
        let _ = write!(line, " {name}={value}");
    }
}

/// Returns true when fd 2 is the journald stream named by JOURNAL_STREAM
/// (`<device>:<inode>`, set by systemd for units that log stderr to the journal).
fn stderr_is_journal_stream() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((device, inode)) = stream.to_str().and_then(parse_journal_stream) else {
        return false;
    };
    match fs::metadata("/proc/self/fd/2") {
        Ok(meta) => meta.dev() == device && meta.ino() == inode,
        Err(_) => false,
    }
}

fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (device, inode) = value.split_once(':')?;
    Some((device.parse().ok()?, inode.parse().ok()?))
}

/// Formats a time as RFC 3339 UTC with microseconds, e.g. `2026-12-04T19:55:00.123456Z`.
pub fn format_utc(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let second_of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_micros()
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day),
/// following Howard Hinnant's `civil_from_days` algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slog::{o, Logger};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[test]
    fn utc_format_of_epoch() {
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn utc_format_of_leap_day() {
        // 2024-02-29T12:34:56.789012Z
        let time = UNIX_EPOCH + Duration::new(1_709_210_096, 789_012_000);
        assert_eq!(format_utc(time), "2024-02-29T12:34:56.789012Z");
    }

    #[test]
    fn utc_format_of_year_end() {
        // 2026-12-31T23:59:59Z
        let time = UNIX_EPOCH + Duration::from_secs(1_798_761_599);
        assert_eq!(format_utc(time), "2026-12-31T23:59:59.000000Z");
    }

    #[test]
    fn journal_stream_value_parses() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("a:1"), None);
    }

    /// Drain that stores formatted lines, for checking the line format.
    struct Capture {
        drain: StderrDrain,
        lines: Arc<Mutex<Vec<String>>>,
    }

    impl Drain for Capture {
        type Ok = ();
        type Err = slog::Never;

        fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
            let line = self.drain.format_line(record, values);
            self.lines.lock().unwrap().push(line);
            Ok(())
        }
    }

    fn capture_line(journal_stream: bool) -> String {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let drain = Capture {
            drain: StderrDrain { journal_stream },
            lines: Arc::clone(&lines),
        };
        let logger = Logger::root(
            drain,
            o!("SERVICE" => "mxrc-nonrt", "SYSLOG_IDENTIFIER" => "mxrc-nonrt"),
        );
        slog::warn!(logger, "work loop stalled"; "cycles" => 42u64, "reason" => "two words");
        let line = lines.lock().unwrap().pop().unwrap();
        line
    }

    #[test]
    fn stderr_line_has_level_message_and_fields() {
        let line = capture_line(false);
        assert!(line.contains(" WARN  work loop stalled"), "{line}");
        assert!(line.contains(" CYCLES=42"), "{line}");
        assert!(line.contains(" SERVICE=mxrc-nonrt"), "{line}");
    }

    #[test]
    fn stderr_line_keeps_written_order() {
        let line = capture_line(false);
        let cycles = line.find("CYCLES=").unwrap();
        let reason = line.find("REASON=").unwrap();
        let service = line.find("SERVICE=").unwrap();
        assert!(cycles < reason, "{line}");
        assert!(reason < service, "{line}");
    }

    #[test]
    fn stderr_line_quotes_values_with_spaces() {
        let line = capture_line(false);
        assert!(line.contains(" REASON=\"two words\""), "{line}");
    }

    #[test]
    fn stderr_line_omits_journald_only_keys() {
        let line = capture_line(false);
        assert!(!line.contains("SYSLOG_IDENTIFIER"), "{line}");
    }

    #[test]
    fn stderr_line_on_journal_stream_has_priority_prefix() {
        let line = capture_line(true);
        assert!(line.starts_with("<4>WARN  work loop stalled"), "{line}");
    }
}
