//! `mxrc-rt bench`: measurements kept apart from the service path.
//!
//! Prints one machine-readable line per measurement:
//! - `push_ns p50=.. p99=.. max=.. timer_ns=.. full_waits=.. dropped=.. n=..`:
//!   one ring push timed with two clock_gettime calls while a consumer thread
//!   drains. `timer_ns` is the median cost of an empty timing pair, included
//!   in the push figures. The producer waits, untimed, while the ring is full
//!   (`full_waits` counts those spins), so every timed push stores a record
//!   and `dropped` stays 0.
//! - `notify_ns p50=.. p99=.. max=.. n=..`: one WATCHDOG=1 through the
//!   connected socket that the watchdog thread keeps (`WatchdogSocket`), to a
//!   unix datagram socket that the benchmark binds in /tmp.
//! - `notify_oneshot_ns ...`: the same through `sd_notify::notify`, which
//!   opens and closes a socket per call, with NOTIFY_SOCKET pointed at it.
//! - with `--log-probes N`, only `log_probes sent=.. dropped=.. trace_id=..`:
//!   N probe records pushed 1 ms apart through the ring and the log thread,
//!   each with its push time as MONOTONIC_NS (CLOCK_MONOTONIC, the clock of
//!   journald's __MONOTONIC_TIMESTAMP).
//! - with `--duration-s N`, only `latency_us p50=.. p99=.. max=.. min=.. avg=..
//!   cycles=.. overruns=.. degraded=0|1`: the real loop with the usual RT setup.
//!   Percentiles are histogram bucket upper bounds (1 µs buckets below 1024 µs),
//!   so they can be up to 1 µs above the truncated values cyclictest prints.

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use sd_notify::NotifyState;
use slog::{error, info};

use crate::cli::{BenchArgs, RtArgs};
use crate::histogram::Snapshot;
use crate::log::Loggers;
use crate::notify::WatchdogSocket;
use crate::ring::logrec::{self, Event, LogRecord, LogThreadContext, RING_CAPACITY};
use crate::rtloop::{self, now_ns, LoopShared, StartError};
use crate::service::{EXIT_FAILURE, EXIT_OK, EXIT_RT_SETUP};
use crate::status::new_span_or_zero;

/// Runs the benchmarks selected by `bench` and returns the exit code.
pub fn run(rt: &RtArgs, bench: &BenchArgs, loggers: &Loggers) -> i32 {
    if let Some(seconds) = bench.duration_s {
        return bench_loop(rt, seconds, loggers);
    }
    if let Some(probes) = bench.log_probes {
        return bench_log_probes(probes, loggers);
    }
    bench_push(bench.pushes);
    match bench_notify(bench.notify_calls) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            error!(loggers.root, "notify benchmark failed"; "ERROR" => e);
            EXIT_FAILURE
        }
    }
}

