//! Fixed-size log records, the non-blocking producer used by the loop thread,
//! and the "mxrc-rt-log" thread that writes them through slog.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rtrb::{Consumer, Producer, RingBuffer};
use slog::{debug, error, info, warn, Logger};

use crate::log::{Loggers, SpanId};

/// Ring capacity in records. At 1 kHz the loop logs at most two records per
/// overrun streak, so 1024 records cover far more than one drain interval.
pub const RING_CAPACITY: usize = 1024;

/// How long the log thread sleeps when the ring is empty. It polls because a
/// wakeup (futex or eventfd write) would be a syscall on the loop thread. The
/// cost is up to this much delay before a record is written, which keeps the
/// push-to-journal latency under 1 ms, and 2000 wakeups a second of a
/// SCHED_OTHER thread.
pub const DRAIN_INTERVAL: Duration = Duration::from_micros(500);

/// One event of the loop thread. `Copy`, no heap data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// First overrun of a streak: the cycle's work ended `lateness_ns` after
    /// the next deadline.
    OverrunStart { lateness_ns: u64 },
    /// An on-time cycle ended a streak of `streak` overruns that skipped
    /// `missed` deadlines in total.
    OverrunEnd { streak: u64, missed: u64 },
    /// The loop thread stopped cycling on SIGUSR1 (--fault-injection).
    StallInjected,
    /// Latency probe number `seq`, pushed only by `mxrc-rt bench --log-probes`.
    Probe { seq: u64 },
}

/// A log record as it travels through the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRecord {
    /// CLOCK_MONOTONIC time of the event in nanoseconds.
    pub mono_ns: u64,
    /// Cycle counter value at the event.
    pub cycle: u64,
    pub event: Event,
}

impl LogRecord {
    pub fn new(mono_ns: u64, cycle: u64, event: Event) -> Self {
        Self {
            mono_ns,
            cycle,
            event,
        }
    }
}

/// Producer side, owned by the loop thread.
pub struct RecordSender {
    producer: Producer<LogRecord>,
    dropped: Arc<AtomicU64>,
}

impl RecordSender {
    /// Pushes a record, or counts it as dropped when the ring is full.
    /// rtrb 0.4 `push` only loads and stores atomics and writes the slot, so
    /// this neither blocks, allocates nor makes a syscall.
    #[inline]
    pub fn send(&mut self, record: LogRecord) {
        if self.producer.push(record).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Returns true if a push now would drop the record.
    pub fn is_full(&self) -> bool {
        self.producer.is_full()
    }
}

/// Creates the ring and touches every slot once so that its pages are
/// resident before mlockall. `dropped` counts records lost to a full ring.
pub fn channel(capacity: usize, dropped: Arc<AtomicU64>) -> (RecordSender, Consumer<LogRecord>) {
    let (mut producer, mut consumer) = RingBuffer::new(capacity);
    let filler = LogRecord {
        mono_ns: 0,
        cycle: 0,
        event: Event::StallInjected,
    };
    while producer.push(filler).is_ok() {}
    while consumer.pop().is_ok() {}
    (RecordSender { producer, dropped }, consumer)
}

/// Shared state of the log thread.
pub struct LogThreadContext {
    pub loggers: Loggers,
    /// Span id of the current statistics window, set by the main thread.
    pub window_span: Arc<AtomicU64>,
    /// Set by the main thread once the loop thread has been joined; the log
    /// thread then drains what is left and exits.
    pub stop: Arc<AtomicBool>,
}

/// Overrun records (streak start and end) written per [`BUDGET_PERIOD`].
/// Later ones are counted and summarised in one record when the period ends,
/// so a loop that overruns constantly writes at most this many records and
/// one summary a minute.
pub const OVERRUN_RECORDS_PER_PERIOD: u64 = 10;

/// Length of one overrun record budget.
pub const BUDGET_PERIOD: Duration = Duration::from_secs(60);

/// Budget for overrun records; the period starts at the first record.
#[derive(Debug, Default)]
pub struct RecordBudget {
    period_start: Option<Instant>,
    written: u64,
    suppressed: u64,
}

impl RecordBudget {
    /// Ends the period if it is over at `now`, and returns the number of
    /// records it suppressed if there were any.
    pub fn roll(&mut self, now: Instant) -> Option<u64> {
        let start = self.period_start?;
        if now.saturating_duration_since(start) < BUDGET_PERIOD {
            return None;
        }
        let suppressed = self.suppressed;
        *self = Self::default();
        (suppressed > 0).then_some(suppressed)
    }

