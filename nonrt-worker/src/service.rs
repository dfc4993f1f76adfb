//! Service mode: start the threads, notify systemd, wait for signals and
//! stop cleanly.
//!
//! Threads: the main thread receives signals with sigwait(2), `work-loop`
//! runs the cycles, `watchdog` sends WATCHDOG=1 while the loop makes
//! progress, and `status` sends STATUS= once per status interval.

use std::fmt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sd_notify::NotifyState;
use slog::Logger;

use crate::cli::Timing;
use crate::log::{Logging, Output};
use crate::signals::{BlockedSignals, Request, Shutdown};
use crate::status::{self, StatusParts};
use crate::watchdog::{self, WatchdogParts};
use crate::worker::{Counters, WorkLoop, WorkLoopParts};

/// Time the work loop gets to finish its current cycle after a stop request.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of the service mode.
pub struct Config {
    pub timing: Timing,
    pub fault_injection: bool,
    pub output: Output,
    /// Process start, for uptime_s.
    pub started: Instant,
}

/// Failure before the service reported READY=1.
#[derive(Debug)]
pub struct StartupError {
    context: &'static str,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl std::error::Error for StartupError {}

fn startup_error<E>(context: &'static str) -> impl FnOnce(E) -> StartupError
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move |error| StartupError {
        context,
        source: error.into(),
    }
}

/// Threads and shared state of a running service.
struct Running {
    counters: Arc<Counters>,
    shutdown: Arc<Shutdown>,
    stall: Arc<AtomicBool>,
    work_loop: WorkLoop,
    helpers: Vec<JoinHandle<()>>,
}

/// Runs the service until SIGTERM or SIGINT. Returns the exit code, or an
/// error if startup failed.
pub fn run(config: Config, logging: &Logging) -> Result<ExitCode, StartupError> {
    let logger = logging.logger();
    // Blocked before any thread exists, so every thread inherits the mask.
    let signals = BlockedSignals::block()
        .map_err(startup_error("failed to block SIGTERM, SIGINT and SIGUSR1"))?;
    let watchdog_interval = watchdog_interval(logger, config.timing.period)?;

    let running = start_threads(&config, logging, watchdog_interval)?;
    log_started(logger, &config, logging, watchdog_interval);

    let signal = wait_for_stop(&signals, logger, &config, &running.stall);
    Ok(stop(logger, running, signal, config.started))
}

/// Returns the watchdog ping interval, or None when systemd did not enable
/// the watchdog for this process.
fn watchdog_interval(logger: &Logger, period: Duration) -> Result<Option<Duration>, StartupError> {
    match sd_notify::watchdog_enabled() {
        None => Ok(None),
        Some(timeout) if timeout.is_zero() => {
            slog::warn!(logger, "WATCHDOG_USEC is 0; running without watchdog pings");
            Ok(None)
        }
        Some(timeout) => watchdog::ping_interval(timeout, period)
            .map(Some)
            .map_err(startup_error("invalid watchdog configuration")),
    }
}

fn start_threads(
    config: &Config,
    logging: &Logging,
    watchdog_interval: Option<Duration>,
) -> Result<Running, StartupError> {
    let counters = Arc::new(Counters::default());
    let shutdown = Arc::new(Shutdown::new());
    let stall = Arc::new(AtomicBool::new(false));

    let work_loop = WorkLoop::spawn(WorkLoopParts {
        period: config.timing.period,
        counters: Arc::clone(&counters),
        shutdown: Arc::clone(&shutdown),
        stall: Arc::clone(&stall),
        logger: logging.logger().clone(),
    })
    .map_err(startup_error("failed to start the work loop thread"))?;
    if !work_loop.wait_first_cycle() {
        return Err(startup_error("work loop failed")(
            "the thread ended before its first cycle",
        ));
    }

    let first = counters.snapshot();
    sd_notify::notify(&[
        NotifyState::Ready,
        NotifyState::Status(&status::format_status(first, config.started.elapsed())),
    ])
    .map_err(startup_error("failed to send READY=1 to systemd"))?;

    let mut helpers = Vec::new();
    if let Some(interval) = watchdog_interval {
        let parts = WatchdogParts {
            interval,
            counters: Arc::clone(&counters),
            shutdown: Arc::clone(&shutdown),
            logger: logging.logger().clone(),
        };
        helpers.push(
            watchdog::spawn(parts, first.cycles)
                .map_err(startup_error("failed to start the watchdog thread"))?,
        );
    }
    let parts = StatusParts {
        interval: config.timing.status_interval,
        period: config.timing.period,
        started: config.started,
        counters: Arc::clone(&counters),
        shutdown: Arc::clone(&shutdown),
        logging: logging.clone(),
    };
    helpers.push(status::spawn(parts).map_err(startup_error("failed to start the status thread"))?);

    Ok(Running {
        counters,
        shutdown,
        stall,
        work_loop,
        helpers,
    })
}

fn log_started(
    logger: &Logger,
    config: &Config,
    logging: &Logging,
    watchdog_interval: Option<Duration>,
) {
    let trace = logging.trace();
    let period_ms = config.timing.period.as_millis() as u64;
    let status_interval_ms = config.timing.status_interval.as_millis() as u64;
    let common = slog::o!(
        "version" => env!("CARGO_PKG_VERSION"),
        "pid" => std::process::id(),
        "period_ms" => period_ms,
        "status_interval_ms" => status_interval_ms,
        "fault_injection" => config.fault_injection,
        "log_output" => config.output.as_str(),
        "trace_source" => trace.source.as_str(),
    );
    let logger = logger.new(common);
    match watchdog_interval {
        Some(interval) => slog::info!(logger, "mxrc-nonrt started; watchdog enabled";
            "watchdog_usec" => 2 * interval.as_micros() as u64,
            "watchdog_check_interval_ms" => interval.as_millis() as u64),
        None => {
            slog::info!(logger, "mxrc-nonrt started; watchdog disabled"; "watchdog" => "disabled")
        }
    }
}

/// Handles signals until a stop is requested and returns the stop signal.
fn wait_for_stop(
    signals: &BlockedSignals,
    logger: &Logger,
    config: &Config,
    stall: &AtomicBool,
) -> Option<Signal> {
    loop {
        match signals.wait() {
            Ok(Request::Stop(signal)) => return Some(signal),
            Ok(Request::FaultInjection) if config.fault_injection => {
                slog::warn!(
                    logger,
                    "SIGUSR1 received with --fault-injection: stalling the work loop"
                );
                stall.store(true, Ordering::Release);
            }
            Ok(Request::FaultInjection) => {
                slog::warn!(logger, "SIGUSR1 ignored because --fault-injection is off");
            }
            Err(errno) => {
                slog::error!(logger, "sigwait failed; stopping"; "error" => %errno);
                return None;
            }
        }
    }
}

/// Sends STOPPING=1, stops the threads and logs the stop.
fn stop(logger: &Logger, running: Running, signal: Option<Signal>, started: Instant) -> ExitCode {
    if let Err(error) = sd_notify::notify(&[NotifyState::Stopping]) {
        slog::error!(logger, "failed to send STOPPING=1 to systemd"; "error" => %error);
    }
    let signal_name = signal.map_or("none", |s| s.as_str());
    slog::debug!(logger, "stop requested"; "signal" => signal_name);

    running.shutdown.request();
    let loop_stopped = running.work_loop.wait_stopped(STOP_TIMEOUT);
    for helper in running.helpers {
        let _ = helper.join();
    }

    let totals = running.counters.snapshot();
    let uptime_s = started.elapsed().as_secs();
    if !loop_stopped {
        slog::error!(logger, "work loop did not finish its cycle after the stop request; exiting anyway";
            "timeout_ms" => STOP_TIMEOUT.as_millis() as u64, "cycles" => totals.cycles,
            "ticks_late" => totals.ticks_late, "uptime_s" => uptime_s, "signal" => signal_name);
        return ExitCode::FAILURE;
    }

    slog::info!(logger, "mxrc-nonrt stopped";
        "cycles" => totals.cycles, "ticks_late" => totals.ticks_late,
        "uptime_s" => uptime_s, "signal" => signal_name);
    if signal.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
