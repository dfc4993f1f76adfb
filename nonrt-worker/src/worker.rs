//! Main work loop: one cycle of non-real-time work per period, timed to
//! absolute deadlines `start + k * period`.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use slog::Logger;

use crate::signals::Shutdown;

/// Counters the work loop publishes to the watchdog and STATUS= threads.
#[derive(Debug, Default)]
pub struct Counters {
    /// Completed work cycles.
    pub cycles: AtomicU64,
    /// Deadlines that had already passed when the loop was ready to wait
    /// for them. Those ticks are skipped.
    pub ticks_late: AtomicU64,
}

/// Copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub cycles: u64,
    pub ticks_late: u64,
}

impl Counters {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            cycles: self.cycles.load(Ordering::Acquire),
            ticks_late: self.ticks_late.load(Ordering::Acquire),
        }
    }
}

/// Returns the next deadline after `now` on the grid `deadline + k * period`
/// and how many deadlines of that grid (from `deadline` on) have already
/// passed. Passed deadlines are skipped rather than run back to back.
pub fn next_deadline(deadline: Instant, now: Instant, period: Duration) -> (Instant, u64) {
    if now < deadline {
        return (deadline, 0);
    }
    let behind = now - deadline;
    let missed = (behind.as_nanos() / period.as_nanos()) as u64 + 1;
    let skip = period.saturating_mul(u32::try_from(missed).unwrap_or(u32::MAX));
    (deadline + skip, missed)
}

/// Events the work loop thread sends to the main thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    FirstCycleDone,
    Stopped,
}

/// Handle of the running work loop thread.
pub struct WorkLoop {
    events: Receiver<Event>,
    thread: JoinHandle<()>,
}

/// Settings and shared state the work loop thread runs with.
pub struct WorkLoopParts {
    pub period: Duration,
    pub counters: Arc<Counters>,
    pub shutdown: Arc<Shutdown>,
    /// Set by the signal handling to stall the loop (fault injection).
    pub stall: Arc<AtomicBool>,
    pub logger: Logger,
}

impl WorkLoop {
    /// Starts the work loop thread.
    pub fn spawn(parts: WorkLoopParts) -> io::Result<WorkLoop> {
        let (sender, events) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("work-loop".into())
            .spawn(move || run(parts, sender))?;
        Ok(WorkLoop { events, thread })
    }

    /// Waits until the first cycle has completed. Returns false if the
    /// thread ended before that.
    pub fn wait_first_cycle(&self) -> bool {
        matches!(self.events.recv(), Ok(Event::FirstCycleDone))
    }

    /// Waits up to `timeout` for the loop to finish after a stop request.
    /// Returns false if it did not finish in time.
    pub fn wait_stopped(self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Stopped) | Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.thread.join();
                    return true;
                }
                Ok(Event::FirstCycleDone) => continue,
                Err(RecvTimeoutError::Timeout) => return false,
            }
        }
    }
}

fn run(parts: WorkLoopParts, events: Sender<Event>) {
    let period = parts.period;
    let mut deadline = Instant::now();
    let mut cycle: u64 = 0;

    loop {
        if parts.stall.load(Ordering::Acquire) {
            stall_forever(&parts.logger, cycle);
        }

        do_placeholder_work(cycle);
        cycle += 1;
        parts.counters.cycles.store(cycle, Ordering::Release);
        if cycle == 1 {
            let _ = events.send(Event::FirstCycleDone);
        }

        let (next, missed) = next_deadline(deadline + period, Instant::now(), period);
        if missed > 0 {
            parts
                .counters
                .ticks_late
                .fetch_add(missed, Ordering::AcqRel);
        }
        deadline = next;

        if parts.shutdown.wait_until(deadline) {
            break;
        }
    }

    slog::debug!(parts.logger, "work loop finished"; "cycles" => cycle);
    let _ = events.send(Event::Stopped);
}

/// Placeholder for one cycle of non-real-time work.
///
/// TODO: replace with the real non-RT tasks of the controller. The loop
/// timing, counters and watchdog gating do not depend on what runs here.
fn do_placeholder_work(cycle: u64) {
    std::hint::black_box(cycle.wrapping_mul(0x9e37_79b9_7f4a_7c15));
}

/// Blocks this thread for good without exiting the process, so the cycle
/// counter stops and the watchdog thread withholds its pings. Only reached
/// through `--fault-injection` and SIGUSR1.
fn stall_forever(logger: &Logger, cycle: u64) -> ! {
    slog::warn!(logger, "fault injection: work loop stalls now and stops counting cycles"; "cycles" => cycle);
    loop {
        thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_millis(100);

    #[test]
    fn deadline_in_future_kept() {
        let start = Instant::now();
        let deadline = start + PERIOD;
        assert_eq!(next_deadline(deadline, start, PERIOD), (deadline, 0));
    }

    #[test]
    fn deadline_just_passed_skips_one_tick() {
        let start = Instant::now();
        let deadline = start + PERIOD;
        let now = deadline + Duration::from_millis(1);
        assert_eq!(next_deadline(deadline, now, PERIOD), (deadline + PERIOD, 1));
    }

    #[test]
    fn deadline_reached_exactly_counts_late() {
        let start = Instant::now();
        let deadline = start + PERIOD;
        assert_eq!(
            next_deadline(deadline, deadline, PERIOD),
            (deadline + PERIOD, 1)
        );
    }

    #[test]
    fn several_passed_deadlines_counted() {
        let start = Instant::now();
        let deadline = start + PERIOD;
        let now = deadline + Duration::from_millis(250);
        assert_eq!(
            next_deadline(deadline, now, PERIOD),
            (deadline + 3 * PERIOD, 3)
        );
    }

    #[test]
    fn next_deadline_stays_on_grid() {
        let start = Instant::now();
        let deadline = start + PERIOD;
        let now = deadline + Duration::from_millis(999);
        let (next, _) = next_deadline(deadline, now, PERIOD);
        assert_eq!((next - start).as_nanos() % PERIOD.as_nanos(), 0);
        assert!(next > now);
    }

    fn spawn_loop(period: Duration) -> (WorkLoop, Arc<Counters>, Arc<Shutdown>) {
        let counters = Arc::new(Counters::default());
        let shutdown = Arc::new(Shutdown::new());
        let work_loop = WorkLoop::spawn(WorkLoopParts {
            period,
            counters: Arc::clone(&counters),
            shutdown: Arc::clone(&shutdown),
            stall: Arc::new(AtomicBool::new(false)),
            logger: Logger::root(slog::Discard, slog::o!()),
        })
        .unwrap();
        (work_loop, counters, shutdown)
    }

    #[test]
    fn work_loop_counts_cycles_and_stops() {
        let (work_loop, counters, shutdown) = spawn_loop(Duration::from_millis(5));
        assert!(work_loop.wait_first_cycle());
        thread::sleep(Duration::from_millis(100));
        shutdown.request();
        assert!(work_loop.wait_stopped(Duration::from_secs(2)));
        let cycles = counters.snapshot().cycles;
        assert!(cycles >= 5, "only {cycles} cycles in 100 ms at 5 ms period");
    }

    #[test]
    fn work_loop_stops_during_long_period() {
        let (work_loop, _, shutdown) = spawn_loop(Duration::from_secs(60));
        assert!(work_loop.wait_first_cycle());
        let start = Instant::now();
        shutdown.request();
        assert!(work_loop.wait_stopped(Duration::from_secs(2)));
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
