//! The real-time loop thread "mxrc-rt-loop" and its startup sequence.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::libc;
use nix::unistd::{gettid, Pid};
use slog::{info, warn, Logger};

use crate::cli::{RtArgs, RtPolicy};
use crate::ring::logrec::{Event, LogRecord, RecordSender};
use crate::setup::{self, RtSetupError};
use crate::stats::LoopStats;

/// Name (thread comm) of the loop thread.
pub const LOOP_THREAD_NAME: &str = "mxrc-rt-loop";

/// How long startup waits for the first loop cycle, on top of one period,
/// before it gives up.
const FIRST_CYCLE_MARGIN: Duration = Duration::from_secs(2);

/// State shared between the loop thread and the rest of the process.
#[derive(Default)]
pub struct LoopShared {
    pub stats: LoopStats,
    /// Checked once per cycle; the loop finishes its cycle and returns.
    pub stop: AtomicBool,
    /// Set on SIGUSR1 with --fault-injection: the loop stops cycling.
    pub stall: AtomicBool,
}

/// A started loop thread.
pub struct RunningLoop {
    pub handle: JoinHandle<()>,
    /// The /dev/cpu_dma_latency request of --cpu-dma-latency-us, held open
    /// because the kernel drops the request when the file is closed.
    pub _cpu_latency_request: Option<File>,
}

/// Reason the loop could not start.
#[derive(Debug)]
pub enum StartError {
    /// A real-time setup step failed under --rt-policy strict.
    RtSetup(RtSetupError),
    /// Anything else (thread creation, first cycle timeout).
    Other(String),
}

