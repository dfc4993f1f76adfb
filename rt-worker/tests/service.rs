//! Runs the mxrc-rt binary against a fake systemd notify socket and checks
//! the notification sequence, signal handling and exit codes.
//!
//! `--rt-policy degraded` lets the tests pass without root; as root the loop
//! thread gets SCHED_FIFO at the low priority passed here.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_mxrc-rt");

/// A unix datagram socket standing in for systemd's NOTIFY_SOCKET.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("mxrc-rt-test-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Self { socket, path }
    }

    /// Collects messages until `until` returns true for one or `timeout` passes.
    fn collect_until(&self, timeout: Duration, until: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut messages = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = until(&message);
                messages.push(message);
                if done {
                    break;
                }
            }
        }
        messages
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Starts the service; `watchdog_usec` "0" checks that a zero interval
/// disables the watchdog instead of making its thread spin.
fn spawn(socket: &NotifySocket, watchdog_usec: &str, extra: &[&str]) -> Child {
    Command::new(BIN)
        .args([
            "--log.target",
            "stderr",
            "--rt-policy",
            "degraded",
            "--priority",
            "10",
        ])
        .args(["--status-interval-ms", "200"])
        .args(extra)
        .env("NOTIFY_SOCKET", &socket.path)
        .env("WATCHDOG_USEC", watchdog_usec)
        .env_remove("WATCHDOG_PID")
        .env_remove("TRACEPARENT")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mxrc-rt")
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn signal(child: &Child, signal: Signal) {
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
}

#[test]
fn service_ready_status_stop_sequence() {
    let socket = NotifySocket::bind("sequence");
    let mut child = spawn(&socket, "400000", &[]);

    let startup = socket.collect_until(Duration::from_secs(5), |m| m.contains("READY=1"));
    let ready = startup.last().expect("no notification before timeout");
    assert!(ready.contains("READY=1"), "{startup:?}");
    assert!(ready.contains("STATUS=cycles="), "{ready}");

    let running = socket.collect_until(Duration::from_secs(2), |m| m.starts_with("STATUS="));
    let status = running
        .iter()
        .find(|m| m.starts_with("STATUS="))
        .expect("no STATUS");
    for key in [
        "cycles=",
        "overruns=",
        "lat_min_us=",
        "lat_avg_us=",
        "lat_p99_us=",
        "lat_max_us=",
        "win_lat_p99_us=",
        "win_lat_max_us=",
        "log_dropped=",
        "degraded=",
    ] {
        assert!(status.contains(key), "{key} missing in {status}");
    }
    let pings = socket.collect_until(Duration::from_secs(1), |m| m.contains("WATCHDOG=1"));
    assert!(pings.iter().any(|m| m.contains("WATCHDOG=1")), "{pings:?}");

    let stop_sent = Instant::now();
    signal(&child, Signal::SIGTERM);
    let stopping = socket.collect_until(Duration::from_secs(2), |m| m.contains("STOPPING=1"));
    assert!(
        stopping.iter().any(|m| m.contains("STOPPING=1")),
        "{stopping:?}"
    );
    let status = wait_exit(&mut child, Duration::from_secs(2)).expect("no exit after SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert!(stop_sent.elapsed() < Duration::from_millis(1500));
}

#[test]
fn sigint_exit_with_watchdog_off() {
    let socket = NotifySocket::bind("sigint");
    let mut child = spawn(&socket, "0", &[]);
    let startup = socket.collect_until(Duration::from_secs(5), |m| m.contains("READY=1"));
    assert!(startup.iter().any(|m| m.contains("READY=1")), "{startup:?}");
    let idle = socket.collect_until(Duration::from_millis(300), |m| m.contains("WATCHDOG=1"));
    assert!(!idle.iter().any(|m| m.contains("WATCHDOG=1")), "{idle:?}");

    signal(&child, Signal::SIGINT);
    let status = wait_exit(&mut child, Duration::from_secs(2)).expect("no exit after SIGINT");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn fault_injection_stops_watchdog_pings() {
    let socket = NotifySocket::bind("stall");
    let mut child = spawn(&socket, "200000", &["--fault-injection"]);
    let startup = socket.collect_until(Duration::from_secs(5), |m| m.contains("WATCHDOG=1"));
    assert!(
        startup.iter().any(|m| m.contains("WATCHDOG=1")),
        "{startup:?}"
    );

    signal(&child, Signal::SIGUSR1);
    // Let pings already in flight arrive, then expect none for 5 check intervals.
    socket.collect_until(Duration::from_millis(300), |_| false);
    let after = socket.collect_until(Duration::from_millis(500), |m| m.contains("WATCHDOG=1"));
    assert!(!after.iter().any(|m| m.contains("WATCHDOG=1")), "{after:?}");

    // The process itself stays alive and still stops cleanly.
    assert!(child.try_wait().unwrap().is_none());
    signal(&child, Signal::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(2)).expect("no exit after SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigusr1_without_fault_injection_is_ignored() {
    let socket = NotifySocket::bind("usr1");
    let mut child = spawn(&socket, "200000", &[]);
    let startup = socket.collect_until(Duration::from_secs(5), |m| m.contains("WATCHDOG=1"));
    assert!(
        startup.iter().any(|m| m.contains("WATCHDOG=1")),
        "{startup:?}"
    );

    signal(&child, Signal::SIGUSR1);
    socket.collect_until(Duration::from_millis(200), |_| false);
    let after = socket.collect_until(Duration::from_millis(500), |m| m.contains("WATCHDOG=1"));
    assert!(after.iter().any(|m| m.contains("WATCHDOG=1")), "{after:?}");

    signal(&child, Signal::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(2)).expect("no exit after SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn strict_affinity_failure_exits_3() {
    let socket = NotifySocket::bind("strict");
    let mut child = Command::new(BIN)
        .args([
            "--log.target",
            "stderr",
            "--rt-policy",
            "strict",
            "--priority",
            "10",
        ])
        .args(["--cpus", "1000"])
        .env("NOTIFY_SOCKET", &socket.path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(5)).expect("no exit");
    assert_eq!(status.code(), Some(3));
    let messages = socket.collect_until(Duration::from_millis(200), |_| false);
    assert!(
        messages.iter().all(|m| !m.contains("READY=1")),
        "{messages:?}"
    );
}

#[test]
fn invalid_traceparent_exits_2_naming_value() {
    let output = Command::new(BIN)
        .args(["--traceparent", "00-zz-1-01"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"00-zz-1-01\""), "{stderr}");
}

#[test]
fn period_below_minimum_rejected_by_cli() {
    let output = Command::new(BIN)
        .args(["--period-us", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at least 50 us"), "{stderr}");
}
