//! Logger setup (journald or stderr through slog) and W3C trace context.

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{self, Read, Write as _};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use slog::{o, Drain, Level, Logger, OwnedKVList, Record, RecordStatic, KV};

use crate::cli::{LogArgs, LogLevel, LogTarget};
use crate::repeat::{RepeatCounter, Report};

/// Value of the SERVICE field on every record.
///
/// Record keys become journald fields in upper case. libsystemd 0.7 drops
/// keys named PRIORITY or MESSAGE, so records use other names for those.
pub const SERVICE: &str = "mxrc-rt";

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Trace context of this process: the trace it belongs to and its own span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: TraceId,
    /// Span of this process; the parent of every child span it opens.
    pub span_id: SpanId,
    /// Parent span id of an accepted traceparent: the caller's span, which
    /// root records carry as PARENT_SPAN_ID.
    pub caller_span_id: Option<SpanId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId(pub u128);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanId(pub u64);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Parses a W3C traceparent header value and returns its trace id and
/// parent span id.
///
/// Only version 00 is accepted. All-zero trace or parent ids are invalid.
pub fn parse_traceparent(value: &str) -> Result<(TraceId, SpanId), String> {
    let invalid = |reason: &str| {
        format!(
            "invalid traceparent {value:?}: {reason}; expected \
             \"00-<32 hex trace id>-<16 hex span id>-<2 hex flags>\""
        )
    };

    let parts: Vec<&str> = value.split('-').collect();
    let [version, trace, parent, flags] = parts[..] else {
        return Err(invalid("it must have 4 dash-separated fields"));
    };

    let is_lower_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if version != "00" {
        return Err(invalid("only version 00 is supported"));
    }
    if trace.len() != 32 || !is_lower_hex(trace) {
        return Err(invalid("trace id must be 32 lower-case hex digits"));
    }
    if parent.len() != 16 || !is_lower_hex(parent) {
        return Err(invalid("parent id must be 16 lower-case hex digits"));
    }
    if flags.len() != 2 || !is_lower_hex(flags) {
        return Err(invalid("flags must be 2 lower-case hex digits"));
    }

    let trace_id = u128::from_str_radix(trace, 16).map_err(|_| invalid("bad trace id"))?;
    let parent_id = u64::from_str_radix(parent, 16).map_err(|_| invalid("bad parent id"))?;
    if trace_id == 0 {
        return Err(invalid("all-zero trace id"));
    }
    if parent_id == 0 {
        return Err(invalid("all-zero parent id"));
    }
    Ok((TraceId(trace_id), SpanId(parent_id)))
}

/// Builds the trace context from `--traceparent`, else env TRACEPARENT, else
/// a random trace id; the process span id is always new.
pub fn trace_context(flag: Option<&str>) -> Result<TraceContext, String> {
    let from_env = std::env::var("TRACEPARENT").ok();
    let (trace_id, caller_span_id) = match flag.or(from_env.as_deref()) {
        Some(value) => {
            let (trace_id, parent) = parse_traceparent(value)?;
            (trace_id, Some(parent))
        }
        None => (TraceId(random_nonzero_u128()?), None),
    };
    Ok(TraceContext {
        trace_id,
        span_id: new_span_id()?,
        caller_span_id,
    })
}

/// Returns a random non-zero span id read from /dev/urandom.
pub fn new_span_id() -> Result<SpanId, String> {
    loop {
        let mut bytes = [0u8; 8];
        read_urandom(&mut bytes)?;
        let id = u64::from_ne_bytes(bytes);
        if id != 0 {
            return Ok(SpanId(id));
        }
    }
}

fn random_nonzero_u128() -> Result<u128, String> {
    loop {
        let mut bytes = [0u8; 16];
        read_urandom(&mut bytes)?;
        let id = u128::from_ne_bytes(bytes);
        if id != 0 {
            return Ok(id);
        }
    }
}

fn read_urandom(buf: &mut [u8]) -> Result<(), String> {
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| format!("failed to read /dev/urandom for a trace id: {e}"))
}

/// Loggers of the process: `base` carries SERVICE and TRACE_ID only, so that
/// span loggers derived from it carry exactly one SPAN_ID.
#[derive(Clone)]
pub struct Loggers {
    base: Logger,
    /// Logger for the process's root records (SPAN_ID = process span).
    pub root: Logger,
    pub trace: TraceContext,
}

impl Loggers {
    /// Returns a logger for a child span of the process span.
    pub fn child_span(&self, span: SpanId) -> Logger {
        self.base.new(o!(
            "SPAN_ID" => span.to_string(),
            "PARENT_SPAN_ID" => self.trace.span_id.to_string(),
        ))
    }
}

