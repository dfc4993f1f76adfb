//! The service run: startup sequence, STATUS publication, signal handling
//! and shutdown.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sd_notify::NotifyState;
use slog::{debug, error, info, warn, Logger};

use crate::cli::RtArgs;
use crate::log::{new_span_id, Loggers};
use crate::ring::logrec::{self, LogThreadContext, RING_CAPACITY};
use crate::rtloop::{self, LoopShared, StartError};
use crate::stats::{Status, StatusReader};
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
          "SCHED_PRIORITY" => args.priority, "RT_POLICY" => format!("{:?}", args.rt_policy).to_lowercase(),
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
    let window_span = Arc::new(AtomicU64::new(span_or_zero(log)));
    let log_stop = Arc::new(AtomicBool::new(false));
    let log_thread = match logrec::spawn_log_thread(
        consumer,
        LogThreadContext {
            loggers: loggers.clone(),
            window_span: window_span.clone(),
            stop: log_stop.clone(),
        },
    ) {
        Ok(handle) => handle,
        Err(e) => {
            error!(log, "failed to spawn the log thread"; "ERROR" => e.to_string());
            return EXIT_FAILURE;
        }
    };

    let running = match rtloop::start(args, shared.clone(), sender, log) {
        Ok(running) => running,
        Err(err) => {
            let (text, code) = match err {
                StartError::RtSetup(e) => (e.to_string(), EXIT_RT_SETUP),
                StartError::Other(text) => (text, EXIT_FAILURE),
            };
            error!(log, "startup failed: {}", text; "EXIT_CODE" => code);
            notify(
                log,
                &[NotifyState::Status(&format!("startup failed: {text}"))],
            );
            log_stop.store(true, Relaxed);
            let _ = log_thread.join();
            return code;
        }
    };

    let mut reader = StatusReader::new();
    let status = reader.next_window(&shared.stats);
    let status_text = status.to_string();
    notify(
        log,
        &[NotifyState::Ready, NotifyState::Status(&status_text)],
    );
    info!(log, "ready: sent READY=1"; "DEGRADED" => status.degraded);

    let watchdog = match watchdog::spawn(
        shared.clone(),
        args.overrun_limit,
        Duration::from_micros(args.period_us),
        log.clone(),
    ) {
        Ok(w) => w,
        Err(e) => {
            error!(log, "failed to spawn the watchdog thread; systemd will kill the service \
                         if WatchdogSec= is set"; "ERROR" => e.to_string());
            None
        }
    };

    let exit_signal = wait_for_stop(args, &shared, &mut reader, &window_span, loggers);

    notify(log, &[NotifyState::Stopping]);
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
    let final_status = reader.next_window(&shared.stats);
    info!(log, "stopped"; "CYCLES" => final_status.cycles, "OVERRUNS" => final_status.overruns,
          "LAT_MAX_US" => final_status.lat_max_us, "LOG_DROPPED" => final_status.log_dropped,
          "SHUTDOWN_MS" => stop_started.elapsed().as_millis() as u64);
    EXIT_OK
}

/// Waits for SIGTERM/SIGINT while publishing STATUS every interval.
fn wait_for_stop(
    args: &RtArgs,
    shared: &LoopShared,
    reader: &mut StatusReader,
    window_span: &AtomicU64,
    loggers: &Loggers,
) -> Signal {
    let log = &loggers.root;
    let interval = Duration::from_millis(args.status_interval_ms);
    let mut next_status = Instant::now() + interval;
    let mut last_dropped = 0;
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
            let status = reader.next_window(&shared.stats);
            publish_window(
                loggers,
                window_span,
                &status,
                reader.window_samples(),
                &mut last_dropped,
            );
            next_status += interval;
            // After a long suspension, skip missed publications instead of bursting.
            if next_status < Instant::now() {
                next_status = Instant::now() + interval;
            }
        }
    }
}

/// Sends STATUS=, logs the closed window at debug under its own span and
/// opens a new window span.
fn publish_window(
    loggers: &Loggers,
    window_span: &AtomicU64,
    status: &Status,
    samples: u64,
    last_dropped: &mut u64,
) {
    let text = status.to_string();
    notify(&loggers.root, &[NotifyState::Status(&text)]);
    let span = crate::log::SpanId(window_span.load(Relaxed));
    let window_log = loggers.child_span(span);
    debug!(window_log, "statistics window closed"; "STATUS" => &text, "SAMPLES" => samples,
           "WIN_LAT_P99_US" => status.win_lat_p99_us, "WIN_LAT_MAX_US" => status.win_lat_max_us);
    if status.log_dropped > *last_dropped {
        warn!(window_log, "log ring full: records from the loop thread were dropped";
              "DROPPED_IN_WINDOW" => status.log_dropped - *last_dropped,
              "DROPPED_TOTAL" => status.log_dropped);
        *last_dropped = status.log_dropped;
    }
    window_span.store(span_or_zero(&loggers.root), Relaxed);
}

fn span_or_zero(log: &Logger) -> u64 {
    match new_span_id() {
        Ok(span) => span.0,
        Err(e) => {
            warn!(log, "failed to create a span id"; "ERROR" => e);
            0
        }
    }
}

/// Sends a notification to systemd. A failure is not fatal; the first one
/// and then every 100th are logged with the running count.
fn notify(log: &Logger, state: &[NotifyState]) {
    static FAILURES: AtomicU64 = AtomicU64::new(0);
    if let Err(e) = sd_notify::notify(state) {
        let failures = FAILURES.fetch_add(1, Relaxed) + 1;
        if failures % 100 == 1 {
            warn!(log, "sd_notify failed"; "ERROR" => e.to_string(), "FAILURES" => failures);
        }
    }
}
