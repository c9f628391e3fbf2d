//! Runs the real agent on a free loopback port and talks HTTP/1.1 to it with
//! nothing but std (so the tests check the wire, not a client library).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A running agent. Dropped: SIGKILL by pid and reaped.
pub struct Agent {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: mpsc::Receiver<String>,
}

impl Agent {
    /// Starts `closewatch --listen 127.0.0.1:0 ARGS` with `config` as its
    /// config file and waits for the line that logs the bound address.
    pub fn start<S: AsRef<std::ffi::OsStr>>(config: &Path, args: &[S]) -> Agent {
        Agent::start_with_env(config, args, &[])
    }

    /// [`start`](Self::start) with these variables added to its environment.
    pub fn start_with_env<S: AsRef<std::ffi::OsStr>>(
        config: &Path,
        args: &[S],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Agent {
        Agent::start_under(&[], config, args, env)
    }

    /// [`start_with_env`](Self::start_with_env) under a wrapper that execs
    /// it in place (e.g. `setpriv ...`), so that the pid stays the agent's.
    pub fn start_under<S: AsRef<std::ffi::OsStr>>(
        wrapper: &[String],
        config: &Path,
        args: &[S],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Agent {
        let agent = env!("CARGO_BIN_EXE_closewatch");
        let command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(agent);
                c
            }
            None => Command::new(agent),
        };
        Agent::spawn(command, config, args, env)
    }

    /// [`start`](Self::start) with its RLIMIT_NOFILE (soft and hard) set to
    /// `nofile` in the child, between fork and exec.
    pub fn start_with_nofile<S: AsRef<std::ffi::OsStr>>(
        config: &Path,
        args: &[S],
        nofile: libc::rlim_t,
    ) -> Agent {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(env!("CARGO_BIN_EXE_closewatch"));
        let limit = libc::rlimit {
            rlim_cur: nofile,
            rlim_max: nofile,
        };
        // SAFETY: between fork and exec only async-signal-safe calls are
        // allowed: setrlimit is a plain syscall, and last_os_error only
        // reads errno. Nothing allocates or takes a lock.
        unsafe {
            command.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        Agent::spawn(command, config, args, &[])
    }

    /// Spawns `command` (the agent, or a wrapper that execs it) with the
    /// common flags and environment, and waits for the line that logs the
    /// bound address.
    fn spawn<S: AsRef<std::ffi::OsStr>>(
        mut command: Command,
        config: &Path,
        args: &[S],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Agent {
        command.arg("--config").arg(config);
        // A test that says where to listen gets only that.
        if !args
            .iter()
            .any(|a| a.as_ref() == std::ffi::OsStr::new("--listen"))
        {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the agent");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Debug lines (one a scan) only to the channel: echoed, they
                // bury a failed test's message in the output CI keeps.
                if !line.contains(" DEBUG]") {
                    eprintln!("agent: {line}");
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the agent never logged its address");
                }
            };
            // stderr is a pipe here, as under journald: no ANSI colour.
            assert!(!line.contains('\x1b'), "colour in a log line: {line:?}");
            let after = line
                .split("listening on http://")
                .nth(1)
                .or_else(|| line.split("listening on https://").nth(1));
            if let Some(rest) = after {
                let addr = rest.split('/').next().expect("address");
                break addr.parse().expect("a socket address");
            }
        };
        Agent {
            child,
            addr,
            log: rx,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One request; `None` if the connection failed.
    pub fn request(&self, method: &str, path: &str) -> Option<Response> {
        request(self.addr, method, path)
    }

    /// GET /metrics once a scan has completed.
    pub fn metrics(&self) -> String {
        let r = wait_for(Duration::from_secs(60), || {
            self.request("GET", "/metrics").filter(|r| r.status == 200)
        })
        .expect("/metrics answered 200 within 60 s");
        r.body
    }

    /// Waits until the log has a line containing `needle`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {needle:?} within {within:?}"),
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response, as read off the wire.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request with `Connection: close` and reads the whole answer.
pub fn request(addr: SocketAddr, method: &str, path: &str) -> Option<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Response {
        status,
        headers,
        body: body.to_string(),
    })
}

/// Polls `f` every 50 ms until it returns `Some`, or `within` passes.
pub fn wait_for<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the sample `name{labels}` in a scrape, labels given as
/// `key="value"` pairs in any order.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, r)) => (m, r.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            ok.then(|| value.parse().ok()).flatten()
        })
        .next()
}

/// Sends a signal to a pid the test started.
pub fn signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits");
    // SAFETY: plain syscall on a child we started and have not reaped.
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig})");
}

/// A free loopback port (bound, then released: the caller binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A child process killed by pid and reaped when dropped.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill(); // by pid
        let _ = self.0.wait();
    }
}

/// A real Prometheus server on a free loopback port, with `scrape_configs`
/// (YAML, already indented under the key) in a 1 s scrape interval config,
/// its data in a temporary directory. Stopped by pid when dropped.
pub struct Prometheus {
    pub addr: SocketAddr,
    _server: Reaped,
    _data: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(scrape_configs: &str) -> Prometheus {
        let data = tempfile::tempdir().expect("tempdir");
        let config = data.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{scrape_configs}"
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let server = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _server: Reaped(server),
            _data: data,
        }
    }

    /// The first series of an instant query (`query` URL-encoded).
    pub fn first(&self, query: &str) -> Option<serde_json::Value> {
        let r = request(self.addr, "GET", &format!("/api/v1/query?query={query}"))?;
        let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
        v["data"]["result"].as_array()?.first().cloned()
    }
}

/// Whether `name` is installed; in CI its absence fails the test, elsewhere
/// the test says loudly that it skipped. `package` is the Debian package
/// .ci/run installs it from.
pub fn tool(name: &str, package: &str) -> bool {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is missing in CI: .ci/run must install Debian's {package} package"
        );
        eprintln!("\n**** SKIPPED: {name} is not installed (apt-get install {package}) ****\n");
    }
    found
}