/// Builds the process loggers for the configured target and level.
pub fn build(args: &LogArgs, trace: TraceContext) -> Loggers {
    let level = match args.level {
        LogLevel::Error => Level::Error,
        LogLevel::Warn => Level::Warning,
        LogLevel::Info => Level::Info,
        LogLevel::Debug => Level::Debug,
    };
    let use_journald = match args.target {
        LogTarget::Journald => true,
        LogTarget::Stderr => false,
        LogTarget::Auto => {
            std::env::var_os("JOURNAL_STREAM").is_some() || Path::new(JOURNAL_SOCKET).exists()
        }
    };
    let trace_id = trace.trace_id.to_string();
    let base = if use_journald {
        let drain = JournaldWithFallback {
            journald: SyslogPriority(slog_journald::JournaldDrain::default()),
            stderr: StderrDrain,
            failures: Mutex::new(RepeatCounter::default()),
        };
        // SYSLOG_IDENTIFIER is what `journalctl -t` matches.
        let values = o!("SERVICE" => SERVICE, "SYSLOG_IDENTIFIER" => SERVICE,
                        "TRACE_ID" => trace_id);
        Logger::root(slog::LevelFilter::new(drain, level).fuse(), values)
    } else {
        let values = o!("SERVICE" => SERVICE, "TRACE_ID" => trace_id);
        Logger::root(slog::LevelFilter::new(StderrDrain, level).fuse(), values)
    };
    let span = trace.span_id.to_string();
    let root = match trace.caller_span_id {
        Some(caller) => base.new(o!("SPAN_ID" => span, "PARENT_SPAN_ID" => caller.to_string())),
        None => base.new(o!("SPAN_ID" => span)),
    };
    Loggers { base, root, trace }
}

/// Shifts slog levels so that journald gets the syslog PRIORITY the MXRC
/// binaries agree on (info 6, debug 7).
///
/// slog-journald 3.0.0 maps Info to PRIORITY 5 (notice) and Debug to 6, and
/// drops any PRIORITY field passed as a key-value pair. Passing Info records
/// on as Debug and Debug as Trace yields 6 and 7; other levels pass through
/// (critical 2, error 3, warning 4).
struct SyslogPriority<D>(D);

impl<D: Drain> Drain for SyslogPriority<D> {
    type Ok = D::Ok;
    type Err = D::Err;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<D::Ok, D::Err> {
        let level = match record.level() {
            Level::Info => Level::Debug,
            Level::Debug => Level::Trace,
            _ => return self.0.log(record, values),
        };
        let rstatic = RecordStatic {
            location: record.location(),
            tag: record.tag(),
            level,
        };
        self.0
            .log(&Record::new(&rstatic, record.msg(), record.kv()), values)
    }
}

/// Sends records to journald and writes them to stderr when that fails.
///
/// The first failure is reported on stderr in full, repeats once a minute,
/// and the first success after failures once.
struct JournaldWithFallback<J> {
    journald: J,
    stderr: StderrDrain,
    failures: Mutex<RepeatCounter>,
}

impl<J: Drain> Drain for JournaldWithFallback<J>
where
    J::Err: fmt::Display,
{
    type Ok = ();
    type Err = io::Error;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> io::Result<()> {
        let result = self.journald.log(record, values);
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let error = match result {
            Ok(_) => {
                if let Some(count) = failures.record_success() {
                    write_stderr(&format!(
                        "INFO journald send works again after {count} failures"
                    ))?;
                }
                return Ok(());
            }
            Err(error) => error,
        };
        match failures.record_error(Instant::now()) {
            Report::First => write_stderr(&format!(
                "ERRO journald send failed, writing records to stderr; repeats are \
                 summarised once a minute ERROR={error}"
            ))?,
            Report::Summary { count, elapsed } => write_stderr(&format!(
                "ERRO journald send failed {count} more times in the last {} s ERROR={error}",
                elapsed.as_secs()
            ))?,
            Report::Suppressed => {}
        }
        drop(failures);
        self.stderr.log(record, values)
    }
}

/// Writes one line per record to stderr: `LEVEL message KEY=value ...`.
struct StderrDrain;

impl Drain for StderrDrain {
    type Ok = ();
    type Err = io::Error;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> io::Result<()> {
        let mut line = format!("{} {}", record.level().as_short_str(), record.msg());
        let mut fields = LineSerializer(&mut line);
        // Record values first so that they are easy to spot; logger values follow.
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        write_stderr(&line)
    }
}

/// Writes `line` and a newline to stderr in one call, so that lines of
/// different threads do not interleave.
fn write_stderr(line: &str) -> io::Result<()> {
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    io::stderr().lock().write_all(buf.as_bytes())
}

struct LineSerializer<'a>(&'a mut String);

impl slog::Serializer for LineSerializer<'_> {
    fn emit_arguments(&mut self, key: slog::Key, value: &fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {}={}", key.to_uppercase(), value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_valid_returns_trace_id() {
        let (trace, parent) = parse_traceparent(VALID).unwrap();
        assert_eq!(trace.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn traceparent_all_zero_ids_rejected() {
        let zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        let zero_parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
        assert!(parse_traceparent(zero_trace)
            .unwrap_err()
            .contains("all-zero trace id"));
        assert!(parse_traceparent(zero_parent)
            .unwrap_err()
            .contains("all-zero parent id"));
    }

    #[test]
    fn traceparent_malformed_error_names_value() {
        let cases = [
            "",
            "garbage",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ];
        for bad in cases {
            let err = parse_traceparent(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad:?}: {err}");
        }
    }

    #[test]
    fn trace_context_from_flag() {
        let a = trace_context(Some(VALID)).unwrap();
        let b = trace_context(Some(VALID)).unwrap();
        assert_eq!(a.trace_id, b.trace_id);
        assert_ne!(a.span_id, b.span_id);
        assert_eq!(a.caller_span_id, Some(SpanId(0x00f067aa0ba902b7)));
        assert_ne!(a.span_id.0, 0x00f067aa0ba902b7);
    }

    #[test]
    fn ids_format_as_fixed_width_hex() {
        assert_eq!(SpanId(0xab).to_string(), "00000000000000ab");
        assert_eq!(TraceId(1).to_string().len(), 32);
    }
}
