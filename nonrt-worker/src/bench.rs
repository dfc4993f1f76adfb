//! `bench-log`: log latency benchmark through the real journald drain.
//!
//! Each record carries BENCH_SEQ (0-based sequence number) and BENCH_SENT_US
//! (CLOCK_REALTIME in microseconds, read just before the record is logged).
//! journald sets `__REALTIME_TIMESTAMP` when it receives the record, so
//! `__REALTIME_TIMESTAMP - BENCH_SENT_US` is the latency from the log call
//! to journald, serialization and the socket send included. The run ends
//! with one stdout line: `sent=N failed=N trace_id=<32 hex>`.
//!
//! NOTE: journald drops records above its rate limit (journald.conf
//! RateLimitBurst=, 10000 per 30 s by default in systemd 252), and dropped
//! records still count as sent here.

use std::io;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use slog::{Drain, OwnedKVList, Record};

use crate::cli::{BenchLogArgs, LogArgs, LogTarget};
use crate::log::journald::{JournaldOutput, JOURNAL_SOCKET};
use crate::log::{Logging, TraceContext};

/// Send results shared between the drain and the benchmark loop.
#[derive(Debug, Default)]
struct SendCounts {
    sent: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

/// Drain that sends to journald without the stderr fallback and counts
/// successful and failed sends.
struct CountingJournald {
    output: JournaldOutput,
    counts: Arc<SendCounts>,
}

impl Drain for CountingJournald {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        match self.output.send(record, values) {
            Ok(()) => {
                self.counts.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self
                    .counts
                    .first_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| error.to_string());
            }
        }
        Ok(())
    }
}

/// Returns CLOCK_REALTIME in microseconds since the Unix epoch.
pub fn realtime_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// Runs the benchmark and prints the result line on stdout.
pub fn run(args: &BenchLogArgs, log_args: &LogArgs, trace: TraceContext) -> ExitCode {
    if log_args.target == LogTarget::Stderr {
        eprintln!("mxrc-nonrt: error: bench-log measures journald latency and does not support --log.target stderr");
        return ExitCode::from(2);
    }
    if !Path::new(JOURNAL_SOCKET).exists() {
        eprintln!(
            "mxrc-nonrt: error: bench-log needs journald, but its socket {JOURNAL_SOCKET} does not exist; \
             run it on a host or sandbox where systemd-journald is running"
        );
        return ExitCode::FAILURE;
    }

    let counts = Arc::new(SendCounts::default());
    let drain = CountingJournald {
        output: JournaldOutput::new(),
        counts: Arc::clone(&counts),
    };
    let logging = Logging::with_drain(drain, trace);
    send_records(logging.logger(), args);

    let sent = counts.sent.load(Ordering::Relaxed);
    let failed = counts.failed.load(Ordering::Relaxed);
    println!("sent={sent} failed={failed} trace_id={}", trace.trace_id);
    if let Some(error) = counts
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        eprintln!("mxrc-nonrt: error: {failed} of {} records were not sent to journald; first error: {error}", args.count);
    }
    let _ = io::Write::flush(&mut io::stdout());
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn send_records(logger: &slog::Logger, args: &BenchLogArgs) {
    let pause = Duration::from_micros(args.interval_us);
    for seq in 0..args.count {
        let sent_us = realtime_us();
        slog::info!(logger, "log latency benchmark record"; "bench_seq" => seq, "bench_sent_us" => sent_us);
        if !pause.is_zero() {
            thread::sleep(pause);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realtime_is_after_2020() {
        // 2020-01-01T00:00:00Z in microseconds.
        assert!(realtime_us() > 1_577_836_800_000_000);
    }
}