/// Pushes `n` probe records 1 ms apart through the same ring and log thread
/// as the service, waits until the thread has written them, and prints the
/// trace id that finds them in the journal.
fn bench_log_probes(n: u64, loggers: &Loggers) -> i32 {
    let dropped = Arc::new(AtomicU64::new(0));
    let (mut sender, consumer) = logrec::channel(RING_CAPACITY, dropped.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let context = LogThreadContext {
        loggers: loggers.clone(),
        window_span: Arc::new(AtomicU64::new(new_span_or_zero(&loggers.root))),
        stop: stop.clone(),
    };
    let log_thread = match logrec::spawn_log_thread(consumer, context) {
        Ok(handle) => handle,
        Err(e) => {
            error!(loggers.root, "failed to spawn the log thread"; "ERROR" => e.to_string());
            return EXIT_FAILURE;
        }
    };

    for seq in 0..n {
        sender.send(LogRecord::new(now_ns(), seq, Event::Probe { seq }));
        thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Relaxed);
    let _ = log_thread.join();

    println!(
        "log_probes sent={n} dropped={} trace_id={}",
        dropped.load(Relaxed),
        loggers.trace.trace_id
    );
    EXIT_OK
}

/// Returns the value at quantile `q` of sorted samples.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn bench_push(n: u64) {
    let dropped = Arc::new(AtomicU64::new(0));
    let (mut sender, mut consumer) = logrec::channel(RING_CAPACITY, dropped.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let drainer = {
        let stop = stop.clone();
        thread::spawn(move || {
            while !stop.load(Relaxed) {
                if consumer.pop().is_err() {
                    std::hint::spin_loop();
                }
            }
        })
    };

    let mut timer = vec![0u64; n as usize];
    for slot in timer.iter_mut() {
        let start = now_ns();
        *slot = now_ns() - start;
    }
    timer.sort_unstable();

    let mut samples = vec![0u64; n as usize];
    let mut full_waits = 0u64;
    for (i, slot) in samples.iter_mut().enumerate() {
        let event = Event::OverrunStart {
            lateness_ns: i as u64,
        };
        let record = LogRecord::new(0, i as u64, event);
        // Time only pushes that store the record: wait, untimed, while the
        // consumer has not freed a slot yet.
        while sender.is_full() {
            full_waits += 1;
            std::hint::spin_loop();
        }
        let start = now_ns();
        sender.send(record);
        *slot = now_ns() - start;
    }
    stop.store(true, Relaxed);
    let _ = drainer.join();
    samples.sort_unstable();
    println!(
        "push_ns p50={} p99={} max={} timer_ns={} full_waits={} dropped={} n={}",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.last().copied().unwrap_or(0),
        percentile(&timer, 0.5),
        full_waits,
        dropped.load(Relaxed),
        n
    );
}

fn bench_notify(n: u64) -> Result<(), String> {
    let path = std::env::temp_dir().join(format!("mxrc-rt-bench-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let socket =
        UnixDatagram::bind(&path).map_err(|e| format!("failed to bind {}: {e}", path.display()))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let receiver = {
        let (stop, received) = (stop.clone(), received.clone());
        thread::spawn(move || {
            let mut buf = [0u8; 256];
            while !stop.load(Relaxed) {
                if socket.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Relaxed);
                }
            }
        })
    };

    let previous = std::env::var_os("NOTIFY_SOCKET");
    // The only other thread is the receiver, which does not read the environment.
    std::env::set_var("NOTIFY_SOCKET", &path);
    let mut socket = WatchdogSocket::connect(path.as_os_str())
        .map_err(|e| format!("failed to connect to {}: {e}", path.display()))?;
    let (connected, connected_failures) = time_calls(n, || socket.ping().is_ok());
    let (oneshot, oneshot_failures) =
        time_calls(n, || sd_notify::notify(&[NotifyState::Watchdog]).is_ok());
    match previous {
        Some(value) => std::env::set_var("NOTIFY_SOCKET", value),
        None => std::env::remove_var("NOTIFY_SOCKET"),
    }
    thread::sleep(Duration::from_millis(50));
    stop.store(true, Relaxed);
    let _ = receiver.join();
    let _ = std::fs::remove_file(&path);

    for (name, samples, failures) in [
        ("notify_ns", connected, connected_failures),
        ("notify_oneshot_ns", oneshot, oneshot_failures),
    ] {
        println!(
            "{name} p50={} p99={} max={} failures={failures} n={n}",
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
            samples.last().copied().unwrap_or(0),
        );
    }
    println!("notify_received={} of {}", received.load(Relaxed), 2 * n);
    Ok(())
}

/// Times `n` calls of `call`; returns the sorted durations in nanoseconds
/// and the number of calls that returned false.
fn time_calls(n: u64, mut call: impl FnMut() -> bool) -> (Vec<u64>, u64) {
    let mut samples = vec![0u64; n as usize];
    let mut failures = 0u64;
    for slot in samples.iter_mut() {
        let start = now_ns();
        if !call() {
            failures += 1;
        }
        *slot = now_ns() - start;
    }
    samples.sort_unstable();
    (samples, failures)
}

fn bench_loop(rt: &RtArgs, seconds: u64, loggers: &Loggers) -> i32 {
    let log = &loggers.root;
    let shared = Arc::new(LoopShared::default());
    let (sender, mut consumer) = logrec::channel(RING_CAPACITY, shared.stats.log_dropped.clone());
    let running = match rtloop::start(rt, shared.clone(), sender, log) {
        Ok(running) => running,
        Err(StartError::RtSetup(e)) => {
            error!(log, "real-time setup failed"; "ERROR" => e.to_string());
            return EXIT_RT_SETUP;
        }
        Err(StartError::Other(text)) => {
            error!(log, "loop start failed"; "ERROR" => text);
            return EXIT_FAILURE;
        }
    };
    info!(log, "benchmark loop running"; "SECONDS" => seconds);
    thread::sleep(Duration::from_secs(seconds));
    shared.stop.store(true, Relaxed);
    let _ = running.handle.join();
    while let Ok(record) = consumer.pop() {
        logrec::write_record(log, &record);
    }

    let mut snapshot = Snapshot::default();
    shared.stats.latency.snapshot_into(&mut snapshot);
    println!(
        "latency_us p50={} p99={} max={} min={} avg={} cycles={} overruns={} degraded={}",
        snapshot.quantile(0.5) / 1000,
        snapshot.quantile(0.99) / 1000,
        snapshot.max_ns / 1000,
        snapshot.min() / 1000,
        snapshot.mean() / 1000,
        shared.stats.cycles.load(Relaxed),
        shared.stats.overruns.load(Relaxed),
        u8::from(shared.stats.degraded.load(Relaxed)),
    );
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_of_sorted_samples() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 0.5), 50);
        assert_eq!(percentile(&samples, 0.99), 99);
        assert_eq!(percentile(&samples, 1.0), 100);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
