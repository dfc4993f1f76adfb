//! `mxrc-monitor --once` against fake systemctl scripts: valid output and
//! every poll error reason, plus start-up flag errors.

mod common;

use std::time::{Duration, Instant};

use common::{fixture_script, process_is_gone, run_once, TempDir, BINARY};

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn once_valid_fixture_prints_metrics() {
    let dir = TempDir::new("once-valid");
    let systemctl = fixture_script(&dir, "running.txt");
    let output = run_once(&systemctl, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "stderr: {}", stderr_of(&output));
    assert!(stdout.contains("mxrc_monitor_poll_success 1\n"), "{stdout}");
    let active =
        "mxrc_unit_active_state{unit=\"mxrc-rt.service\",role=\"rt\",state=\"active\"} 1\n";
    assert!(stdout.contains(active), "{stdout}");
    assert!(
        stdout.contains("mxrc_systemd_system_state{state=\"degraded\"} 1\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("mxrc_systemd_info{version=\"252.38-1~deb12u1\"} 1\n"),
        "{stdout}"
    );
}

#[test]
fn once_passes_units_after_separator() {
    let dir = TempDir::new("once-args");
    let args_file = dir.0.join("args");
    let fixture = common::fixture_path("running.txt");
    let body = format!(
        "echo \"$@\" >> '{}'\ncat '{}'",
        args_file.display(),
        fixture.display()
    );
    let systemctl = dir.script("systemctl", &body);
    let _ = run_once(&systemctl, &[]);
    let recorded = std::fs::read_to_string(&args_file).unwrap();
    let unit_call = recorded.lines().next().unwrap();
    assert!(
        unit_call.starts_with("show --no-pager --timestamp=unix --property=Id,"),
        "{unit_call}"
    );
    assert!(
        unit_call.ends_with(" -- mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service"),
        "{unit_call}"
    );
}

#[test]
fn once_hanging_child_killed() {
    let dir = TempDir::new("once-hang");
    let pids = dir.0.join("pids");
    let body = format!(
        "echo $$ >> '{0}'\nsleep 100 &\necho $! >> '{0}'\nwait",
        pids.display()
    );
    let systemctl = dir.script("systemctl", &body);
    let started = Instant::now();
    let output = run_once(&systemctl, &["--collector.timeout=300ms"]);
    let elapsed = started.elapsed();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("(timeout)"), "{stderr}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let recorded = std::fs::read_to_string(&pids).unwrap();
    let pids: Vec<i32> = recorded.lines().map(|line| line.parse().unwrap()).collect();
    assert!(
        pids.len() >= 2,
        "script and its sleep child recorded: {pids:?}"
    );
    std::thread::sleep(Duration::from_millis(200));
    for pid in pids {
        assert!(process_is_gone(pid), "process {pid} survived the timeout");
    }
}

#[test]
fn once_garbage_is_parse_error() {
    let dir = TempDir::new("once-garbage");
    let systemctl = dir.script("systemctl", "echo 'hello world'\necho 'no separator here'");
    let output = run_once(&systemctl, &[]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("(parse)"), "{stderr}");
}

#[test]
fn once_non_utf8_rejected() {
    let dir = TempDir::new("once-utf8");
    let systemctl = dir.script(
        "systemctl",
        "printf 'Id=mxrc-rt.service\\nDescription=\\377\\376\\n'",
    );
    let output = run_once(&systemctl, &[]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("(invalid_utf8)"), "{stderr}");
}

#[test]
fn once_large_output_rejected() {
    let dir = TempDir::new("once-large");
    let pids = dir.0.join("pids");
    let body = format!(
        "echo $$ >> '{}'\nhead -c 5000000 /dev/zero | tr '\\000' 'a'\nsleep 100",
        pids.display()
    );
    let systemctl = dir.script("systemctl", &body);
    let output = run_once(&systemctl, &[]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("(output_too_large)"), "{stderr}");
    std::thread::sleep(Duration::from_millis(200));
    for line in std::fs::read_to_string(&pids).unwrap().lines() {
        let pid: i32 = line.parse().unwrap();
        assert!(process_is_gone(pid), "process {pid} survived");
    }
}

#[test]
fn once_nonzero_exit_rejected() {
    let dir = TempDir::new("once-exit");
    let body = "echo 'Failed to connect to bus: No such file or directory' >&2\nexit 1";
    let systemctl = dir.script("systemctl", body);
    let output = run_once(&systemctl, &[]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("(exit_status)"), "{stderr}");
    assert!(stderr.contains("Failed to connect to bus"), "{stderr}");
}

#[test]
fn once_missing_systemctl_is_spawn_error() {
    let output = run_once(std::path::Path::new("/nonexistent/systemctl"), &[]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("(spawn)"), "{stderr}");
    assert!(stderr.contains("/nonexistent/systemctl"), "{stderr}");
}

#[test]
fn once_missing_unit_block_is_parse_error() {
    let dir = TempDir::new("once-missing-block");
    let systemctl = fixture_script(&dir, "running.txt");
    let extra =
        ["--collector.units=mxrc-rt.service,mxrc-nonrt.service,mxrc-monitor.service,a.service"];
    let output = std::process::Command::new(BINARY)
        .args(["--once", "--log.target=stderr"])
        .arg(format!("--systemctl.path={}", systemctl.display()))
        .args(extra)
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("expected 4"), "{stderr}");
}

