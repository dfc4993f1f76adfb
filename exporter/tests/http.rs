//! HTTP behaviour of a running exporter on loopback, its systemd
//! notifications and its shutdown on SIGTERM.

mod common;

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::{fixture_script, request, Server, TempDir};

const UNITS: &str = "mxrc-rt.service,mxrc-nonrt.service,mxrc-monitor.service";

#[test]
fn get_metrics_returns_text() {
    let dir = TempDir::new("http-get");
    let server = Server::start(&fixture_script(&dir, "running.txt"), UNITS, &[]);
    let response = request(server.port, "GET", "/metrics", &[]);
    assert_eq!(response.status, 200);
    let content_type = response.header("content-type").unwrap();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let text = response.text();
    assert!(text.contains("mxrc_monitor_poll_success 1\n"), "{text}");
    assert!(text.contains(
        "mxrc_unit_sub_state{unit=\"mxrc-rt.service\",role=\"rt\",state=\"running\"} 1\n"
    ));
    let length: usize = response.header("content-length").unwrap().parse().unwrap();
    assert_eq!(length, response.body.len());
}

#[test]
fn head_metrics_has_headers_only() {
    let dir = TempDir::new("http-head");
    let server = Server::start(&fixture_script(&dir, "running.txt"), UNITS, &[]);
    let response = request(server.port, "HEAD", "/metrics", &[]);
    assert_eq!(response.status, 200);
    assert!(response.body.is_empty(), "HEAD body: {:?}", response.text());
    let length: usize = response.header("content-length").unwrap().parse().unwrap();
    assert!(
        length > 1000,
        "Content-Length of the GET body, got {length}"
    );
}

#[test]
fn unknown_path_returns_404() {
    let dir = TempDir::new("http-404");
    let server = Server::start(&fixture_script(&dir, "running.txt"), UNITS, &[]);
    assert_eq!(request(server.port, "GET", "/nope", &[]).status, 404);
    assert_eq!(request(server.port, "POST", "/nope", &[]).status, 404);
    assert_eq!(
        request(server.port, "GET", "/metrics/extra", &[]).status,
        404
    );
}

#[test]
fn other_methods_return_405() {
    let dir = TempDir::new("http-405");
    let server = Server::start(&fixture_script(&dir, "running.txt"), UNITS, &[]);
    for (method, path) in [("POST", "/metrics"), ("PUT", "/metrics"), ("DELETE", "/")] {
        let response = request(server.port, method, path, &["Content-Length: 0"]);
        assert_eq!(response.status, 405, "{method} {path}");
        assert_eq!(
            response.header("allow"),
            Some("GET, HEAD"),
            "{method} {path}"
        );
    }
}

#[test]
fn gzip_used_when_accepted() {
    let dir = TempDir::new("http-gzip");
    let server = Server::start(&fixture_script(&dir, "running.txt"), UNITS, &[]);
    let response = request(
        server.port,
        "GET",
        "/metrics",
        &["Accept-Encoding: gzip, deflate"],
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-encoding"), Some("gzip"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(response.body.as_slice())
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains("mxrc_monitor_polls_total"), "{text}");

    let plain = request(
        server.port,
        "GET",
        "/metrics",
        &["Accept-Encoding: gzip;q=0"],
    );
    assert_eq!(plain.header("content-encoding"), None);
}

#[test]
fn landing_page_links_metrics() {
    let dir = TempDir::new("http-landing");
    let server = Server::start(&fixture_script(&dir, "running.txt"), UNITS, &[]);
    let response = request(server.port, "GET", "/", &[]);
    assert_eq!(response.status, 200);
    assert!(
        response.text().contains("<a href=\"/metrics\">"),
        "{}",
        response.text()
    );
}

#[test]
fn oversized_request_head_rejected() {
    let dir = TempDir::new("http-large-head");
    let server = Server::start(&fixture_script(&dir, "running.txt"), UNITS, &[]);
    let huge = format!("X-Filler: {}", "a".repeat(64 * 1024));
    let response = request(server.port, "GET", "/metrics", &[huge.as_str()]);
    assert_eq!(response.status, 431);
    let after = request(server.port, "GET", "/metrics", &[]);
    assert_eq!(after.status, 200, "server still serves after a bad request");
}

#[test]
fn failing_poll_serves_stale_metrics() {
    let dir = TempDir::new("http-failing");
    let flag = dir.0.join("fail");
    let fixture = common::fixture_path("running.txt");
    let body = format!(
        "if [ -e '{}' ]; then echo 'Failed to connect to bus' >&2; exit 1; fi\ncat '{}'",
        flag.display(),
        fixture.display()
    );
    let systemctl = dir.script("systemctl", &body);
    let server = Server::start(&systemctl, UNITS, &[]);
    std::fs::write(&flag, "").unwrap();
    std::thread::sleep(Duration::from_millis(700));

    let response = request(server.port, "GET", "/metrics", &[]);
    assert_eq!(response.status, 200);
    let text = response.text();
    assert!(text.contains("mxrc_monitor_poll_success 0\n"), "{text}");
    assert!(text.contains("mxrc_monitor_stale 1\n"), "{text}");
    assert!(!text.contains("reason=\"exit_status\"} 0\n"), "{text}");
    assert!(
        text.contains("mxrc_unit_active_state{"),
        "the last snapshot is still served"
    );

    let stderr = server.stderr_text();
    let error_lines = stderr
        .lines()
        .filter(|line| line.contains(" ERRO unit poll failed"))
        .count();
    assert_eq!(
        error_lines, 1,
        "one error line per failure streak:\n{stderr}"
    );
}

