//! Structured logging shared by the MXRC binaries: slog records go to
//! journald or stderr, and every record carries SERVICE, TRACE_ID and
//! SPAN_ID (plus PARENT_SPAN_ID in child spans) next to its own key-value
//! pairs. docs/logging.md describes the fields.

pub mod journald;
pub mod repeat;
pub mod stderr;
pub mod trace;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::path::Path;
use std::time::Instant;

use slog::{o, Drain, Level, Logger};

use crate::cli::{LogArgs, LogTarget};
use journald::{JournaldOutput, JOURNAL_SOCKET};
use repeat::{RepeatCounter, Report};
use stderr::StderrDrain;
use trace::{InvalidTraceParent, SpanId, TraceId, TraceParent, TRACEPARENT_FORMAT};

/// Value of the SERVICE and SYSLOG_IDENTIFIER fields.
pub const SERVICE_NAME: &str = "mxrc-nonrt";

/// Field names of the shared conventions. slog-journald upper-cases keys,
/// so these are written upper-case already to read the same in code,
/// journald and stderr.
pub const SERVICE_KEY: &str = "SERVICE";
pub const TRACE_ID_KEY: &str = "TRACE_ID";
pub const SPAN_ID_KEY: &str = "SPAN_ID";
pub const PARENT_SPAN_ID_KEY: &str = "PARENT_SPAN_ID";
pub const SYSLOG_IDENTIFIER_KEY: &str = "SYSLOG_IDENTIFIER";

/// Returns the syslog priority (PRIORITY field) for a slog level:
/// critical 2, error 3, warning 4, info 6, debug and trace 7.
pub fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Critical => 2,
        Level::Error => 3,
        Level::Warning => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Returns the journald field name for a slog key, using the rule of
/// slog-journald 3.0.0: ASCII letters are upper-cased, digits kept, any
/// other character becomes `_`, and leading non-alphanumerics are dropped.
pub fn field_name(key: &str) -> String {
    let mut name = String::with_capacity(key.len());
    for c in key.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_uppercase());
        } else if !name.is_empty() {
            name.push('_');
        }
    }
    name
}

/// Log output chosen after resolving `--log.target auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Journald,
    Stderr,
}

impl Output {
    pub fn as_str(self) -> &'static str {
        match self {
            Output::Journald => "journald",
            Output::Stderr => "stderr",
        }
    }
}

/// Error while setting up logging or the trace context.
#[derive(Debug)]
pub enum SetupError {
    JournaldUnavailable,
    InvalidTraceParent {
        source_name: &'static str,
        error: InvalidTraceParent,
    },
    TraceParentNotUtf8,
    Random(io::Error),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::JournaldUnavailable => write!(
                f,
                "--log.target journald was requested but the journald socket {JOURNAL_SOCKET} \
                 does not exist; start journald or use --log.target stderr"
            ),
            SetupError::InvalidTraceParent { source_name, error } => write!(
                f,
                "invalid traceparent {:?} from {source_name}: {}; expected {TRACEPARENT_FORMAT}",
                error.value, error.reason
            ),
            SetupError::TraceParentNotUtf8 => write!(
                f,
                "invalid TRACEPARENT environment variable: the value is not UTF-8; \
                 unset it or pass --traceparent"
            ),
            SetupError::Random(error) => {
                write!(f, "failed to generate a trace or span id: {error}")
            }
        }
    }
}

impl std::error::Error for SetupError {}

/// Resolves `--log.target`. `auto` picks journald when JOURNAL_STREAM is
/// set or the journald socket exists.
pub fn resolve_output(
    target: LogTarget,
    journal_stream_set: bool,
    journal_socket_exists: bool,
) -> Result<Output, SetupError> {
    match target {
        LogTarget::Auto if journal_stream_set || journal_socket_exists => Ok(Output::Journald),
        LogTarget::Auto => Ok(Output::Stderr),
        LogTarget::Journald if journal_socket_exists => Ok(Output::Journald),
        LogTarget::Journald => Err(SetupError::JournaldUnavailable),
        LogTarget::Stderr => Ok(Output::Stderr),
    }
}

/// Origin of the trace id of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceSource {
    Flag,
    Environment,
    Generated,
}

impl TraceSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TraceSource::Flag => "--traceparent",
            TraceSource::Environment => "TRACEPARENT",
            TraceSource::Generated => "generated",
        }
    }
}

