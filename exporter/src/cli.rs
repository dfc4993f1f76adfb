//! Command-line flags, named after the Prometheus exporter conventions.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser, ValueEnum};

use crate::units::{validate_unit_name, DEFAULT_UNITS};

/// Minimum level of the records that are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// Destination of the log records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogTarget {
    /// journald when JOURNAL_STREAM is set or /run/systemd/journal/socket exists, else stderr.
    Auto,
    Journald,
    Stderr,
}

/// Prometheus exporter for the MXRC systemd units.
#[derive(Debug, Parser)]
#[command(name = "mxrc-monitor", version, about)]
pub struct Args {
    /// Address (IP:port) on which to expose metrics and the landing page.
    #[arg(long = "web.listen-address", default_value = "127.0.0.1:9720", value_parser = parse_listen_address)]
    pub listen_address: SocketAddr,

    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", default_value = "/metrics", value_parser = parse_telemetry_path)]
    pub telemetry_path: String,

    /// Comma-separated systemd units to collect.
    #[arg(
        long = "collector.units",
        default_value = DEFAULT_UNITS,
        value_delimiter = ',',
        value_parser = validate_unit_name
    )]
    pub units: Vec<String>,

    /// Time between two collections, e.g. 1s or 500ms.
    #[arg(long = "collector.interval", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Maximum run time of one systemctl child before it is killed; must be shorter than the interval.
    #[arg(long = "collector.timeout", default_value = "800ms", value_parser = parse_duration)]
    pub timeout: Duration,

    /// systemctl binary; a name without '/' is looked up in PATH.
    #[arg(long = "systemctl.path", default_value = "systemctl")]
    pub systemctl_path: PathBuf,

    /// Collect once, print the metrics to stdout and exit.
    #[arg(long)]
    pub once: bool,

    /// Minimum level of log records.
    #[arg(long = "log.level", value_enum, default_value = "info")]
    pub log_level: LogLevel,

    /// Log destination.
    #[arg(long = "log.target", value_enum, default_value = "auto")]
    pub log_target: LogTarget,

    /// W3C traceparent of the caller (00-<trace id>-<span id>-<flags>); overrides env TRACEPARENT.
    #[arg(long)]
    pub traceparent: Option<String>,
}

impl Args {
    /// Parses the process arguments and checks the relations between flags.
    ///
    /// Exits with status 2 and a usage message on an invalid flag.
    pub fn parse_and_check() -> Args {
        let args = Args::parse();
        if let Err(message) = args.check() {
            Args::command()
                .error(clap::error::ErrorKind::ArgumentConflict, message)
                .exit();
        }
        args
    }

    /// Checks the constraints that involve more than one flag.
    pub fn check(&self) -> Result<(), String> {
        if self.timeout >= self.interval {
            return Err(format!(
                "--collector.timeout ({:?}) must be shorter than --collector.interval ({:?})",
                self.timeout, self.interval
            ));
        }
        if self.units.is_empty() {
            return Err("--collector.units must name at least one unit".to_owned());
        }
        Ok(())
    }
}

fn parse_telemetry_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') || path == "/" {
        return Err(format!(
            "invalid telemetry path {path:?}: it must start with '/' and differ from the landing page '/'"
        ));
    }
    Ok(path.to_owned())
}

/// Parses a duration such as `1s`, `500ms`, `1.5s`, `2m` or `1h`.
///
/// Zero durations are rejected because they would make the poll loop spin.
/// Parses an IP:port listen address; host names are not resolved.
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "invalid listen address {text:?}: expected IP:port, for example 127.0.0.1:9720 or [::1]:9720 (host names are not resolved)"
        )
    })
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let unit_start = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("invalid duration {text:?}: missing unit, e.g. 1s or 500ms"))?;
    let (number, unit) = text.split_at(unit_start);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: {number:?} is not a number"))?;
    let seconds_per_unit = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {unit:?}, use ms, s, m or h"
            ))
        }
    };
    let duration = Duration::try_from_secs_f64(value * seconds_per_unit)
        .map_err(|_| format!("invalid duration {text:?}: out of range"))?;
    if duration.is_zero() {
        return Err(format!(
            "invalid duration {text:?}: must be greater than zero"
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_address_error_names_value_and_form() {
        assert_eq!(
            parse_listen_address("[::1]:9720").unwrap().to_string(),
            "[::1]:9720"
        );
        let message = parse_listen_address("localhost:9720").unwrap_err();
        assert!(message.contains("\"localhost:9720\""), "{message}");
        assert!(message.contains("IP:port"), "{message}");
    }

    #[test]
    fn duration_forms_parse() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn duration_errors_quote_value() {
        for text in ["", "1", "s", "0s", "1x", "1.2.3s", "-1s"] {
            let message = parse_duration(text).unwrap_err();
            assert!(message.contains(&format!("{text:?}")), "{message}");
        }
    }

    #[test]
    fn defaults_are_consistent() {
        let args = Args::try_parse_from(["mxrc-monitor"]).unwrap();
        assert_eq!(args.listen_address.to_string(), "127.0.0.1:9720");
        assert_eq!(args.telemetry_path, "/metrics");
        assert_eq!(args.units.len(), 3);
        assert_eq!(args.interval, Duration::from_secs(1));
        assert_eq!(args.timeout, Duration::from_millis(800));
        assert!(args.check().is_ok());
    }

    #[test]
    fn timeout_not_below_interval_rejected() {
        let args = Args::try_parse_from([
            "mxrc-monitor",
            "--collector.interval=1s",
            "--collector.timeout=1s",
        ])
        .unwrap();
        assert!(args.check().unwrap_err().contains("must be shorter"));
    }

    #[test]
    fn invalid_unit_flag_rejected() {
        let error = Args::try_parse_from([
            "mxrc-monitor",
            "--collector.units=mxrc-rt.service,-x.service",
        ])
        .unwrap_err();
        assert!(error.to_string().contains("\"-x.service\""), "{error}");
    }
}