#[test]
fn sigterm_exits_zero() {
    let dir = TempDir::new("http-sigterm");
    let mut server = Server::start(&fixture_script(&dir, "running.txt"), UNITS, &[]);
    let status = server.terminate();
    assert_eq!(status.code(), Some(0));
    assert!(
        server.stderr_text().contains("stopping"),
        "{}",
        server.stderr_text()
    );
}

/// Receives notify datagrams until `expected` arrives or `timeout` passes.
fn receive_until(socket: &UnixDatagram, expected: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(count) = socket.recv(&mut buffer) {
            let message = String::from_utf8_lossy(&buffer[..count]).into_owned();
            let done = message.lines().any(|line| line == expected);
            received.push(message);
            if done {
                break;
            }
        }
    }
    received
}

fn has_line(received: &[String], expected: &str) -> bool {
    received
        .iter()
        .any(|message| message.lines().any(|line| line == expected))
}

#[test]
fn notify_ready_watchdog_stopping() {
    let dir = TempDir::new("http-notify");
    let socket_path = dir.0.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let socket_text = socket_path.to_string_lossy().into_owned();
    let env = [
        ("NOTIFY_SOCKET", socket_text.as_str()),
        ("WATCHDOG_USEC", "600000"),
    ];
    let mut server = Server::start(&fixture_script(&dir, "running.txt"), UNITS, &env);

    let received = receive_until(&socket, "READY=1", Duration::from_secs(5));
    assert!(has_line(&received, "READY=1"), "{received:?}");
    let received = receive_until(&socket, "WATCHDOG=1", Duration::from_secs(3));
    assert!(has_line(&received, "WATCHDOG=1"), "{received:?}");

    server.terminate();
    let received = receive_until(&socket, "STOPPING=1", Duration::from_secs(3));
    assert!(has_line(&received, "STOPPING=1"), "{received:?}");
}

#[test]
fn watchdog_silent_while_polls_fail() {
    let dir = TempDir::new("http-notify-failing");
    let socket_path = dir.0.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let socket_text = socket_path.to_string_lossy().into_owned();
    let env = [
        ("NOTIFY_SOCKET", socket_text.as_str()),
        ("WATCHDOG_USEC", "400000"),
    ];
    let systemctl = dir.script("systemctl", "exit 1");
    let server = Server::start(&systemctl, UNITS, &env);

    let received = receive_until(&socket, "never sent", Duration::from_millis(1500));
    assert!(has_line(&received, "READY=1"), "{received:?}");
    assert!(!has_line(&received, "WATCHDOG=1"), "{received:?}");
    assert!(
        server.stderr_text().contains("stopped watchdog pings"),
        "{}",
        server.stderr_text()
    );
}

#[test]
fn busy_address_exits_1() {
    let dir = TempDir::new("http-busy");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = std::process::Command::new(common::BINARY)
        .arg(format!("--web.listen-address={address}"))
        .arg("--log.target=stderr")
        .arg(format!(
            "--systemctl.path={}",
            fixture_script(&dir, "running.txt").display()
        ))
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("failed to listen on {address}")),
        "{stderr}"
    );
}

#[test]
fn hanging_poll_keeps_http_responsive() {
    let dir = TempDir::new("http-hang");
    let pids = dir.0.join("pids");
    let body = format!("echo $$ >> '{}'\nexec sleep 100", pids.display());
    let systemctl = dir.script("systemctl", &body);
    let mut server = Server::start(&systemctl, UNITS, &[]);
    std::thread::sleep(Duration::from_millis(500));

    let started = Instant::now();
    let response = request(server.port, "GET", "/metrics", &[]);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(response.status, 200);
    let text = response.text();
    assert!(text.contains("mxrc_monitor_poll_success 0\n"), "{text}");
    assert!(
        !text.contains("mxrc_monitor_poll_errors_total{reason=\"timeout\"} 0\n"),
        "{text}"
    );
    assert!(
        !text.contains("mxrc_unit_"),
        "no snapshot was ever taken: {text}"
    );

    assert_eq!(server.terminate().code(), Some(0));
    std::thread::sleep(Duration::from_millis(200));
    for line in std::fs::read_to_string(&pids).unwrap().lines() {
        let pid: i32 = line.parse().unwrap();
        assert!(
            common::process_is_gone(pid),
            "poll child {pid} survived the shutdown"
        );
    }
}
