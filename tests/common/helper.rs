//! The helper programs of the load tests (examples/loadgen, examples/churn):
//! each prints JSON lines on stdout and stops at EOF on its stdin.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A running helper. Dropped (or stopped): EOF on its stdin, up to 60 s to
/// exit (churn reaps what it forked first), then SIGKILL by pid; always
/// reaped.
pub struct Helper {
    pub child: Child,
    name: String,
    lines: mpsc::Receiver<String>,
}

impl Helper {
    /// Starts the example `name` with `args` and returns it with its first
    /// line, waited for up to `within`.
    pub fn start<S: AsRef<OsStr>>(name: &str, args: &[S], within: Duration) -> (Helper, String) {
        let mut child = Command::new(super::example_path(name))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let helper = Helper {
            child,
            name: name.to_string(),
            lines,
        };
        let first = helper.line(within, "first line");
        (helper, first)
    }

    /// Its next line, if one comes within `within`.
    pub fn next_line(&self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }

    /// Its next line; panics if none comes within `within`.
    pub fn line(&self, within: Duration, what: &str) -> String {
        self.lines
            .recv_timeout(within)
            .unwrap_or_else(|e| panic!("{}: no {what} within {within:?} ({e})", self.name))
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `within` for it to exit by itself; panics if it does not.
    /// Its exit code (`None`: killed by a signal).
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while self.alive() {
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {within:?}",
                self.name
            );
            thread::sleep(Duration::from_millis(10));
        }
        self.child.wait().ok().and_then(|s| s.code())
    }

    /// EOF on its stdin; waits for it to exit (60 s at most), else SIGKILL.
    pub fn stop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.alive() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.stop();
    }
}
