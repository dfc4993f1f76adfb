//! Real-time setup: stack pre-faulting, mlockall, SCHED_FIFO, CPU affinity,
//! CPU wakeup latency (PM QoS).

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use nix::errno::Errno;
use nix::libc;
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::sys::mman::{mlockall, MlockAllFlags};
use nix::unistd::Pid;
use slog::{info, warn, Logger};

use crate::cli::{CpuList, MAX_CPU};

/// Bytes of stack the loop thread touches before mlockall.
pub const PREFAULT_STACK_BYTES: usize = 256 * 1024;

/// Stack size of the loop thread; larger than the pre-faulted part so that
/// the touch itself has room.
pub const LOOP_STACK_BYTES: usize = 512 * 1024;

/// A failed real-time setup step, with the cause and the fix.
#[derive(Debug)]
pub struct RtSetupError {
    pub step: &'static str,
    pub errno: Errno,
    pub hint: String,
}

impl fmt::Display for RtSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Errno's Display is "ENOMEM: Out of memory".
        write!(f, "{} failed: {}", self.step, self.errno)?;
        if !self.hint.is_empty() {
            write!(f, ": {}", self.hint)?;
        }
        Ok(())
    }
}

/// Touches [`PREFAULT_STACK_BYTES`] of the calling thread's stack so that
/// those pages are mapped before mlockall locks them.
#[inline(never)]
pub fn prefault_stack() {
    let mut block = [0u8; PREFAULT_STACK_BYTES];
    // Write one byte per page; black_box keeps the writes from being removed.
    for i in (0..PREFAULT_STACK_BYTES).step_by(4096) {
        block[i] = 1;
    }
    std::hint::black_box(&mut block);
}

/// Locks all current and future pages of the process in RAM.
pub fn lock_memory() -> Result<(), RtSetupError> {
    mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE).map_err(|errno| {
        let hint = match errno {
            Errno::ENOMEM | Errno::EPERM => format!(
                "LimitMEMLOCK= too low; set LimitMEMLOCK=infinity or grant CAP_IPC_LOCK \
                 (RLIMIT_MEMLOCK is {})",
                memlock_limit_text()
            ),
            _ => String::new(),
        };
        RtSetupError {
            step: "mlockall(MCL_CURRENT|MCL_FUTURE)",
            errno,
            hint,
        }
    })
}

/// Returns the soft RLIMIT_MEMLOCK as text, e.g. "8388608 bytes" or "unlimited".
fn memlock_limit_text() -> String {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return "unknown".to_string();
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        format!("{} bytes", limit.rlim_cur)
    }
}

/// Returns a kB field such as "VmLck" of /proc/self/status, if readable.
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| {
        l.strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Sets thread `tid` to SCHED_FIFO at `priority`.
pub fn set_fifo(tid: Pid, priority: u8) -> Result<(), RtSetupError> {
    let param = libc::sched_param {
        sched_priority: i32::from(priority),
    };
    // SAFETY: `param` is a valid sched_param that outlives the call; on Linux a
    // TID selects that single thread.
    let rc = unsafe { libc::sched_setscheduler(tid.as_raw(), libc::SCHED_FIFO, &param) };
    if rc == 0 {
        return Ok(());
    }
    let errno = Errno::last();
    let hint = match errno {
        Errno::EPERM => {
            "missing LimitRTPRIO= or CAP_SYS_NICE, or RT group scheduling gives this cgroup \
             no RT runtime (do not set CPUQuota= on a FIFO unit)"
        }
        Errno::EINVAL => "priority out of range for SCHED_FIFO (1..=99)",
        _ => "",
    };
    Err(RtSetupError {
        step: "sched_setscheduler(SCHED_FIFO)",
        errno,
        hint: hint.to_string(),
    })
}

/// Returns the scheduling policy and priority of thread `tid`.
pub fn scheduler_of(tid: Pid) -> Result<(i32, i32), Errno> {
    // SAFETY: plain syscall wrapper without pointers.
    let policy = unsafe { libc::sched_getscheduler(tid.as_raw()) };
    if policy < 0 {
        return Err(Errno::last());
    }
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, writable sched_param.
    if unsafe { libc::sched_getparam(tid.as_raw(), &mut param) } != 0 {
        return Err(Errno::last());
    }
    Ok((policy, param.sched_priority))
}

/// Returns a readable name of a scheduling policy number.
pub fn policy_name(policy: i32) -> &'static str {
    match policy {
        libc::SCHED_OTHER => "SCHED_OTHER",
        libc::SCHED_FIFO => "SCHED_FIFO",
        libc::SCHED_RR => "SCHED_RR",
        libc::SCHED_BATCH => "SCHED_BATCH",
        libc::SCHED_IDLE => "SCHED_IDLE",
        _ => "unknown",
    }
}

/// Resets the calling thread to SCHED_OTHER priority 0 and logs the result.
///
/// The unit's CPUSchedulingPolicy=fifo applies to the whole process and new
/// threads inherit their creator's policy, so every non-loop thread calls this.
pub fn reset_to_sched_other(log: &Logger, thread: &str) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is valid for the call; pid 0 selects the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
    if rc != 0 {
        warn!(log, "failed to reset thread to SCHED_OTHER; it keeps the inherited policy";
              "THREAD" => thread, "ERROR" => Errno::last().desc());
    }
}

/// Returns the CPUs in the calling thread's current affinity mask.
pub fn current_affinity() -> Result<CpuList, Errno> {
    let set = sched_getaffinity(Pid::from_raw(0))?;
    let cpus = (0..=MAX_CPU.min(CpuSet::count() - 1))
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect();
    Ok(CpuList(cpus))
}