/// Runs the startup sequence and returns once the loop has completed its
/// first cycle: pre-fault buffers and the loop stack, mlockall, SCHED_FIFO and
/// affinity for the loop thread, and the PM QoS request of --cpu-dma-latency-us. With --rt-policy degraded a failed RT step
/// is logged, sets `stats.degraded` and startup continues.
pub fn start(
    args: &RtArgs,
    shared: Arc<LoopShared>,
    sender: RecordSender,
    log: &Logger,
) -> Result<RunningLoop, StartError> {
    let (tid_tx, tid_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<bool>();
    let period_ns = args.period_us * 1000;
    let loop_shared = shared.clone();
    let handle = thread::Builder::new()
        .name(LOOP_THREAD_NAME.into())
        .stack_size(setup::LOOP_STACK_BYTES)
        .spawn(move || {
            setup::prefault_stack();
            let _ = tid_tx.send(gettid());
            if go_rx.recv() == Ok(true) {
                run(&loop_shared, period_ns, sender);
            }
        })
        .map_err(|e| StartError::Other(format!("failed to spawn the loop thread: {e}")))?;
    let tid = tid_rx
        .recv()
        .map_err(|_| StartError::Other("loop thread exited before reporting its TID".into()))?;
    info!(log, "loop thread created and its stack pre-faulted";
          "THREAD" => LOOP_THREAD_NAME, "TID" => tid.as_raw(),
          "PREFAULT_STACK_BYTES" => setup::PREFAULT_STACK_BYTES);

    let abort = |err: StartError| {
        let _ = go_tx.send(false);
        err
    };
    let cpu_latency_request =
        apply_rt_setup(args, tid, &shared.stats, log).map_err(|e| abort(StartError::RtSetup(e)))?;
    let _ = go_tx.send(true);
    let timeout = Duration::from_micros(args.period_us) + FIRST_CYCLE_MARGIN;
    wait_first_cycle(&shared.stats, timeout).map_err(StartError::Other)?;
    info!(log, "loop running"; "PERIOD_US" => args.period_us);
    Ok(RunningLoop {
        handle,
        _cpu_latency_request: cpu_latency_request,
    })
}

/// Applies mlockall, SCHED_FIFO, affinity and the PM QoS request, honouring
/// --rt-policy. Returns the open PM QoS request, if one was made.
fn apply_rt_setup(
    args: &RtArgs,
    tid: Pid,
    stats: &LoopStats,
    log: &Logger,
) -> Result<Option<File>, RtSetupError> {
    let check = |result: Result<(), RtSetupError>| -> Result<(), RtSetupError> {
        match (result, args.rt_policy) {
            (Ok(()), _) => Ok(()),
            (Err(e), RtPolicy::Strict) => Err(e),
            (Err(e), RtPolicy::Degraded) => {
                warn!(log, "real-time setup step failed; continuing degraded (--rt-policy degraded)";
                      "ERROR" => e.to_string(), "STEP" => e.step);
                stats.degraded.store(true, Relaxed);
                Ok(())
            }
        }
    };

    let locked = setup::lock_memory();
    if locked.is_ok() {
        setup::log_locked_memory(log);
    }
    check(locked)?;

    let fifo = setup::set_fifo(tid, args.priority);
    if fifo.is_ok() {
        log_scheduler(log, tid);
    }
    check(fifo)?;

    match &args.cpus {
        Some(cpus) => {
            let pinned = setup::set_affinity(tid, cpus);
            if pinned.is_ok() {
                info!(log, "loop thread pinned"; "CPUS" => cpus.to_string());
            }
            check(pinned)?;
        }
        None => match setup::current_affinity() {
            Ok(cpus) => info!(log, "loop thread keeps the process affinity";
                              "CPUS" => cpus.to_string()),
            Err(e) => warn!(log, "failed to read the CPU affinity"; "ERROR" => e.desc()),
        },
    }

    let Some(latency_us) = args.cpu_dma_latency_us else {
        return Ok(None);
    };
    match setup::request_cpu_latency(latency_us) {
        Ok(file) => {
            info!(log, "CPU wakeup latency limit requested";
                  "PATH" => setup::CPU_DMA_LATENCY_PATH, "CPU_DMA_LATENCY_US" => latency_us);
            Ok(Some(file))
        }
        Err(e) => check(Err(e)).map(|()| None),
    }
}

fn log_scheduler(log: &Logger, tid: Pid) {
    match setup::scheduler_of(tid) {
        Ok((policy, priority)) => info!(log, "loop thread scheduling set";
            "THREAD" => LOOP_THREAD_NAME, "POLICY" => setup::policy_name(policy),
            "SCHED_PRIORITY" => priority),
        Err(e) => warn!(log, "failed to read the loop thread's scheduling"; "ERROR" => e.desc()),
    }
}

fn wait_first_cycle(stats: &LoopStats, timeout: Duration) -> Result<(), String> {
    let start = Instant::now();
    while stats.cycles.load(Relaxed) == 0 {
        if start.elapsed() > timeout {
            return Err(format!(
                "loop thread did not complete its first cycle within {} ms",
                timeout.as_millis()
            ));
        }
        thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Returns CLOCK_MONOTONIC in nanoseconds.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps until the absolute CLOCK_MONOTONIC time `deadline_ns`.
#[inline]
fn sleep_until(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `ts` is a valid timespec; the remaining-time pointer may be null
    // with TIMER_ABSTIME. Retries on EINTR; other errors cannot occur for a
    // valid clock and timespec.
    while unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    } == libc::EINTR
    {}
}

/// Working state of the control law.
#[derive(Default)]
struct ControlState {
    setpoint: f64,
    output: f64,
    integral: f64,
}

/// Runs the control work of one cycle. The control work goes here.
///
/// Placeholder: a fixed-size PI update on a synthetic setpoint. It must stay
/// bounded in time and must not allocate, lock, log or make syscalls.
#[inline(never)]
fn control_step(state: &mut ControlState, cycle: u64) {
    const KP: f64 = 0.8;
    const KI: f64 = 0.05;
    state.setpoint = if (cycle / 1000) % 2 == 0 { 1.0 } else { -1.0 };
    for _ in 0..64 {
        let error = state.setpoint - state.output;
        state.integral = (state.integral + error * KI).clamp(-10.0, 10.0);
        state.output += (KP * error + state.integral) * 0.01;
    }
    std::hint::black_box(&state.output);
}

/// Runs the loop until the stop flag is set. Between startup and stop it only calls clock_gettime and
/// clock_nanosleep, stores atomics and pushes to the log ring.
fn run(shared: &LoopShared, period_ns: u64, mut log: RecordSender) {
    let stats = &shared.stats;
    let mut state = ControlState::default();
    let mut overruns = Overruns::default();
    let mut cycle = 0u64;
    let mut deadline = now_ns() + period_ns;
    while !shared.stop.load(Relaxed) {
        if shared.stall.load(Relaxed) {
            return stall(shared, &mut log, cycle);
        }
        sleep_until(deadline);
        stats.latency.record(now_ns().saturating_sub(deadline));
        control_step(&mut state, cycle);
        let done = now_ns();
        cycle += 1;
        deadline += period_ns;
        if done > deadline {
            // Overrun: skip every deadline already in the past.
            let missed = (done - deadline) / period_ns + 1;
            if overruns.record(missed, stats) {
                let lateness_ns = done - deadline;
                log.send(LogRecord::new(
                    done,
                    cycle,
                    Event::OverrunStart { lateness_ns },
                ));
            }
            deadline += missed * period_ns;
        } else if let Some((streak, missed)) = overruns.end_streak() {
            log.send(LogRecord::new(
                done,
                cycle,
                Event::OverrunEnd { streak, missed },
            ));
        }
        stats.overrun_streak.store(overruns.streak, Relaxed);
        stats.cycles.store(cycle, Relaxed);
    }
}

/// Overrun counters of the loop thread.
#[derive(Default)]
struct Overruns {
    total: u64,
    missed_total: u64,
    streak: u64,
    streak_missed: u64,
}

impl Overruns {
    /// Counts an overrun that skipped `missed` deadlines and publishes the
    /// totals. Returns true for the first overrun of a streak.
    #[inline]
    fn record(&mut self, missed: u64, stats: &LoopStats) -> bool {
        self.total += 1;
        self.missed_total += missed;
        self.streak += 1;
        self.streak_missed += missed;
        stats.overruns.store(self.total, Relaxed);
        stats.missed_cycles.store(self.missed_total, Relaxed);
        self.streak == 1
    }

    /// Ends the current streak after an on-time cycle. Returns the streak
    /// length and the deadlines it skipped, or None if no streak was running.
    #[inline]
    fn end_streak(&mut self) -> Option<(u64, u64)> {
        if self.streak == 0 {
            return None;
        }
        let ended = (self.streak, self.streak_missed);
        (self.streak, self.streak_missed) = (0, 0);
        Some(ended)
    }
}

/// Fault injection: stops cycling without advancing the cycle counter, so
/// the watchdog stops pinging. Sleeps instead of spinning so that a FIFO
/// thread does not starve its CPU. Returns only when the stop flag is set.
fn stall(shared: &LoopShared, log: &mut RecordSender, cycle: u64) {
    log.send(LogRecord::new(now_ns(), cycle, Event::StallInjected));
    while !shared.stop.load(Relaxed) {
        let wake = now_ns() + 10_000_000;
        sleep_until(wake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::logrec::channel;
    use std::sync::atomic::AtomicU64;

    fn run_for(period_ns: u64, duration: Duration) -> Arc<LoopShared> {
        let shared = Arc::new(LoopShared::default());
        let (sender, _consumer) = channel(16, Arc::new(AtomicU64::new(0)));
        let worker = {
            let shared = shared.clone();
            thread::spawn(move || run(&shared, period_ns, sender))
        };
        thread::sleep(duration);
        shared.stop.store(true, Relaxed);
        worker.join().unwrap();
        shared
    }

    #[test]
    fn loop_counts_cycles_and_latency() {
        let shared = run_for(1_000_000, Duration::from_millis(200));
        let cycles = shared.stats.cycles.load(Relaxed);
        // 200 periods of 1 ms; an unloaded test machine reaches far more than half.
        assert!(cycles > 50, "cycles={cycles}");
        assert!(cycles <= 205, "cycles={cycles}");
        let mut snapshot = crate::histogram::Snapshot::default();
        shared.stats.latency.snapshot_into(&mut snapshot);
        assert_eq!(snapshot.count, cycles);
    }

    #[test]
    fn loop_stall_freezes_cycle_counter() {
        let shared = Arc::new(LoopShared::default());
        let (sender, mut consumer) = channel(16, Arc::new(AtomicU64::new(0)));
        let worker = {
            let shared = shared.clone();
            thread::spawn(move || run(&shared, 1_000_000, sender))
        };
        thread::sleep(Duration::from_millis(30));
        shared.stall.store(true, Relaxed);
        // One period plus margin for the loop to see the flag.
        thread::sleep(Duration::from_millis(20));
        let frozen = shared.stats.cycles.load(Relaxed);
        thread::sleep(Duration::from_millis(50));
        assert_eq!(shared.stats.cycles.load(Relaxed), frozen);
        assert!(frozen > 0);
        assert!(
            !worker.is_finished(),
            "the stalled loop must not exit by itself"
        );

        shared.stop.store(true, Relaxed);
        worker.join().unwrap();
        let events: Vec<Event> = std::iter::from_fn(|| consumer.pop().ok())
            .map(|r| r.event)
            .collect();
        assert_eq!(events.last(), Some(&Event::StallInjected));
    }

    #[test]
    fn loop_overrun_with_tiny_period_is_counted() {
        // 1 ns period: every cycle's work ends after the next deadline.
        let shared = run_for(1, Duration::from_millis(20));
        let stats = &shared.stats;
        assert!(stats.overruns.load(Relaxed) > 0);
        assert_eq!(stats.overruns.load(Relaxed), stats.cycles.load(Relaxed));
        assert!(stats.missed_cycles.load(Relaxed) >= stats.overruns.load(Relaxed));
        assert!(stats.overrun_streak.load(Relaxed) > 0);
    }

    #[test]
    fn overrun_streak_start_and_end() {
        let stats = LoopStats::default();
        let mut overruns = Overruns::default();
        assert_eq!(overruns.end_streak(), None);
        assert!(overruns.record(1, &stats));
        assert!(!overruns.record(3, &stats));
        assert_eq!(overruns.end_streak(), Some((2, 4)));
        assert_eq!(overruns.end_streak(), None);
        assert!(overruns.record(1, &stats));
        assert_eq!(stats.overruns.load(Relaxed), 3);
        assert_eq!(stats.missed_cycles.load(Relaxed), 5);
    }

    #[test]
    fn control_step_output_stays_bounded() {
        let mut state = ControlState::default();
        for cycle in 0..10_000 {
            control_step(&mut state, cycle);
            assert!(state.output.is_finite());
            assert!(state.output.abs() < 100.0, "output={}", state.output);
        }
    }
}