fn run_with_flags(flags: &[&str]) -> std::process::Output {
    std::process::Command::new(BINARY)
        .args(flags)
        .env_remove("TRACEPARENT")
        .output()
        .unwrap()
}

#[test]
fn invalid_unit_name_exits_2() {
    let output = run_with_flags(&[
        "--once",
        "--collector.units=mxrc-rt.service,bad;name.service",
    ]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("\"bad;name.service\""), "{stderr}");
}

#[test]
fn option_like_unit_name_exits_2() {
    let output = run_with_flags(&["--once", "--collector.units=--all.service"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "stderr: {}",
        stderr_of(&output)
    );
}

#[test]
fn timeout_not_below_interval_exits_2() {
    let output = run_with_flags(&[
        "--once",
        "--collector.interval=500ms",
        "--collector.timeout=1s",
    ]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("must be shorter"), "{stderr}");
}

#[test]
fn malformed_traceparent_exits_2() {
    let output = run_with_flags(&["--once", "--traceparent=00-xyz-01"]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("\"00-xyz-01\""), "{stderr}");
}

#[test]
fn traceparent_trace_id_logged() {
    let dir = TempDir::new("once-trace");
    let systemctl = dir.script("systemctl", "exit 3");
    let output = std::process::Command::new(BINARY)
        .args(["--once", "--log.target=stderr"])
        .arg(format!("--systemctl.path={}", systemctl.display()))
        .env(
            "TRACEPARENT",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("trace_id=4bf92f3577b34da6a3ce929d0e0e4736"),
        "{stderr}"
    );
    assert!(stderr.contains("parent_span_id="), "{stderr}");
}

#[test]
fn once_large_junk_below_cap_is_parse_error() {
    let dir = TempDir::new("once-junk");
    let body = "yes 'Junk=0123456789012345678901234567890123456789' | head -c 3000000";
    let systemctl = dir.script("systemctl", body);
    let started = Instant::now();
    let output = run_once(&systemctl, &[]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("(parse)"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn once_repeated_unit_polled_once() {
    let dir = TempDir::new("once-repeated");
    let systemctl = fixture_script(&dir, "running.txt");
    let units =
        "--collector.units=mxrc-rt.service,mxrc-nonrt.service,mxrc-rt.service,mxrc-monitor.service";
    let output = std::process::Command::new(BINARY)
        .args(["--once", "--log.target=stderr", units])
        .arg(format!("--systemctl.path={}", systemctl.display()))
        .output()
        .unwrap();
    assert!(output.status.success(), "stderr: {}", stderr_of(&output));
}
