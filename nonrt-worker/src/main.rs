//! `mxrc-nonrt`: non-real-time MXRC worker under systemd (Type=notify,
//! watchdog gated on loop progress), plus the `bench-log` subcommand.

mod bench;
mod cli;
mod log;
mod service;
mod signals;
mod status;
mod watchdog;
mod worker;

use std::fmt::Display;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use cli::{Cli, Command};
use log::{Logging, TraceContext};

fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();

    let trace = match TraceContext::resolve(
        cli.log.traceparent.as_deref(),
        std::env::var_os("TRACEPARENT"),
    ) {
        Ok(trace) => trace,
        // A malformed traceparent is a usage error, exit status 2 as in the
        // other MXRC binaries and in clap's own argument errors.
        Err(error) => return fail_before_logging(&error, 2),
    };

    match &cli.command {
        Some(Command::BenchLog(args)) => bench::run(args, &cli.log, trace),
        None => run_service(&cli, trace, started),
    }
}

fn run_service(cli: &Cli, trace: TraceContext, started: Instant) -> ExitCode {
    let timing = match cli.timing() {
        Ok(timing) => timing,
        // An invalid combination of flags is a usage error as well.
        Err(error) => return fail_before_logging(&error, 2),
    };
    let (logging, output) = match Logging::from_args(&cli.log, trace) {
        Ok(built) => built,
        Err(error) => return fail_before_logging(&error, 1),
    };

    let config = service::Config {
        timing,
        fault_injection: cli.fault_injection,
        output,
        started,
    };
    match service::run(config, &logging) {
        Ok(code) => code,
        Err(error) => {
            slog::error!(logging.logger(), "mxrc-nonrt failed to start"; "error" => %error);
            ExitCode::FAILURE
        }
    }
}

/// Reports an error that happened before the loggers existed.
fn fail_before_logging(error: &dyn Display, status: u8) -> ExitCode {
    eprintln!("mxrc-nonrt: error: {error}");
    ExitCode::from(status)
}
