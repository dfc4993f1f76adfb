//! Synchronous signal handling: signals are blocked in every thread and the
//! main thread takes them with sigtimedwait.

use std::time::Duration;

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{SigSet, Signal};

/// Signals the process handles.
pub fn handled_set() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGUSR1);
    set
}

/// Blocks the handled signals in the calling thread. Call it in the main
/// thread before spawning any thread, so that all threads inherit the mask.
pub fn block_handled() -> Result<(), Errno> {
    handled_set().thread_block()
}

/// Waits up to `timeout` for one of the handled signals. Returns `None` on
/// timeout or when interrupted by another signal.
pub fn wait(timeout: Duration) -> Result<Option<Signal>, Errno> {
    let set = handled_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` wraps a valid sigset_t, `ts` is a valid timespec, and a
    // null siginfo pointer is allowed.
    let rc = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    if rc >= 0 {
        return Ok(Signal::try_from(rc).ok());
    }
    match Errno::last() {
        Errno::EAGAIN | Errno::EINTR => Ok(None),
        errno => Err(errno),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_times_out_without_signal() {
        std::thread::spawn(|| {
            block_handled().unwrap();
            let start = std::time::Instant::now();
            assert_eq!(wait(Duration::from_millis(20)).unwrap(), None);
            assert!(start.elapsed() >= Duration::from_millis(15));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn wait_returns_pending_thread_signal() {
        use nix::sys::pthread::{pthread_kill, pthread_self};
        std::thread::spawn(|| {
            block_handled().unwrap();
            // Blocked, so the signal stays pending for this thread only.
            pthread_kill(pthread_self(), Signal::SIGUSR1).unwrap();
            assert_eq!(wait(Duration::from_secs(1)).unwrap(), Some(Signal::SIGUSR1));
        })
        .join()
        .unwrap();
    }
}
