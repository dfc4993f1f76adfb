//! sd_notify sending with repeated failures counted instead of logged each time.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Instant;

use sd_notify::NotifyState;
use slog::{error, info, Logger};

use crate::repeat::{RepeatCounter, Report};

/// Sends notifications to systemd. A failure is not fatal: the first one is
/// logged in full, repeats are summarised once a minute, and the first
/// success after failures is logged once.
#[derive(Default)]
pub struct Notifier {
    failures: RepeatCounter,
}

impl Notifier {
    /// Sends `state` to NOTIFY_SOCKET; does nothing when it is unset.
    pub fn send(&mut self, log: &Logger, state: &[NotifyState]) {
        let error = match sd_notify::notify(state) {
            Ok(()) => {
                if let Some(failures) = self.failures.record_success() {
                    info!(log, "sd_notify works again"; "FAILURES" => failures);
                }
                return;
            }
            Err(error) => error,
        };
        let message = state_names(state);
        match self.failures.record_error(Instant::now()) {
            Report::First => error!(log, "sd_notify failed; repeats are summarised once a minute";
                "ERROR" => error.to_string(), "NOTIFY_STATE" => message),
            Report::Summary { count, elapsed } => error!(log,
                "sd_notify failed {} more times in the last {} s", count, elapsed.as_secs();
                "ERROR" => error.to_string(), "NOTIFY_STATE" => message, "FAILURES" => count),
            Report::Suppressed => {}
        }
    }
}

/// A datagram socket connected once to NOTIFY_SOCKET, so that a WATCHDOG=1
/// costs one send(2) instead of the socket, connect, send and close that
/// `sd_notify::notify` makes on every call.
pub struct WatchdogSocket {
    path: Box<OsStr>,
    socket: UnixDatagram,
}

impl WatchdogSocket {
    /// Connects to NOTIFY_SOCKET; returns `None` when it is unset.
    pub fn from_env() -> io::Result<Option<Self>> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(path) => Self::connect(&path).map(Some),
            None => Ok(None),
        }
    }

    /// Connects to a socket path, or to an abstract name written as "@name".
    pub fn connect(path: &OsStr) -> io::Result<Self> {
        let socket = UnixDatagram::unbound()?;
        match path.as_bytes().strip_prefix(b"@") {
            Some(name) => socket.connect_addr(&SocketAddr::from_abstract_name(name)?)?,
            None => socket.connect(path)?,
        }
        Ok(Self {
            path: path.into(),
            socket,
        })
    }

    /// Sends WATCHDOG=1. When the send fails, for example because systemd
    /// bound its socket anew, it reconnects once and sends again.
    pub fn ping(&mut self) -> io::Result<()> {
        if self.socket.send(b"WATCHDOG=1").is_ok() {
            return Ok(());
        }
        *self = Self::connect(&self.path)?;
        self.socket.send(b"WATCHDOG=1").map(|_| ())
    }
}

/// Returns the variable names of a notification, e.g. "READY STATUS".
fn state_names(state: &[NotifyState]) -> String {
    let names: Vec<String> = state
        .iter()
        .map(|s| {
            let text = s.to_string();
            text.split('=').next().unwrap_or_default().to_string()
        })
        .collect();
    names.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_socket_sends_to_path() {
        let dir = std::env::temp_dir().join(format!("mxrc-rt-notify-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).unwrap();

        let mut socket = WatchdogSocket::connect(path.as_os_str()).unwrap();
        socket.ping().unwrap();
        socket.ping().unwrap();

        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn watchdog_socket_sends_to_abstract_name() {
        let name = format!("mxrc-rt-notify-test-{}", std::process::id());
        let receiver =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();

        let mut socket = WatchdogSocket::connect(OsStr::new(&format!("@{name}"))).unwrap();
        socket.ping().unwrap();

        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }

    #[test]
    fn watchdog_socket_missing_path_is_error() {
        let missing = OsStr::new("/nonexistent/mxrc-rt/notify.sock");
        assert!(WatchdogSocket::connect(missing).is_err());
    }

    #[test]
    fn state_names_without_values() {
        let state = [
            NotifyState::Ready,
            NotifyState::Status("cycles=1 overruns=0"),
        ];
        assert_eq!(state_names(&state), "READY STATUS");
    }
}
