//! Poller: runs `systemctl show` with a hard timeout and updates the shared state.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use slog::{debug, error, info, warn, Logger};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::time::MissedTickBehavior;

use crate::log::Loggers;
use crate::metrics::{count_invalid_values, unit_property_names};
use crate::parse::{parse_manager, parse_show, UnitProperties};
use crate::snapshot::{ManagerInfo, PollErrorReason, SharedState, Snapshot};

/// Maximum size of systemctl's stdout; a larger output is a poll error.
pub const STDOUT_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Bytes of systemctl's stderr kept for error messages; the rest is read and dropped.
const STDERR_KEPT_BYTES: usize = 4096;

/// The manager properties (Version, SystemState) need a second systemctl
/// child because `systemctl show` prints either the manager or units, never
/// both. SystemState changes rarely, so it is fetched on the first poll and
/// then every this many polls (30 s at the default 1 s interval).
pub const MANAGER_REFRESH_POLLS: u64 = 30;

/// Interval between summaries while polls keep failing.
const FAILURE_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// Settings of the systemctl child.
#[derive(Clone, Debug)]
pub struct PollConfig {
    pub systemctl: PathBuf,
    pub units: Vec<String>,
    pub timeout: Duration,
}

/// A failed poll: the reason label and a message for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollError {
    pub reason: PollErrorReason,
    pub message: String,
}

impl PollError {
    fn new(reason: PollErrorReason, message: String) -> PollError {
        PollError { reason, message }
    }
}

impl fmt::Display for PollError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} ({})", self.message, self.reason.label())
    }
}

impl std::error::Error for PollError {}

/// Units and counts from one successful `systemctl show` of the units.
#[derive(Debug)]
struct UnitPoll {
    units: Vec<UnitProperties>,
    parse_errors: u64,
}

/// Runs `systemctl show` for the units once and parses its output.
async fn fetch_units(config: &PollConfig) -> Result<UnitPoll, PollError> {
    let properties = format!("--property={}", unit_property_names().join(","));
    let mut args = vec![
        "show",
        "--no-pager",
        "--timestamp=unix",
        properties.as_str(),
        "--",
    ];
    args.extend(config.units.iter().map(String::as_str));
    let text = run_child(config, &args).await?;

    let (units, mut parse_errors) = parse_show(&text);
    parse_errors += units.iter().map(count_invalid_values).sum::<u64>();
    if units.len() < config.units.len() {
        let message = format!(
            "systemctl output has {} unit blocks with Id=, expected {} for {:?}",
            units.len(),
            config.units.len(),
            config.units
        );
        return Err(PollError::new(PollErrorReason::Parse, message));
    }
    Ok(UnitPoll {
        units,
        parse_errors,
    })
}

/// Runs `systemctl show` without units to read the manager's Version and SystemState.
async fn fetch_manager(config: &PollConfig) -> Result<ManagerInfo, PollError> {
    let args = ["show", "--no-pager", "--property=Version,SystemState"];
    let text = run_child(config, &args).await?;
    let properties = parse_manager(&text);
    let version = properties.get("Version").filter(|text| !text.is_empty());
    let system_state = properties
        .get("SystemState")
        .filter(|text| !text.is_empty());
    if version.is_none() && system_state.is_none() {
        let message = "systemctl output has neither Version= nor SystemState=".to_owned();
        return Err(PollError::new(PollErrorReason::Parse, message));
    }
    Ok(ManagerInfo {
        version: version.cloned(),
        system_state: system_state.cloned(),
    })
}

