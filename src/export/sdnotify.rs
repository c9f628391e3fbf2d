//! The systemd notification protocol (`sd_notify(3)`), for `Type=notify`:
//! datagrams of `KEY=value` lines sent to the socket named by
//! `$NOTIFY_SOCKET` (a path, or an abstract name written with a leading `@`).
//! `WatchdogSec=` reaches the service as `$WATCHDOG_USEC` (and
//! `$WATCHDOG_PID`, the process meant).
//!
//! Outside systemd (`$NOTIFY_SOCKET` unset) every call does nothing. A send
//! that fails is logged once at debug level and otherwise ignored: a
//! notification must never stop the agent.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where notifications go, if anywhere.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
    warned: AtomicBool,
}

/// Why `$NOTIFY_SOCKET` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET={0:?} is neither an absolute path nor an @abstract name")]
    BadAddress(String),
    #[error("NOTIFY_SOCKET: {0}")]
    Io(#[from] io::Error),
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            target: None,
            watchdog: None,
            warned: AtomicBool::new(false),
        }
    }

    /// From the environment systemd gives a `Type=notify` service.
    pub fn from_env() -> Result<Notifier, NotifyError> {
        let socket = std::env::var("NOTIFY_SOCKET").ok();
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        Notifier::new(socket.as_deref(), usec.as_deref(), pid.as_deref())
    }

    fn new(
        socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
    ) -> Result<Notifier, NotifyError> {
        let mut n = Notifier::disabled();
        let Some(socket) = socket.filter(|s| !s.is_empty()) else {
            return Ok(n);
        };
        let addr = if let Some(name) = socket.strip_prefix('@') {
            SocketAddr::from_abstract_name(name.as_bytes())?
        } else if socket.starts_with('/') {
            SocketAddr::from_pathname(socket)?
        } else {
            return Err(NotifyError::BadAddress(socket.to_string()));
        };
        n.target = Some((UnixDatagram::unbound()?, addr));
        n.watchdog = watchdog(watchdog_usec, watchdog_pid, std::process::id());
        Ok(n)
    }

    /// Whether notifications go anywhere.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// `WatchdogSec=` of the unit, if it asks this process for keep-alives.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// How often to send `WATCHDOG=1`: half the watchdog period, as
    /// sd_watchdog_enabled(3) advises (but not more than 20 times a second,
    /// whatever a unit asks).
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog
            .map(|w| (w / 2).max(Duration::from_millis(50)))
    }

    /// Sends `state` (one or more `KEY=value` lines).
    pub fn notify(&self, state: &str) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        if let Err(e) = socket.send_to_addr(state.as_bytes(), addr) {
            if !self.warned.swap(true, Ordering::Relaxed) {
                log::warn!("cannot notify systemd ({e}); further failures are not logged");
            }
        }
    }

    /// The service is up: the listener is bound and the first scan published.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// A keep-alive for `WatchdogSec=` (sent only if the unit asks for it).
    pub fn keep_alive(&self) {
        if self.watchdog.is_some() {
            self.notify("WATCHDOG=1");
        }
    }

    /// `STATUS=`, shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        self.notify(&format!("STATUS={}", one_line(status)));
    }

    /// A config reload starts; [`ready`](Self::ready) ends it.
    pub fn reloading(&self) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = now.tv_sec as u128 * 1_000_000 + now.tv_nsec as u128 / 1_000;
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    /// The service is shutting down.
    pub fn stopping(&self) {
        self.notify("STOPPING=1");
    }
}

/// A status fits on one line: newlines would start new assignments.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The watchdog period, if `$WATCHDOG_USEC` is set and `$WATCHDOG_PID` (when
/// set) names this process.
fn watchdog(usec: Option<&str>, pid: Option<&str>, own: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(own) {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_is_for_this_process_only() {
        assert_eq!(
            watchdog(Some("30000000"), None, 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            watchdog(Some("30000000"), Some("7"), 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(watchdog(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog(Some("0"), None, 7), None);
        assert_eq!(watchdog(Some("soon"), None, 7), None);
        assert_eq!(watchdog(None, Some("7"), 7), None);
    }

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        assert!(!Notifier::new(None, None, None).expect("ok").enabled());
        assert!(!Notifier::new(Some(""), None, None).expect("ok").enabled());
        assert!(Notifier::new(Some("@closewatch-test"), None, None)
            .expect("abstract")
            .enabled());
        assert!(Notifier::new(Some("/run/systemd/notify"), None, None)
            .expect("path")
            .enabled());
        assert!(matches!(
            Notifier::new(Some("relative/notify"), None, None),
            Err(NotifyError::BadAddress(_))
        ));
    }

    #[test]
    fn messages_reach_the_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier::new(path.to_str(), Some("2000000"), None).expect("notifier");
        assert_eq!(n.watchdog_every(), Some(Duration::from_secs(1)));
        let tiny = Notifier::new(path.to_str(), Some("10"), None).expect("notifier");
        assert_eq!(tiny.watchdog_every(), Some(Duration::from_millis(50)));
        n.ready("scanning\nevery 15s");
        n.keep_alive();
        n.stopping();
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        for _ in 0..3 {
            let len = server.recv(&mut buf).expect("recv");
            got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        assert_eq!(
            got,
            [
                "READY=1\nSTATUS=scanning every 15s",
                "WATCHDOG=1",
                "STOPPING=1"
            ]
        );
    }
}
