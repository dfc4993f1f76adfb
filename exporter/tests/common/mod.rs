//! Helpers for tests that run the mxrc-monitor binary against fake systemctl scripts.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_mxrc-monitor");

/// Temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("mxrc-monitor-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// Writes an executable shell script and returns its path.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Script that prints a unit fixture for unit queries and the manager fixture otherwise.
pub fn fixture_script(dir: &TempDir, unit_fixture: &str) -> PathBuf {
    let units = fixture_path(unit_fixture);
    let manager = fixture_path("manager.txt");
    let body = format!(
        "for arg in \"$@\"; do\n  if [ \"$arg\" = \"--\" ]; then exec cat '{}'; fi\ndone\nexec cat '{}'",
        units.display(),
        manager.display()
    );
    dir.script("systemctl", &body)
}

/// Runs `mxrc-monitor --once` with the given systemctl and extra flags.
pub fn run_once(systemctl: &Path, extra: &[&str]) -> Output {
    Command::new(BINARY)
        .arg("--once")
        .arg("--log.target=stderr")
        .arg(format!("--systemctl.path={}", systemctl.display()))
        .arg("--collector.units=mxrc-rt.service,mxrc-nonrt.service,mxrc-monitor.service")
        .args(extra)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .output()
        .unwrap()
}

/// A running exporter; killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the exporter on a free loopback port and waits for its "started" log line.
    pub fn start(systemctl: &Path, units: &str, env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(BINARY)
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--log.target=stderr")
            .arg("--collector.interval=200ms")
            .arg("--collector.timeout=150ms")
            .arg(format!("--collector.units={units}"))
            .arg(format!("--systemctl.path={}", systemctl.display()))
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (sender, receiver) = std::sync::mpsc::channel();
        let lines = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(port) = started_port(&line) {
                    let _ = sender.send(port);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let port = receiver
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no 'started' line; stderr: {:?}", stderr.lock().unwrap()));
        Server {
            child,
            port,
            stderr,
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM and waits up to 5 s for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within 5 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    /// Stops the exporter with SIGTERM, so that it kills a running poll child,
    /// and falls back to SIGKILL.
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn started_port(line: &str) -> Option<u16> {
    if !line.contains(" started ") {
        return None;
    }
    let address = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("address="))?;
    address.rsplit(':').next()?.parse().ok()
}

/// Parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request with `Connection: close` and reads the whole response.
pub fn request(port: u16, method: &str, path: &str, extra_headers: &[&str]) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for header in extra_headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("response has a header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// Returns true when the process is gone or only a zombie waiting for its reaper.
pub fn process_is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}
