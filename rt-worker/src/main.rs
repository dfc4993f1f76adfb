//! `mxrc-rt`: the MXRC real-time control loop, run by systemd as a
//! `Type=notify` service with `WatchdogSec=`.
//!
//! # Startup
//! The main thread blocks signals and resets itself to SCHED_OTHER. It then
//! allocates the latency histogram and the log ring and writes them once. The
//! loop thread starts and touches 256 KiB of its stack. Then
//! `mlockall(MCL_CURRENT|MCL_FUTURE)` runs, and the loop thread gets SCHED_FIFO
//! at `--priority` and the CPUs of `--cpus`. READY=1 is sent after the loop has
//! completed its first cycle. With `--cpu-dma-latency-us N` the process also
//! writes N to /dev/cpu_dma_latency and keeps the file open, which limits
//! how deeply idle CPUs sleep. If mlockall, SCHED_FIFO, the affinity or that
//! request fails, `--rt-policy strict` exits with code 3 and
//! `--rt-policy degraded` logs a warning, continues and reports `degraded=1`.
//!
//! # Threads
//! | comm           | policy                     | work                                   |
//! |----------------|----------------------------|----------------------------------------|
//! | `mxrc-rt`      | SCHED_OTHER, priority 0     | signals (sigtimedwait), STATUS=, READY=1, STOPPING=1 |
//! | `mxrc-rt-loop` | SCHED_FIFO `--priority`     | the control loop                       |
//! | `mxrc-rt-log`  | SCHED_OTHER, priority 0     | drains the log ring every 10 ms into slog |
//! | `mxrc-rt-wdog` | SCHED_OTHER, priority 0     | WATCHDOG=1 every half WATCHDOG_USEC while the loop progresses |
//!
//! The unit's `CPUSchedulingPolicy=fifo` applies to the whole process and
//! threads inherit it, so each non-loop thread resets itself to SCHED_OTHER.
//! Every signal handled (SIGTERM, SIGINT, SIGUSR1) is blocked in all threads
//! and taken by the main thread only.
//!
//! # Guarantees and limits of the loop thread
//! - It allocates only at startup (histogram, ring, thread stack). Inside the
//!   loop it does not allocate, lock, format or make syscalls other than
//!   `clock_gettime` and `clock_nanosleep`, and `clock_nanosleep` is the only
//!   call that blocks. `strace -c -p <loop TID>` on a running release build
//!   shows only `clock_nanosleep`, because glibc serves `clock_gettime` from
//!   the vDSO.
//! - Deadlines are absolute (`TIMER_ABSTIME`, `next += period`), so the loop
//!   does not drift. A cycle whose work ends after the next deadline is an
//!   overrun. After an overrun the loop skips to the next future deadline and
//!   counts the skipped deadlines as missed cycles.
//! - Log events (first overrun of a streak, end of a streak, injected stall)
//!   are fixed-size `Copy` records pushed into a 1024-slot rtrb ring. A full
//!   ring drops the record and counts it in `log_dropped`; the push never
//!   blocks.
//! - Statistics are atomics written by the loop thread alone and read with
//!   Relaxed loads, so a STATUS line may mix values of adjacent cycles.
//! - mlockall with MCL_FUTURE also locks and populates mappings created
//!   later, such as the stacks of the log and watchdog threads. VmLck in the
//!   startup log counts reserved malloc arenas too, so it is far above VmRSS.
//!
//! # STATUS= keys
//! Published every `--status-interval-ms` as space-separated `key=value` with
//! integer values. Latency is wakeup time minus deadline.
//! - `cycles`: completed loop cycles.
//! - `overruns`: cycles whose work ended after the next deadline.
//! - `lat_min_us`, `lat_avg_us`, `lat_max_us`: exact, since start.
//! - `lat_p99_us`: since start, upper bound of the histogram bucket (1 µs wide
//!   below 1024 µs, at most 1/64 of the value above), capped at the maximum.
//! - `win_lat_p99_us`, `win_lat_max_us`: the same over the last window, the
//!   time since the previous STATUS publication.
//! - `log_dropped`: loop log records lost to a full ring.
//! - `degraded`: 1 when a real-time setup step failed under `--rt-policy degraded`.
//!
//! # Logging
//! Records go to journald (with a stderr fallback when a send fails) or to
//! stderr, see `--log.target`. Each carries SERVICE=mxrc-rt, TRACE_ID and
//! SPAN_ID. Root records use the process span, with PARENT_SPAN_ID = the
//! caller's span when a traceparent was given. The log thread writes loop
//! events under the span of the current statistics window, with
//! PARENT_SPAN_ID = the process span. It writes at most 10 overrun records a
//! minute and summarises the rest in one record. Failed sd_notify sends,
//! ring drops and journald send failures are logged in full once, then
//! summarised at most once a minute, and the recovery is logged once.
//!
//! # Watchdog
//! When systemd sets WATCHDOG_USEC, the watchdog thread checks every half of
//! that interval and sends WATCHDOG=1 only if the cycle counter advanced and
//! the overrun streak is below `--overrun-limit`. Otherwise it logs why, once
//! per episode, and lets systemd kill the service. With `--fault-injection`,
//! SIGUSR1 stops the loop thread from cycling (it sleeps until stopped), which
//! exercises that path.
//!
//! # Stop
//! SIGTERM or SIGINT: STOPPING=1, the loop finishes its cycle, the log ring is
//! drained, exit 0. The loop sees the stop flag after its current sleep, so
//! stopping takes up to one period plus one log drain interval (10 ms).
//!
//! # Exit codes
//! 0 clean stop; 1 startup failure other than real-time setup; 2 invalid
//! command line or traceparent; 3 real-time setup failure with
//! `--rt-policy strict`.
//!
//! # Benchmarks
//! `mxrc-rt bench` prints `push_ns ...` (one rtrb push) and `notify_ns ...`
//! (one WATCHDOG=1 through sd_notify to a socket the benchmark binds);
//! `mxrc-rt bench --duration-s N` runs the loop with the RT options for N
//! seconds and prints `latency_us p50=.. p99=.. max=..`. See `bench.rs`.

mod bench;
mod cli;
mod histogram;
mod log;
mod notify;
mod repeat;
mod ring;
mod rtloop;
mod service;
mod setup;
mod signals;
mod stats;
mod status;
mod watchdog;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// Exit code for an invalid command line, the same as clap's.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let trace = match log::trace_context(cli.log.traceparent.as_deref()) {
        Ok(trace) => trace,
        Err(e) => {
            eprintln!("mxrc-rt: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let loggers = log::build(&cli.log, trace);
    let code = match &cli.command {
        None => service::run(&cli.rt, &loggers),
        Some(Command::Bench(bench)) => bench::run(&cli.rt, bench, &loggers),
    };
    ExitCode::from(code as u8)
}
