//! The service run: startup sequence, signal handling and shutdown.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sd_notify::NotifyState;
use slog::{error, info, warn};

use crate::cli::RtArgs;
use crate::log::Loggers;
use crate::notify::Notifier;
use crate::ring::logrec::{self, LogThreadContext, RING_CAPACITY};
use crate::rtloop::{self, LoopShared, StartError};
use crate::status::{new_span_or_zero, StatusPublisher};
use crate::{setup, signals, watchdog};

/// Exit code of a clean stop.
pub const EXIT_OK: i32 = 0;
/// Exit code of a startup failure other than real-time setup.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code when SCHED_FIFO, affinity or mlockall failed under --rt-policy strict.
pub const EXIT_RT_SETUP: i32 = 3;

/// Runs the service until SIGTERM or SIGINT and returns the exit code.
pub fn run(args: &RtArgs, loggers: &Loggers) -> i32 {
    let log = &loggers.root;
    info!(log, "starting";
          "VERSION" => env!("CARGO_PKG_VERSION"), "PERIOD_US" => args.period_us,
          "SCHED_PRIORITY" => args.priority,
          "RT_POLICY" => format!("{:?}", args.rt_policy).to_lowercase(),
          "OVERRUN_LIMIT" => args.overrun_limit, "FAULT_INJECTION" => args.fault_injection);
    if let Err(e) = signals::block_handled() {
        error!(log, "failed to block signals"; "ERROR" => e.desc());
        return EXIT_FAILURE;
    }
    setup::reset_to_sched_other(log, "main");

    let shared = Arc::new(LoopShared::default());
    let (sender, consumer) = logrec::channel(RING_CAPACITY, shared.stats.log_dropped.clone());
    info!(log, "buffers allocated and pre-faulted";
          "RING_CAPACITY" => RING_CAPACITY, "HISTOGRAM_BUCKETS" => crate::histogram::BUCKETS);
    let window_span = Arc::new(AtomicU64::new(new_span_or_zero(log)));
    let log_stop = Arc::new(AtomicBool::new(false));
    let log_context = LogThreadContext {
        loggers: loggers.clone(),
        window_span: window_span.clone(),
        stop: log_stop.clone(),
    };
    let log_thread = match logrec::spawn_log_thread(consumer, log_context) {
        Ok(handle) => handle,
        Err(e) => {
            error!(log, "failed to spawn the log thread"; "ERROR" => e.to_string());
            return EXIT_FAILURE;
        }
    };

    let running = match rtloop::start(args, shared.clone(), sender, log) {
        Ok(running) => running,
        Err(err) => {
            let code = report_start_error(err, loggers);
            log_stop.store(true, Relaxed);
            let _ = log_thread.join();
            return code;
        }
    };

    let mut publisher = StatusPublisher::new(loggers, &shared.stats, &window_span);
    publisher.send_ready();
    let watchdog = spawn_watchdog(args, &shared, loggers);

    let exit_signal = wait_for_stop(args, &shared, &mut publisher, loggers);

    publisher.send_stopping();
    info!(log, "stopping: sent STOPPING=1"; "SIGNAL" => exit_signal.as_str());
    let stop_started = Instant::now();
    shared.stop.store(true, Relaxed);
    if running.handle.join().is_err() {
        error!(log, "loop thread panicked");
    }
    if let Some(w) = watchdog {
        w.stop();
    }
    log_stop.store(true, Relaxed);
    let _ = log_thread.join();
    let last = publisher.final_status();
    info!(log, "stopped"; "CYCLES" => last.cycles, "OVERRUNS" => last.overruns,
          "LAT_MAX_US" => last.lat_max_us, "LOG_DROPPED" => last.log_dropped,
          "SHUTDOWN_MS" => stop_started.elapsed().as_millis() as u64);
    EXIT_OK
}

/// Logs a startup failure, puts it into STATUS= and returns the exit code.
fn report_start_error(err: StartError, loggers: &Loggers) -> i32 {
    let (text, code) = match err {
        StartError::RtSetup(e) => (e.to_string(), EXIT_RT_SETUP),
        StartError::Other(text) => (text, EXIT_FAILURE),
    };
    error!(loggers.root, "startup failed: {}", text; "EXIT_CODE" => code);
    let status = format!("startup failed: {text}");
    Notifier::default().send(&loggers.root, &[NotifyState::Status(&status)]);
    code
}

fn spawn_watchdog(
    args: &RtArgs,
    shared: &Arc<LoopShared>,
    loggers: &Loggers,
) -> Option<watchdog::Watchdog> {
    let period = Duration::from_micros(args.period_us);
    let log = loggers.root.clone();
    match watchdog::spawn(shared.clone(), args.overrun_limit, period, log) {
        Ok(watchdog) => watchdog,
        Err(e) => {
            error!(loggers.root, "failed to spawn the watchdog thread; systemd will kill \
                                  the service if WatchdogSec= is set";
                   "ERROR" => e.to_string());
            None
        }
    }
}

/// Waits for SIGTERM or SIGINT while publishing STATUS= every interval.
fn wait_for_stop(
    args: &RtArgs,
    shared: &LoopShared,
    publisher: &mut StatusPublisher,
    loggers: &Loggers,
) -> Signal {
    let log = &loggers.root;
    let interval = Duration::from_millis(args.status_interval_ms);
    let mut next_status = Instant::now() + interval;
    loop {
        let timeout = next_status.saturating_duration_since(Instant::now());
        match signals::wait(timeout) {
            Ok(Some(signal @ (Signal::SIGTERM | Signal::SIGINT))) => return signal,
            Ok(Some(Signal::SIGUSR1)) if args.fault_injection => {
                warn!(
                    log,
                    "SIGUSR1 with --fault-injection: stalling the loop thread; \
                            the watchdog stops pinging"
                );
                shared.stall.store(true, Relaxed);
            }
            Ok(Some(signal)) => {
                info!(log, "ignoring signal (fault injection is off)"; "SIGNAL" => signal.as_str())
            }
            Ok(None) => {}
            Err(e) => {
                error!(log, "sigtimedwait failed"; "ERROR" => e.desc());
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        if Instant::now() >= next_status {
            publisher.publish_window();
            next_status += interval;
            // After a long suspension, skip missed publications instead of bursting.
            if next_status < Instant::now() {
                next_status = Instant::now() + interval;
            }
        }
    }
}