/// Pins thread `tid` to `cpus`.
pub fn set_affinity(tid: Pid, cpus: &CpuList) -> Result<(), RtSetupError> {
    let mut set = CpuSet::new();
    for &cpu in &cpus.0 {
        set.set(cpu).map_err(|errno| RtSetupError {
            step: "sched_setaffinity",
            errno,
            hint: format!("CPU {cpu} is outside the supported range"),
        })?;
    }
    sched_setaffinity(tid, &set).map_err(|errno| RtSetupError {
        step: "sched_setaffinity",
        errno,
        hint: match errno {
            Errno::EINVAL => format!(
                "none of the CPUs {cpus} is online and allowed for this process (check --cpus \
                 and the unit's CPUAffinity= / AllowedCPUs=)"
            ),
            _ => String::new(),
        },
    })
}

/// PM QoS device through which a process limits the CPU wakeup latency.
pub const CPU_DMA_LATENCY_PATH: &str = "/dev/cpu_dma_latency";

/// Requests a CPU wakeup latency of at most `latency_us` from the kernel's
/// PM QoS. The request lasts while the returned file stays open, so the
/// caller keeps it until exit. With a limit below the exit latency of a
/// cpuidle state (on a KVM guest with the haltpoll driver: HLT), idle CPUs
/// poll instead of entering that state, which shortens wakeups and costs power.
pub fn request_cpu_latency(latency_us: u32) -> Result<File, RtSetupError> {
    write_latency_request(Path::new(CPU_DMA_LATENCY_PATH), latency_us)
}

/// Opens `path` for writing and writes `latency_us` in the format of
/// /dev/cpu_dma_latency.
fn write_latency_request(path: &Path, latency_us: u32) -> Result<File, RtSetupError> {
    let fail = |err: std::io::Error| RtSetupError {
        step: "PM QoS request on /dev/cpu_dma_latency",
        errno: Errno::from_raw(err.raw_os_error().unwrap_or(libc::EIO)),
        hint: match err.kind() {
            std::io::ErrorKind::PermissionDenied => {
                "the device is root-only by default (mode 0600); run as root, give the \
                 service user write access to it, or drop --cpu-dma-latency-us"
                    .to_string()
            }
            std::io::ErrorKind::NotFound => {
                "the kernel has no PM QoS device; drop --cpu-dma-latency-us".to_string()
            }
            _ => String::new(),
        },
    };
    let mut file = File::options().write(true).open(path).map_err(fail)?;
    // The device takes the limit as a native-endian 32-bit integer.
    let value = i32::try_from(latency_us).unwrap_or(i32::MAX);
    file.write_all(&value.to_ne_bytes()).map_err(fail)?;
    Ok(file)
}

/// Logs how much memory mlockall locked.
///
/// VmLck counts whole locked mappings, including reserved but inaccessible
/// ranges such as glibc's per-thread malloc arenas (64 MiB each on 64-bit),
/// so it is far above the resident size; VmRSS is what is actually in RAM.
pub fn log_locked_memory(log: &Logger) {
    match (proc_status_kib("VmLck"), proc_status_kib("VmRSS")) {
        (Some(locked), Some(resident)) => info!(log, "memory locked with mlockall";
            "VMLCK_KIB" => locked, "VMRSS_KIB" => resident),
        _ => info!(
            log,
            "memory locked with mlockall; /proc/self/status not readable"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefault_stack_runs_on_small_thread() {
        std::thread::Builder::new()
            .stack_size(LOOP_STACK_BYTES)
            .spawn(prefault_stack)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn current_affinity_is_not_empty() {
        assert!(!current_affinity().unwrap().0.is_empty());
    }

    #[test]
    fn proc_status_field_is_read() {
        assert!(proc_status_kib("VmRSS").unwrap() > 0);
        assert_eq!(proc_status_kib("VmNoSuchField"), None);
    }

    #[test]
    fn latency_request_writes_native_i32() {
        let path =
            std::env::temp_dir().join(format!("mxrc-rt-latency-request-{}", std::process::id()));
        std::fs::write(&path, b"").unwrap();
        let file = write_latency_request(&path, 25).unwrap();
        drop(file);
        let written = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(written, 25i32.to_ne_bytes());
    }

    #[test]
    fn latency_request_missing_device_names_fix() {
        let path = Path::new("/nonexistent/mxrc-rt/cpu_dma_latency");
        let err = write_latency_request(path, 0).unwrap_err();
        assert_eq!(err.errno, Errno::ENOENT);
        assert!(err.to_string().contains("no PM QoS device"), "{err}");
        assert!(err.to_string().contains("--cpu-dma-latency-us"), "{err}");
    }

    #[test]
    fn setup_error_names_cause_and_fix() {
        let err = RtSetupError {
            step: "mlockall(MCL_CURRENT|MCL_FUTURE)",
            errno: Errno::ENOMEM,
            hint: "LimitMEMLOCK= too low; set LimitMEMLOCK=infinity".into(),
        };
        let text = err.to_string();
        assert_eq!(
            text,
            "mlockall(MCL_CURRENT|MCL_FUTURE) failed: ENOMEM: Out of memory: \
             LimitMEMLOCK= too low; set LimitMEMLOCK=infinity"
        );
        assert!(text.contains("ENOMEM"), "{text}");
        assert!(text.contains("LimitMEMLOCK=infinity"), "{text}");
    }
}
