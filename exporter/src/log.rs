//! slog setup, shared by all MXRC binaries by convention: journald or stderr,
//! SERVICE, TRACE_ID and SPAN_ID on every record, W3C trace context.

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{Read, Write as _};
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use slog::{o, Drain, Level, LevelFilter, Logger, OwnedKVList, Record, RecordStatic, KV};
use slog_journald::JournaldDrain;

use crate::cli::{LogLevel, LogTarget};

/// Value of the SERVICE field.
pub const SERVICE: &str = "mxrc-monitor";

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Trace and span ids of this process (W3C trace context).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// 16 lower-case hex digits, the span of this process.
    pub span_id: String,
    /// Span id from the caller's traceparent, when one was given.
    pub parent_span_id: Option<String>,
}

impl TraceContext {
    /// Builds the process's trace context from a traceparent or from random ids.
    ///
    /// `traceparent` comes from `--traceparent` or env TRACEPARENT. A malformed
    /// value is an error that quotes it.
    pub fn new(traceparent: Option<&str>) -> Result<TraceContext, String> {
        let span_id = new_span_id()?;
        match traceparent {
            Some(text) => {
                let (trace_id, parent_span_id) = parse_traceparent(text)?;
                Ok(TraceContext {
                    trace_id,
                    span_id,
                    parent_span_id: Some(parent_span_id),
                })
            }
            None => Ok(TraceContext {
                trace_id: random_hex(16)?,
                span_id,
                parent_span_id: None,
            }),
        }
    }
}

/// Returns a new random 16-hex-digit span id from /dev/urandom.
pub fn new_span_id() -> Result<String, String> {
    random_hex(8)
}

fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buffer = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut buffer))
        .map_err(|error| format!("failed to read random ids from /dev/urandom: {error}"))?;
    // An all-zero id is invalid in W3C trace context, so set one bit instead.
    if buffer.iter().all(|byte| *byte == 0) {
        buffer[bytes - 1] = 1;
    }
    Ok(buffer.iter().fold(String::new(), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    }))
}

/// Parses a W3C traceparent `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
///
/// Returns the trace id and the parent span id.
pub fn parse_traceparent(text: &str) -> Result<(String, String), String> {
    let invalid = |reason: &str| {
        format!(
            "invalid traceparent {text:?}: {reason}; expected 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"
        )
    };
    let parts: Vec<&str> = text.split('-').collect();
    let [version, trace_id, span_id, flags] = parts.as_slice() else {
        return Err(invalid("expected 4 fields separated by '-'"));
    };
    if *version != "00" {
        return Err(invalid("unsupported version, only 00 is accepted"));
    }
    if !is_lower_hex(trace_id, 32) || trace_id.bytes().all(|b| b == b'0') {
        return Err(invalid(
            "trace id must be 32 lower-case hex digits, not all zero",
        ));
    }
    if !is_lower_hex(span_id, 16) || span_id.bytes().all(|b| b == b'0') {
        return Err(invalid(
            "span id must be 16 lower-case hex digits, not all zero",
        ));
    }
    if !is_lower_hex(flags, 2) {
        return Err(invalid("flags must be 2 lower-case hex digits"));
    }
    Ok((trace_id.to_string(), span_id.to_string()))
}

fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Loggers of this process.
#[derive(Clone)]
pub struct Loggers {
    /// Logger for process-level records; carries SPAN_ID = the process span.
    pub root: Logger,
    /// Whether records go to journald instead of stderr.
    pub to_journald: bool,
    base: Logger,
    process_span_id: String,
}

impl Loggers {
    /// Logs a start-up error and also prints it to stderr when a user would not see the record.
    ///
    /// Under systemd (JOURNAL_STREAM set) stderr goes to the journal too, so
    /// the message is printed only when records go to journald and stderr does not.
    pub fn startup_error(&self, message: &str, error: &dyn std::fmt::Display) {
        slog::error!(self.root, "{message}"; "error" => %error);
        if self.to_journald && std::env::var_os("JOURNAL_STREAM").is_none() {
            eprintln!("{SERVICE}: {message}: {error}");
        }
    }

    /// Returns a logger for a unit of work with a fresh SPAN_ID and PARENT_SPAN_ID = the process span.
    pub fn child_span(&self) -> Logger {
        let span_id = new_span_id().unwrap_or_else(|_| "0000000000000001".to_owned());
        self.base.new(o!(
            "span_id" => span_id,
            "parent_span_id" => self.process_span_id.clone(),
        ))
    }
}

