//! Command-line interface of `mxrc-nonrt`.

use std::fmt;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Shortest accepted main loop period, in milliseconds.
pub const MIN_PERIOD_MS: u64 = 1;
/// Longest accepted main loop period, in milliseconds.
pub const MAX_PERIOD_MS: u64 = 60_000;
/// Shortest accepted interval between STATUS= updates, in milliseconds.
pub const MIN_STATUS_INTERVAL_MS: u64 = 100;
/// Longest accepted interval between STATUS= updates, in milliseconds (one hour).
pub const MAX_STATUS_INTERVAL_MS: u64 = 3_600_000;

/// Non-real-time MXRC worker that runs under systemd as a Type=notify service.
#[derive(Debug, Parser)]
#[command(name = "mxrc-nonrt", version, about)]
pub struct Cli {
    /// Period of the main work loop, in milliseconds.
    #[arg(
        long = "period-ms",
        default_value_t = 100,
        value_parser = clap::value_parser!(u64).range(MIN_PERIOD_MS..=MAX_PERIOD_MS)
    )]
    pub period_ms: u64,

    /// Interval between STATUS= updates sent to systemd, in milliseconds.
    /// Must not be shorter than --period-ms.
    #[arg(
        long = "status-interval-ms",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(MIN_STATUS_INTERVAL_MS..=MAX_STATUS_INTERVAL_MS)
    )]
    pub status_interval_ms: u64,

    /// Test aid: on SIGUSR1 the main work loop stalls forever while the
    /// process and its watchdog thread stay alive, so the systemd watchdog
    /// stops the service.
    #[arg(long = "fault-injection")]
    pub fault_injection: bool,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Logging and trace options shared by the service and its subcommands.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log destination. `auto` selects journald when JOURNAL_STREAM is set
    /// or /run/systemd/journal/socket exists, and stderr otherwise.
    #[arg(long = "log.target", value_enum, default_value_t = LogTarget::Auto, global = true)]
    pub target: LogTarget,

    /// Lowest level that is logged.
    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info, global = true)]
    pub level: LogLevel,

    /// W3C trace context of the caller (`00-<32 hex>-<16 hex>-<2 hex>`).
    /// Falls back to the TRACEPARENT environment variable. Without either,
    /// a new trace id is generated.
    #[arg(long = "traceparent", global = true, value_name = "TRACEPARENT")]
    pub traceparent: Option<String>,
}

/// Subcommands that replace the service mode.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write records through the journald drain to measure log latency,
    /// then print how many were sent. Not part of the service.
    BenchLog(BenchLogArgs),
}

/// Options of the `bench-log` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchLogArgs {
    /// Number of records to send.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub count: u64,

    /// Pause between two records, in microseconds. 0 sends back to back.
    #[arg(long = "interval-us", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub interval_us: u64,
}

/// Log destination selected by `--log.target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogTarget {
    Auto,
    Journald,
    Stderr,
}

/// Lowest logged level selected by `--log.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

impl LogLevel {
    /// Returns the matching slog level.
    pub fn to_slog(self) -> slog::Level {
        match self {
            LogLevel::Error => slog::Level::Error,
            LogLevel::Warn => slog::Level::Warning,
            LogLevel::Info => slog::Level::Info,
            LogLevel::Debug => slog::Level::Debug,
        }
    }
}

/// Validated timing settings of the service mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub period: Duration,
    pub status_interval: Duration,
}

/// Flag combination that clap's per-flag checks cannot reject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidFlags(String);

impl fmt::Display for InvalidFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidFlags {}

impl Cli {
    /// Checks the flags against each other and returns the loop timing.
    pub fn timing(&self) -> Result<Timing, InvalidFlags> {
        validate_timing(self.period_ms, self.status_interval_ms)
    }
}

/// Checks that the STATUS= interval spans at least one loop period.
pub fn validate_timing(period_ms: u64, status_interval_ms: u64) -> Result<Timing, InvalidFlags> {
    if status_interval_ms < period_ms {
        return Err(InvalidFlags(format!(
            "invalid --status-interval-ms {status_interval_ms}: it is shorter than \
             --period-ms {period_ms}; set it to at least {period_ms}"
        )));
    }
    Ok(Timing {
        period: Duration::from_millis(period_ms),
        status_interval: Duration::from_millis(status_interval_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("mxrc-nonrt").chain(args.iter().copied()))
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_without_flags() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.period_ms, 100);
        assert_eq!(cli.status_interval_ms, 5000);
        assert!(!cli.fault_injection);
        assert_eq!(cli.log.target, LogTarget::Auto);
        assert_eq!(cli.log.level, LogLevel::Info);
        assert_eq!(cli.log.traceparent, None);
        assert!(cli.command.is_none());
    }

    #[test]
    fn dotted_log_flags_parse() {
        let cli = parse(&["--log.target", "stderr", "--log.level", "debug"]).unwrap();
        assert_eq!(cli.log.target, LogTarget::Stderr);
        assert_eq!(cli.log.level, LogLevel::Debug);
    }

    #[test]
    fn unknown_log_target_rejected() {
        assert!(parse(&["--log.target", "syslog"]).is_err());
    }

    #[test]
    fn unknown_log_level_rejected() {
        assert!(parse(&["--log.level", "trace"]).is_err());
    }

    #[test]
    fn zero_period_rejected() {
        assert!(parse(&["--period-ms", "0"]).is_err());
    }

    #[test]
    fn period_above_maximum_rejected() {
        assert!(parse(&["--period-ms", "60001"]).is_err());
        assert!(parse(&["--period-ms", "60000"]).is_ok());
    }

    #[test]
    fn status_interval_below_minimum_rejected() {
        assert!(parse(&["--status-interval-ms", "99"]).is_err());
    }

    #[test]
    fn status_interval_shorter_than_period_rejected() {
        let cli = parse(&["--period-ms", "1000", "--status-interval-ms", "500"]).unwrap();
        let err = cli.timing().unwrap_err().to_string();
        assert!(err.contains("500"), "{err}");
        assert!(err.contains("1000"), "{err}");
    }

    #[test]
    fn status_interval_equal_to_period_accepted() {
        let timing = validate_timing(1000, 1000).unwrap();
        assert_eq!(timing.period, Duration::from_millis(1000));
        assert_eq!(timing.status_interval, Duration::from_millis(1000));
    }

    #[test]
    fn bench_log_accepts_global_flags_after_subcommand() {
        let cli = parse(&["bench-log", "--count", "5", "--log.target", "journald"]).unwrap();
        assert_eq!(cli.log.target, LogTarget::Journald);
        match cli.command {
            Some(Command::BenchLog(args)) => {
                assert_eq!(args.count, 5);
                assert_eq!(args.interval_us, 0);
            }
            None => panic!("bench-log subcommand not parsed"),
        }
    }

    #[test]
    fn bench_log_zero_count_rejected() {
        assert!(parse(&["bench-log", "--count", "0"]).is_err());
    }

    #[test]
    fn log_level_maps_to_slog() {
        assert_eq!(LogLevel::Error.to_slog(), slog::Level::Error);
        assert_eq!(LogLevel::Warn.to_slog(), slog::Level::Warning);
        assert_eq!(LogLevel::Info.to_slog(), slog::Level::Info);
        assert_eq!(LogLevel::Debug.to_slog(), slog::Level::Debug);
    }
}