    /// Returns whether `event` may be written, and counts it as written or
    /// suppressed. Stall records are always written.
    pub fn admit(&mut self, event: &Event, now: Instant) -> bool {
        if matches!(event, Event::StallInjected | Event::Probe { .. }) {
            return true;
        }
        self.period_start.get_or_insert(now);
        if self.written < OVERRUN_RECORDS_PER_PERIOD {
            self.written += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// Returns the suppressed count of the current period and resets it.
    pub fn take_suppressed(&mut self) -> Option<u64> {
        let suppressed = std::mem::take(&mut self.suppressed);
        (suppressed > 0).then_some(suppressed)
    }
}

/// Spawns "mxrc-rt-log", which pops records every [`DRAIN_INTERVAL`] and
/// writes them with SPAN_ID = the current statistics window span, at most
/// [`OVERRUN_RECORDS_PER_PERIOD`] overrun records per [`BUDGET_PERIOD`].
pub fn spawn_log_thread(
    mut consumer: Consumer<LogRecord>,
    ctx: LogThreadContext,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("mxrc-rt-log".into())
        .spawn(move || {
            crate::setup::reset_to_sched_other(&ctx.loggers.root, "mxrc-rt-log");
            let mut budget = RecordBudget::default();
            loop {
                // Read the flag before draining, so that records pushed before
                // the flag was set are still written.
                let stopping = ctx.stop.load(Relaxed);
                let window_log = ctx
                    .loggers
                    .child_span(SpanId(ctx.window_span.load(Relaxed)));
                if let Some(suppressed) = budget.roll(Instant::now()) {
                    log_suppressed(&window_log, suppressed);
                }
                while let Ok(record) = consumer.pop() {
                    if budget.admit(&record.event, Instant::now()) {
                        write_record(&window_log, &record);
                    }
                }
                if stopping {
                    if let Some(suppressed) = budget.take_suppressed() {
                        log_suppressed(&window_log, suppressed);
                    }
                    debug!(ctx.loggers.root, "log thread drained the ring and stops");
                    return;
                }
                thread::sleep(DRAIN_INTERVAL);
            }
        })
}

fn log_suppressed(log: &Logger, suppressed: u64) {
    warn!(log, "{} more loop overrun records were not logged in the last {} s",
          suppressed, BUDGET_PERIOD.as_secs();
          "EVENT" => "overrun_suppressed", "SUPPRESSED" => suppressed,
          "LIMIT_PER_PERIOD" => OVERRUN_RECORDS_PER_PERIOD);
}

/// Writes one record with its fields as journald fields.
pub fn write_record(logger: &Logger, record: &LogRecord) {
    let LogRecord {
        mono_ns,
        cycle,
        event,
    } = *record;
    match event {
        Event::OverrunStart { lateness_ns } => warn!(
            logger, "loop overrun: cycle work ended after the next deadline";
            "EVENT" => "overrun", "CYCLE" => cycle, "LATENESS_NS" => lateness_ns,
            "MONOTONIC_NS" => mono_ns,
        ),
        Event::OverrunEnd { streak, missed } => info!(
            logger, "loop back on time after an overrun streak";
            "EVENT" => "overrun_end", "CYCLE" => cycle, "STREAK" => streak,
            "MISSED_CYCLES" => missed, "MONOTONIC_NS" => mono_ns,
        ),
        Event::StallInjected => error!(
            logger, "fault injection: loop thread stalls now and stops advancing its cycle counter";
            "EVENT" => "stall_injected", "CYCLE" => cycle, "MONOTONIC_NS" => mono_ns,
        ),
        Event::Probe { seq } => info!(
            logger, "log latency probe";
            "EVENT" => "probe", "SEQ" => seq, "MONOTONIC_NS" => mono_ns,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cycle: u64) -> LogRecord {
        LogRecord {
            mono_ns: cycle * 1000,
            cycle,
            event: Event::OverrunStart { lateness_ns: cycle },
        }
    }

    #[test]
    fn ring_full_drops_and_counts() {
        let dropped = Arc::new(AtomicU64::new(0));
        let (mut sender, mut consumer) = channel(4, dropped.clone());
        for cycle in 0..10 {
            sender.send(record(cycle));
        }
        assert_eq!(dropped.load(Relaxed), 6);
        let kept: Vec<u64> = std::iter::from_fn(|| consumer.pop().ok())
            .map(|r| r.cycle)
            .collect();
        assert_eq!(kept, vec![0, 1, 2, 3]);
    }

    #[test]
    fn ring_full_send_does_not_block() {
        let dropped = Arc::new(AtomicU64::new(0));
        let (mut sender, _consumer) = channel(2, dropped.clone());
        let start = std::time::Instant::now();
        for cycle in 0..100_000 {
            sender.send(record(cycle));
        }
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(dropped.load(Relaxed), 100_000 - 2);
    }

    #[test]
    fn ring_records_come_out_in_order() {
        let dropped = Arc::new(AtomicU64::new(0));
        let (mut sender, mut consumer) = channel(RING_CAPACITY, dropped.clone());
        let reader = thread::spawn(move || {
            let mut seen = Vec::new();
            while seen.len() < 5000 {
                match consumer.pop() {
                    Ok(r) => seen.push(r.cycle),
                    Err(_) => thread::yield_now(),
                }
            }
            seen
        });
        let mut sent = 0;
        while sent < 5000 {
            if sender.producer.push(record(sent)).is_ok() {
                sent += 1;
            }
        }
        let seen = reader.join().unwrap();
        assert_eq!(seen, (0..5000).collect::<Vec<_>>());
        assert_eq!(dropped.load(Relaxed), 0);
    }

    #[test]
    fn ring_channel_starts_empty_after_prefault() {
        let dropped = Arc::new(AtomicU64::new(0));
        let (sender, mut consumer) = channel(8, dropped.clone());
        assert!(consumer.pop().is_err());
        assert_eq!(sender.producer.slots(), 8);
        assert_eq!(dropped.load(Relaxed), 0);
    }

    #[test]
    fn budget_suppresses_overruns_beyond_limit() {
        let start = Instant::now();
        let mut budget = RecordBudget::default();
        let overrun = Event::OverrunStart { lateness_ns: 1 };
        let admitted = (0..15).filter(|_| budget.admit(&overrun, start)).count() as u64;
        assert_eq!(admitted, OVERRUN_RECORDS_PER_PERIOD);
        assert!(budget.admit(&Event::StallInjected, start));
        assert_eq!(budget.roll(start + Duration::from_secs(59)), None);
        let end = start + BUDGET_PERIOD;
        assert_eq!(budget.roll(end), Some(15 - OVERRUN_RECORDS_PER_PERIOD));
        assert!(budget.admit(&overrun, end));
    }

    #[test]
    fn budget_roll_without_records_is_quiet() {
        let mut budget = RecordBudget::default();
        assert_eq!(budget.roll(Instant::now()), None);
        let start = Instant::now();
        budget.admit(
            &Event::OverrunEnd {
                streak: 1,
                missed: 1,
            },
            start,
        );
        assert_eq!(budget.roll(start + BUDGET_PERIOD), None);
    }

    #[test]
    fn budget_take_suppressed_resets_count() {
        let start = Instant::now();
        let mut budget = RecordBudget::default();
        let overrun = Event::OverrunEnd {
            streak: 2,
            missed: 2,
        };
        for _ in 0..OVERRUN_RECORDS_PER_PERIOD + 2 {
            budget.admit(&overrun, start);
        }
        assert_eq!(budget.take_suppressed(), Some(2));
        assert_eq!(budget.take_suppressed(), None);
    }

    #[test]
    fn record_is_small_and_copy() {
        fn assert_copy<T: Copy>() {}
        assert_copy::<LogRecord>();
        assert!(std::mem::size_of::<LogRecord>() <= 48);
    }
}