/// Builds the loggers for the chosen target and level.
pub fn build(target: LogTarget, level: LogLevel, trace: &TraceContext) -> Loggers {
    let level = match level {
        LogLevel::Error => Level::Error,
        LogLevel::Warn => Level::Warning,
        LogLevel::Info => Level::Info,
        LogLevel::Debug => Level::Debug,
    };
    let use_journald = match target {
        LogTarget::Journald => true,
        LogTarget::Stderr => false,
        LogTarget::Auto => {
            std::env::var_os("JOURNAL_STREAM").is_some() || Path::new(JOURNAL_SOCKET).exists()
        }
    };
    let drain: Box<
        dyn Drain<Ok = (), Err = slog::Never> + Send + Sync + RefUnwindSafe + UnwindSafe,
    > = if use_journald {
        let journald = SyslogLevelDrain(JournaldDrain::default()).ignore_res();
        Box::new(LevelFilter::new(journald, level).ignore_res())
    } else {
        Box::new(LevelFilter::new(StderrDrain::default(), level).ignore_res())
    };

    let base = Logger::root(
        drain,
        o!("service" => SERVICE, "trace_id" => trace.trace_id.clone()),
    );
    let mut root = base.new(o!("span_id" => trace.span_id.clone()));
    if let Some(parent) = &trace.parent_span_id {
        root = root.new(o!("parent_span_id" => parent.clone()));
    }
    Loggers {
        root,
        to_journald: use_journald,
        base,
        process_span_id: trace.span_id.clone(),
    }
}

/// Maps slog levels to syslog priorities info 6 and debug 7 before journald.
///
/// slog-journald 3.0 maps Info to NOTICE (5) and Debug to INFO (6). Shifting
/// Info and Debug down one slog level makes it emit info 6 and debug 7 as the
/// MXRC logging convention requires. Critical, Error and Warning are unchanged.
struct SyslogLevelDrain<D>(D);

impl<D: Drain> Drain for SyslogLevelDrain<D> {
    type Ok = D::Ok;
    type Err = D::Err;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<D::Ok, D::Err> {
        let level = match record.level() {
            Level::Info => Level::Debug,
            Level::Debug | Level::Trace => Level::Trace,
            other => other,
        };
        let record_static = RecordStatic {
            location: record.location(),
            tag: record.tag(),
            level,
        };
        let shifted = Record::new(&record_static, record.msg(), record.kv());
        self.0.log(&shifted, values)
    }
}

/// Writes one line per record to stderr: time, level, message, then key=value pairs.
#[derive(Default)]
struct StderrDrain {
    lock: Mutex<()>,
}

impl Drain for StderrDrain {
    type Ok = ();
    type Err = std::io::Error;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), std::io::Error> {
        let mut line = format!(
            "{} {} {}",
            format_utc(SystemTime::now()),
            record.level().as_short_str(),
            record.msg()
        );
        let mut serializer = LineSerializer(&mut line);
        // LineSerializer never returns an error.
        let _ = record.kv().serialize(record, &mut serializer);
        let _ = values.serialize(record, &mut serializer);
        line.push('\n');
        let _guard = self.lock.lock();
        std::io::stderr().write_all(line.as_bytes())
    }
}

struct LineSerializer<'a>(&'a mut String);

impl slog::Serializer for LineSerializer<'_> {
    fn emit_arguments(&mut self, key: slog::Key, value: &fmt::Arguments) -> slog::Result {
        let text = value.to_string();
        if text.is_empty() || text.contains([' ', '"', '=']) {
            let _ = write!(self.0, " {key}={text:?}");
        } else {
            let _ = write!(self.0, " {key}={text}");
        }
        Ok(())
    }
}

/// Formats a time as RFC 3339 UTC with milliseconds.
fn format_utc(time: SystemTime) -> String {
    let elapsed = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = elapsed.as_secs();
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let second_of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        elapsed.subsec_millis()
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date.
///
/// This is `civil_from_days` from Howard Hinnant, "chrono-Compatible Low-Level
/// Date Algorithms", http://howardhinnant.github.io/date_algorithms.html.
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

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_valid_parsed() {
        let (trace_id, span_id) = parse_traceparent(VALID).unwrap();
        assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span_id, "00f067aa0ba902b7");
    }

    #[test]
    fn traceparent_invalid_rejected() {
        for text in [
            "",
            "garbage",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            let message = parse_traceparent(text).unwrap_err();
            assert!(message.contains(&format!("{text:?}")), "{message}");
        }
    }

    #[test]
    fn context_keeps_caller_trace_id() {
        let context = TraceContext::new(Some(VALID)).unwrap();
        assert_eq!(context.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_ne!(context.span_id, "00f067aa0ba902b7");
    }

    #[test]
    fn generated_ids_are_hex() {
        let context = TraceContext::new(None).unwrap();
        assert!(is_lower_hex(&context.trace_id, 32), "{}", context.trace_id);
        assert!(is_lower_hex(&context.span_id, 16), "{}", context.span_id);
    }

    #[test]
    fn utc_formatting() {
        let time = UNIX_EPOCH + std::time::Duration::from_millis(1_733_340_000_123);
        assert_eq!(format_utc(time), "2024-12-04T19:20:00.123Z");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