/// Runs the systemctl child with a hard timeout and returns its stdout.
///
/// The child runs in its own process group. On timeout or oversized output
/// the whole group gets SIGKILL and the child is reaped, so no process is
/// left behind, even a shell script's own children. Output that is not
/// UTF-8 is rejected (reason invalid_utf8) rather than parsed lossily,
/// because systemctl only prints UTF-8.
async fn run_child(config: &PollConfig, args: &[&str]) -> Result<String, PollError> {
    let program = &config.systemctl;
    let mut child = Command::new(program)
        .args(args)
        .env("SYSTEMD_PAGER", "")
        .env("SYSTEMD_COLORS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| {
            let message = format!("failed to start {}: {error}", program.display());
            PollError::new(PollErrorReason::Spawn, message)
        })?;
    let process_group = child.id();
    let _group_killer = ProcessGroupKiller(process_group);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let outcome = tokio::time::timeout(config.timeout, async {
        let (stdout, stderr) = tokio::try_join!(read_capped(stdout, STDOUT_MAX_BYTES), async {
            Ok(read_kept(stderr, STDERR_KEPT_BYTES).await)
        },)?;
        let status = child
            .wait()
            .await
            .map_err(|error| ReadError::Io(error.to_string()))?;
        Ok::<_, ReadError>((stdout, stderr, status))
    })
    .await;

    let (stdout, stderr, status) = match outcome {
        Ok(Ok(output)) => output,
        Ok(Err(read_error)) => {
            kill_and_reap(&mut child, process_group).await;
            return Err(read_error.into_poll_error(program));
        }
        Err(_elapsed) => {
            kill_and_reap(&mut child, process_group).await;
            let message = format!(
                "{} did not finish within {:?}; killed it",
                program.display(),
                config.timeout
            );
            return Err(PollError::new(PollErrorReason::Timeout, message));
        }
    };
    check_exit_status(program, status, &stderr)?;
    String::from_utf8(stdout).map_err(|error| {
        let message = format!(
            "{} printed invalid UTF-8 at byte {}",
            program.display(),
            error.utf8_error().valid_up_to()
        );
        PollError::new(PollErrorReason::InvalidUtf8, message)
    })
}

fn check_exit_status(program: &Path, status: ExitStatus, stderr: &[u8]) -> Result<(), PollError> {
    if status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(stderr);
    let first_line = stderr.lines().next().unwrap_or("").trim();
    let message = format!("{} failed with {status}: {first_line:?}", program.display());
    Err(PollError::new(PollErrorReason::ExitStatus, message))
}

async fn kill_and_reap(child: &mut tokio::process::Child, process_group: Option<u32>) {
    kill_process_group(process_group);
    // kill() sends SIGKILL to the child if it still runs and waits for it.
    let _ = child.kill().await;
}

