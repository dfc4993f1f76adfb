//! Signal handling without async handlers: SIGTERM, SIGINT and SIGUSR1 are
//! blocked in every thread and received synchronously with sigwait(2) in
//! the main thread. [`Shutdown`] wakes the other threads when a stop is
//! requested.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

use nix::sys::signal::{SigSet, Signal};

/// Signals this process handles.
pub const HANDLED: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGUSR1];

/// Action requested by a received signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGTERM or SIGINT: stop after the current cycle and exit 0.
    Stop(Signal),
    /// SIGUSR1: stall the work loop when fault injection is on.
    FaultInjection,
}

/// Maps a received signal to its request.
pub fn request_for(signal: Signal) -> Option<Request> {
    match signal {
        Signal::SIGTERM | Signal::SIGINT => Some(Request::Stop(signal)),
        Signal::SIGUSR1 => Some(Request::FaultInjection),
        _ => None,
    }
}

/// Set of handled signals, blocked for the calling thread.
pub struct BlockedSignals {
    set: SigSet,
}

impl BlockedSignals {
    /// Blocks the handled signals in the calling thread. Call it before any
    /// thread is spawned, because threads inherit the mask of their creator
    /// and a signal delivered to a thread without the mask would run the
    /// default action (terminate) instead of reaching sigwait.
    pub fn block() -> nix::Result<BlockedSignals> {
        let mut set = SigSet::empty();
        for signal in HANDLED {
            set.add(signal);
        }
        set.thread_block()?;
        Ok(BlockedSignals { set })
    }

    /// Waits until one of the handled signals arrives and returns its request.
    pub fn wait(&self) -> nix::Result<Request> {
        loop {
            let signal = self.set.wait()?;
            if let Some(request) = request_for(signal) {
                return Ok(request);
            }
        }
    }
}

/// Stop flag with a condition variable, so sleeping threads wake at once
/// when a stop is requested.
#[derive(Debug, Default)]
pub struct Shutdown {
    stopped: Mutex<bool>,
    wakeup: Condvar,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Requests a stop and wakes every waiting thread.
    pub fn request(&self) {
        *self.lock() = true;
        self.wakeup.notify_all();
    }

    /// Sleeps until `deadline` or until a stop is requested. Returns true
    /// if a stop was requested.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        let mut stopped = self.lock();
        loop {
            if *stopped {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            stopped = self
                .wakeup
                .wait_timeout(stopped, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, bool> {
        self.stopped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn term_and_int_request_stop() {
        assert_eq!(
            request_for(Signal::SIGTERM),
            Some(Request::Stop(Signal::SIGTERM))
        );
        assert_eq!(
            request_for(Signal::SIGINT),
            Some(Request::Stop(Signal::SIGINT))
        );
    }

    #[test]
    fn usr1_requests_fault_injection() {
        assert_eq!(request_for(Signal::SIGUSR1), Some(Request::FaultInjection));
    }

    #[test]
    fn unhandled_signal_has_no_request() {
        assert_eq!(request_for(Signal::SIGHUP), None);
    }

    #[test]
    fn wait_without_stop_times_out() {
        let shutdown = Shutdown::new();
        let start = Instant::now();
        assert!(!shutdown.wait_until(start + Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn stop_wakes_waiting_thread() {
        let shutdown = Arc::new(Shutdown::new());
        let waiter = {
            let shutdown = Arc::clone(&shutdown);
            thread::spawn(move || {
                let start = Instant::now();
                let stopped = shutdown.wait_until(start + Duration::from_secs(30));
                (stopped, start.elapsed())
            })
        };
        thread::sleep(Duration::from_millis(20));
        shutdown.request();
        let (stopped, waited) = waiter.join().unwrap();
        assert!(stopped);
        assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    }

    #[test]
    fn wait_after_stop_returns_at_once() {
        let shutdown = Shutdown::new();
        shutdown.request();
        assert!(shutdown.wait_until(Instant::now() + Duration::from_secs(30)));
    }
}