/// Trace context of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: TraceId,
    /// Span of this process. Root records carry it as SPAN_ID.
    pub process_span: SpanId,
    /// Span id from an accepted traceparent. Root records carry it as PARENT_SPAN_ID.
    pub caller_span: Option<SpanId>,
    pub source: TraceSource,
}

impl TraceContext {
    /// Builds the context from `--traceparent`, else the TRACEPARENT
    /// environment value (ignored when empty), else new random ids.
    pub fn resolve(flag: Option<&str>, env: Option<OsString>) -> Result<TraceContext, SetupError> {
        let env = env.filter(|value| !value.is_empty());
        let (header, source) = match (flag, env) {
            (Some(value), _) => (Some(value.to_owned()), TraceSource::Flag),
            (None, Some(value)) => {
                let value = value
                    .into_string()
                    .map_err(|_| SetupError::TraceParentNotUtf8)?;
                (Some(value), TraceSource::Environment)
            }
            (None, None) => (None, TraceSource::Generated),
        };

        let process_span = SpanId::generate().map_err(SetupError::Random)?;
        let Some(header) = header else {
            let trace_id = TraceId::generate().map_err(SetupError::Random)?;
            return Ok(TraceContext {
                trace_id,
                process_span,
                caller_span: None,
                source,
            });
        };

        let parent =
            TraceParent::parse(&header).map_err(|error| SetupError::InvalidTraceParent {
                source_name: match source {
                    TraceSource::Flag => "--traceparent",
                    _ => "the TRACEPARENT environment variable",
                },
                error,
            })?;
        Ok(TraceContext {
            trace_id: parent.trace_id,
            process_span,
            caller_span: Some(parent.parent_id),
            source,
        })
    }
}

/// Loggers of this process: the root logger of the process span and a
/// factory for child spans.
#[derive(Clone)]
pub struct Logging {
    /// SERVICE, SYSLOG_IDENTIFIER and TRACE_ID, without a span, so that
    /// each span adds exactly one SPAN_ID field.
    base: Logger,
    process: Logger,
    trace: TraceContext,
}

impl Logging {
    /// Builds the loggers for the service mode from the command line.
    pub fn from_args(args: &LogArgs, trace: TraceContext) -> Result<(Logging, Output), SetupError> {
        let output = resolve_output(
            args.target,
            std::env::var_os("JOURNAL_STREAM").is_some(),
            Path::new(JOURNAL_SOCKET).exists(),
        )?;
        let level = args.level.to_slog();
        let logging = match output {
            Output::Journald => Logging::with_drain(
                JournaldOutput::new().filter_level(level).ignore_res(),
                trace,
            ),
            Output::Stderr => {
                Logging::with_drain(StderrDrain::new().filter_level(level).ignore_res(), trace)
            }
        };
        Ok((logging, output))
    }

    /// Builds the loggers on top of any drain.
    pub fn with_drain<D>(drain: D, trace: TraceContext) -> Logging
    where
        D: Drain<Ok = (), Err = slog::Never> + Send + Sync + RefUnwindSafe + UnwindSafe + 'static,
    {
        let base = Logger::root(
            drain,
            o!(
                SERVICE_KEY => SERVICE_NAME,
                SYSLOG_IDENTIFIER_KEY => SERVICE_NAME,
                TRACE_ID_KEY => trace.trace_id.to_string(),
            ),
        );
        let process = match trace.caller_span {
            Some(caller) => base.new(o!(
                SPAN_ID_KEY => trace.process_span.to_string(),
                PARENT_SPAN_ID_KEY => caller.to_string(),
            )),
            None => base.new(o!(SPAN_ID_KEY => trace.process_span.to_string())),
        };
        Logging {
            base,
            process,
            trace,
        }
    }

    /// Returns the logger of the process span.
    pub fn logger(&self) -> &Logger {
        &self.process
    }

    pub fn trace(&self) -> &TraceContext {
        &self.trace
    }

    /// Creates a logger for a child span with a new SPAN_ID and
    /// PARENT_SPAN_ID set to the process span.
    pub fn child_span(&self) -> io::Result<(Logger, SpanId)> {
        let span = SpanId::generate()?;
        let logger = self.base.new(o!(
            SPAN_ID_KEY => span.to_string(),
            PARENT_SPAN_ID_KEY => self.trace.process_span.to_string(),
        ));
        Ok((logger, span))
    }
}