/// Sends SIGKILL to a process group.
///
/// Linux does not reuse a pid while a process group with that id exists,
/// so after the leader is reaped this reaches only leftover members or fails
/// with ESRCH.
fn kill_process_group(process_group: Option<u32>) {
    if let Some(pid) = process_group.and_then(|pid| i32::try_from(pid).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Kills the child's process group when dropped: on every return from
/// [`run_child`] and when a poll is cancelled at shutdown, so background
/// processes of the child do not outlive the poll.
struct ProcessGroupKiller(Option<u32>);

impl Drop for ProcessGroupKiller {
    fn drop(&mut self) {
        kill_process_group(self.0);
    }
}

#[derive(Debug)]
enum ReadError {
    TooLarge,
    Io(String),
}

impl ReadError {
    fn into_poll_error(self, program: &Path) -> PollError {
        match self {
            ReadError::TooLarge => {
                let message = format!(
                    "{} printed more than {STDOUT_MAX_BYTES} bytes; killed it",
                    program.display()
                );
                PollError::new(PollErrorReason::OutputTooLarge, message)
            }
            ReadError::Io(error) => {
                let message = format!(
                    "failed to read the output of {}: {error}",
                    program.display()
                );
                PollError::new(PollErrorReason::Spawn, message)
            }
        }
    }
}

async fn read_capped(
    stream: Option<impl AsyncRead + Unpin>,
    max_bytes: usize,
) -> Result<Vec<u8>, ReadError> {
    let mut output = Vec::new();
    let Some(stream) = stream else {
        return Ok(output);
    };
    let limit = (max_bytes + 1) as u64;
    stream
        .take(limit)
        .read_to_end(&mut output)
        .await
        .map_err(|error| ReadError::Io(error.to_string()))?;
    if output.len() > max_bytes {
        return Err(ReadError::TooLarge);
    }
    Ok(output)
}

async fn read_kept(stream: Option<impl AsyncRead + Unpin>, kept_bytes: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut stream) = stream else {
        return kept;
    };
    let mut buffer = [0u8; 4096];
    while let Ok(count) = stream.read(&mut buffer).await {
        if count == 0 {
            break;
        }
        let room = kept_bytes.saturating_sub(kept.len());
        kept.extend_from_slice(&buffer[..count.min(room)]);
    }
    kept
}

/// Tracks a streak of failures so that only its start, periodic summaries
/// and its end are logged, never every failed poll.
#[derive(Debug, Default)]
struct FailureStreak {
    started: Option<Instant>,
    failures: u64,
    last_summary: Option<Instant>,
}

impl FailureStreak {
    fn on_failure(&mut self, log: &Logger, what: &str, error: &PollError) {
        let now = Instant::now();
        self.failures += 1;
        let Some(started) = self.started else {
            self.started = Some(now);
            self.last_summary = Some(now);
            error!(log, "{what} failed; logging only a summary while it keeps failing";
                "reason" => error.reason.label(), "error" => &error.message);
            return;
        };
        let since_summary = self.last_summary.map_or(Duration::MAX, |last| now - last);
        if since_summary >= FAILURE_SUMMARY_INTERVAL {
            self.last_summary = Some(now);
            warn!(log, "{what} still failing";
                "failures" => self.failures,
                "failing_for_s" => (now - started).as_secs(),
                "reason" => error.reason.label(), "error" => &error.message);
        } else {
            debug!(log, "{what} failed"; "reason" => error.reason.label(), "error" => &error.message);
        }
    }

    fn on_success(&mut self, log: &Logger, what: &str) {
        if let Some(started) = self.started.take() {
            info!(log, "{what} recovered";
                "failures" => self.failures, "failing_for_s" => started.elapsed().as_secs());
        }
        self.failures = 0;
        self.last_summary = None;
    }
}

/// Runs polls and stores their results in the shared state.
pub struct Poller {
    config: PollConfig,
    state: SharedState,
    loggers: Loggers,
    polls: u64,
    unit_streak: FailureStreak,
    manager_streak: FailureStreak,
}

impl Poller {
    pub fn new(config: PollConfig, state: SharedState, loggers: Loggers) -> Poller {
        Poller {
            config,
            state,
            loggers,
            polls: 0,
            unit_streak: FailureStreak::default(),
            manager_streak: FailureStreak::default(),
        }
    }

    /// Polls the units (and the manager every [`MANAGER_REFRESH_POLLS`] polls) once.
    ///
    /// Returns the error of the unit poll; a failed manager query is only
    /// counted and logged.
    pub async fn poll_once(&mut self) -> Result<(), PollError> {
        let span = self.loggers.child_span();
        let started = Instant::now();
        let result = fetch_units(&self.config).await;
        let duration = started.elapsed();
        let finished_unix = unix_now();

        if self.polls % MANAGER_REFRESH_POLLS == 0 {
            self.refresh_manager(&span).await;
        }
        self.polls += 1;

        self.state.update(|state| {
            state.polled = true;
            state.polls_total += 1;
            state.last_poll_duration_seconds = duration.as_secs_f64();
            state.last_poll_success = result.is_ok();
            match &result {
                Ok(poll) => {
                    state.parse_errors_total += poll.parse_errors;
                    state.last_success_unix = Some(finished_unix);
                    state.last_success_at = Some(Instant::now());
                    state.snapshot = Some(Arc::new(Snapshot {
                        units: poll.units.clone(),
                        taken_at_unix: finished_unix,
                    }));
                }
                Err(error) => {
                    state.record_error(error.reason);
                    if error.reason == PollErrorReason::Parse {
                        state.parse_errors_total += 1;
                    }
                }
            }
        });

        match result {
            Ok(poll) => {
                self.unit_streak.on_success(&span, "unit poll");
                debug!(span, "unit poll finished";
                    "units" => poll.units.len(), "parse_errors" => poll.parse_errors,
                    "duration_ms" => duration.as_millis() as u64);
                Ok(())
            }
            Err(error) => {
                self.unit_streak.on_failure(&span, "unit poll", &error);
                Err(error)
            }
        }
    }

    async fn refresh_manager(&mut self, span: &Logger) {
        match fetch_manager(&self.config).await {
            Ok(manager) => {
                self.manager_streak
                    .on_success(span, "systemd manager query");
                self.state.update(|state| state.manager = manager);
            }
            Err(error) => {
                self.manager_streak
                    .on_failure(span, "systemd manager query", &error);
                self.state.update(|state| state.record_error(error.reason));
            }
        }
    }

    /// Polls every `interval` until the task is dropped; never runs two polls at once.
    ///
    /// The first poll is expected to have run already, before readiness.
    pub async fn run(mut self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first tick completes immediately.
        ticker.tick().await;
        loop {
            ticker.tick().await;
            // poll_once logs and counts its own errors.
            let _ = self.poll_once().await;
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs_f64())
        .unwrap_or(0.0)
}