/// Logs an error that may repeat: the first occurrence in full, later ones
/// as a summary at most once per counter interval.
pub fn log_repeated_error(
    logger: &Logger,
    counter: &mut RepeatCounter,
    message: &str,
    error: &dyn fmt::Display,
) {
    match counter.record_error(Instant::now()) {
        Report::First => slog::error!(logger, "{}", message; "error" => %error),
        Report::Suppressed => {}
        Report::Summary { count, span } => slog::error!(
            logger, "{} (repeated)", message;
            "error" => %error,
            "repeat_count" => count,
            "repeat_window_s" => span.as_secs(),
        ),
    }
}

/// Logs the end of a run of repeated errors, if there was one.
pub fn log_recovery(logger: &Logger, counter: &mut RepeatCounter, message: &str) {
    if let Some(count) = counter.record_success() {
        slog::info!(logger, "{}", message; "failed_attempts" => count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slog::KV;
    use std::ffi::OsString;
    use std::sync::{Arc, Mutex};

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const OTHER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn field_name_matches_slog_journald_rule() {
        assert_eq!(field_name("cycles"), "CYCLES");
        assert_eq!(field_name("TRACE_ID"), "TRACE_ID");
        assert_eq!(field_name("ticks-late"), "TICKS_LATE");
        assert_eq!(field_name("_private"), "PRIVATE");
        assert_eq!(field_name("a.b"), "A_B");
    }

    #[test]
    fn auto_target_uses_journald_with_journal_stream() {
        assert_eq!(
            resolve_output(LogTarget::Auto, true, false).unwrap(),
            Output::Journald
        );
    }

    #[test]
    fn auto_target_uses_journald_with_socket() {
        assert_eq!(
            resolve_output(LogTarget::Auto, false, true).unwrap(),
            Output::Journald
        );
    }

    #[test]
    fn auto_target_falls_back_to_stderr() {
        assert_eq!(
            resolve_output(LogTarget::Auto, false, false).unwrap(),
            Output::Stderr
        );
    }

    #[test]
    fn journald_target_without_socket_rejected() {
        let err = resolve_output(LogTarget::Journald, true, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains(JOURNAL_SOCKET), "{err}");
        assert!(err.contains("--log.target stderr"), "{err}");
    }

    #[test]
    fn stderr_target_ignores_journald() {
        assert_eq!(
            resolve_output(LogTarget::Stderr, true, true).unwrap(),
            Output::Stderr
        );
    }

    #[test]
    fn trace_flag_wins_over_environment() {
        let ctx = TraceContext::resolve(Some(VALID), Some(OsString::from(OTHER))).unwrap();
        assert_eq!(ctx.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.caller_span.unwrap().to_string(), "00f067aa0ba902b7");
        assert_eq!(ctx.source, TraceSource::Flag);
    }

    #[test]
    fn trace_from_environment() {
        let ctx = TraceContext::resolve(None, Some(OsString::from(OTHER))).unwrap();
        assert_eq!(ctx.trace_id.to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(ctx.source, TraceSource::Environment);
    }

    #[test]
    fn process_span_differs_from_caller_span() {
        let ctx = TraceContext::resolve(Some(VALID), None).unwrap();
        assert_ne!(Some(ctx.process_span), ctx.caller_span);
    }

    #[test]
    fn trace_generated_without_input() {
        let ctx = TraceContext::resolve(None, None).unwrap();
        assert_eq!(ctx.source, TraceSource::Generated);
        assert_eq!(ctx.caller_span, None);
        assert_eq!(ctx.trace_id.to_string().len(), 32);
    }

    #[test]
    fn empty_environment_trace_ignored() {
        let ctx = TraceContext::resolve(None, Some(OsString::new())).unwrap();
        assert_eq!(ctx.source, TraceSource::Generated);
    }

    #[test]
    fn invalid_flag_trace_names_flag_and_value() {
        let err = TraceContext::resolve(Some("00-zz"), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid traceparent \"00-zz\" from --traceparent"),
            "{err}"
        );
    }

    #[test]
    fn invalid_environment_trace_names_variable() {
        let err = TraceContext::resolve(None, Some(OsString::from("bogus")))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "invalid traceparent \"bogus\" from the TRACEPARENT environment variable"
            ),
            "{err}"
        );
    }

    /// (journald field name, value) pairs of one record.
    type Fields = Vec<(String, String)>;

    /// Drain that stores the fields of each record.
    struct FieldCapture {
        records: Arc<Mutex<Vec<Fields>>>,
    }

    struct Collect(Fields);

    impl slog::Serializer for Collect {
        fn emit_arguments(&mut self, key: slog::Key, val: &fmt::Arguments) -> slog::Result {
            self.0.push((field_name(key), val.to_string()));
            Ok(())
        }
    }

    impl Drain for FieldCapture {
        type Ok = ();
        type Err = slog::Never;

        fn log(
            &self,
            record: &slog::Record,
            values: &slog::OwnedKVList,
        ) -> Result<(), slog::Never> {
            let mut fields = Collect(Vec::new());
            let _ = record.kv().serialize(record, &mut fields);
            let _ = values.serialize(record, &mut fields);
            self.records.lock().unwrap().push(fields.0);
            Ok(())
        }
    }

    fn values_of(fields: &[(String, String)], name: &str) -> Vec<String> {
        fields
            .iter()
            .filter(|(field, _)| field == name)
            .map(|(_, value)| value.clone())
            .collect()
    }

    fn capture_records(trace: TraceContext) -> (Fields, Fields, SpanId) {
        let records = Arc::new(Mutex::new(Vec::new()));
        let drain = FieldCapture {
            records: Arc::clone(&records),
        };
        let logging = Logging::with_drain(drain, trace);
        slog::info!(logging.logger(), "root record"; "cycles" => 3u64);
        let (child, child_span) = logging.child_span().unwrap();
        slog::info!(child, "child record");
        let mut records = records.lock().unwrap();
        let child_fields = records.pop().unwrap();
        let root_fields = records.pop().unwrap();
        (root_fields, child_fields, child_span)
    }

    #[test]
    fn root_record_carries_shared_fields() {
        let trace = TraceContext::resolve(None, None).unwrap();
        let (root, _, _) = capture_records(trace);
        assert_eq!(values_of(&root, "SERVICE"), vec!["mxrc-nonrt"]);
        assert_eq!(values_of(&root, "SYSLOG_IDENTIFIER"), vec!["mxrc-nonrt"]);
        assert_eq!(
            values_of(&root, "TRACE_ID"),
            vec![trace.trace_id.to_string()]
        );
        assert_eq!(
            values_of(&root, "SPAN_ID"),
            vec![trace.process_span.to_string()]
        );
        assert_eq!(values_of(&root, "CYCLES"), vec!["3"]);
        assert!(values_of(&root, "PARENT_SPAN_ID").is_empty());
    }

    #[test]
    fn root_record_links_caller_span() {
        let trace = TraceContext::resolve(Some(VALID), None).unwrap();
        let (root, _, _) = capture_records(trace);
        assert_eq!(values_of(&root, "PARENT_SPAN_ID"), vec!["00f067aa0ba902b7"]);
        assert_eq!(
            values_of(&root, "TRACE_ID"),
            vec!["4bf92f3577b34da6a3ce929d0e0e4736"]
        );
    }

    #[test]
    fn child_record_has_one_span_and_parent() {
        let trace = TraceContext::resolve(Some(VALID), None).unwrap();
        let (_, child, child_span) = capture_records(trace);
        assert_eq!(values_of(&child, "SPAN_ID"), vec![child_span.to_string()]);
        assert_eq!(
            values_of(&child, "PARENT_SPAN_ID"),
            vec![trace.process_span.to_string()]
        );
        assert_eq!(
            values_of(&child, "TRACE_ID"),
            vec![trace.trace_id.to_string()]
        );
        assert_eq!(values_of(&child, "SERVICE"), vec!["mxrc-nonrt"]);
    }

    #[test]
    fn child_span_has_new_span_id() {
        let ctx = TraceContext::resolve(None, None).unwrap();
        let logging = Logging::with_drain(slog::Discard, ctx);
        let (_, first) = logging.child_span().unwrap();
        let (_, second) = logging.child_span().unwrap();
        assert_ne!(first, ctx.process_span);
        assert_ne!(first, second);
    }
}
