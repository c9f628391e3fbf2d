//! Shared harness for the end-to-end tests: starts the scenario fixture
//! (examples/fixture/) under a guard that kills every process it made, runs
//! the real `closewatch` binary with a bounded wait, and works out what the
//! report must say from the facts the fixture reported (never from literals).

#![allow(dead_code)] // each test binary uses its own part of the harness

pub mod agent;
pub mod helper;
pub mod schema;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

/// Generous bounds for a shared, noisy machine; they only stop a hang.
const FIXTURE_TIMEOUT: Duration = Duration::from_secs(120);
const CLOSEWATCH_TIMEOUT: Duration = Duration::from_secs(120);
const FIXTURE_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The report flags every test uses: every CLOSE_WAIT / FIN_WAIT_2 is stale.
pub const REPORT_JSON: [&str; 7] = [
    "--report",
    "--format",
    "json",
    "--close-wait-age",
    "0s",
    "--fin-wait2-age",
    "0s",
];

/// Whether the test can run: it needs root. In CI (which runs as root) a
/// missing privilege fails the test instead of skipping it.
pub fn root(why: &str) -> bool {
    // SAFETY: plain syscall.
    let root = unsafe { libc::geteuid() == 0 };
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the tests as root ({why})"
        );
        eprintln!("**** SKIPPED: needs root ({why}) ****");
    }
    root
}

/// Runs the real binary as nobody with no capabilities (setpriv), with an
/// empty config nobody can read, and returns its output.
pub fn closewatch_as_nobody(args: &[&str]) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    let config = tempfile::NamedTempFile::new().expect("a temp config file");
    std::fs::set_permissions(config.path(), std::fs::Permissions::from_mode(0o644))
        .expect("chmod the config");
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_closewatch"))
        .arg("--config")
        .arg(config.path())
        .args(args)
        .output()
        .expect("run closewatch as nobody")
}

// ------------------------------------------------------ network namespaces

/// A namespace from `ip netns add`, deleted on drop (after the processes in
/// it are stopped: declare it before the fixtures).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn add() -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "cw-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ok = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().expect("run ip");
            assert!(st.success(), "ip {args:?}");
        };
        ok(&["netns", "add", &name]);
        let ns = Netns { name };
        ok(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Its identity: the nsfs inode of /run/netns/NAME.
    pub fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/run/netns/{}", self.name))
            .expect("stat /run/netns entry")
            .ino()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

// ------------------------------------------------------------ the fixture

/// The fixture's JSON line.
#[derive(Debug, Deserialize)]
pub struct Scenario {
    pub scenario: String,
    pub n: Option<u64>,
    /// The process started; it holds no socket.
    pub coordinator: u32,
    /// Every forked process, in fork order (a grandchild after its parent).
    pub children: Vec<u32>,
    /// The coordinator and every forked process.
    pub pids: Vec<u32>,
    pub listen: Option<String>,
    pub roles: Vec<Role>,
    /// Local address of every socket the fixture made, kept or closed.
    pub endpoints: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct Role {
    pub role: String,
    /// The processes that hold this role's sockets (several after fork).
    pub pids: Vec<u32>,
    /// Connections waiting, never accepted, in this role's listen queue.
    pub queued: u64,
    /// Sockets this role closed in FIN_WAIT_2: owned by nobody from then on
    /// (and gone at once if the host's TIME_WAIT table is full).
    pub orphaned: u64,
    /// The network namespace (inode) the role made for itself, if any.
    pub netns: Option<u64>,
    /// Sockets this role keeps, as its own tcp_info saw them.
    pub sockets: Vec<HeldSocket>,
}

#[derive(Debug, Deserialize)]
pub struct HeldSocket {
    pub state: String,
    pub local: String,
    pub remote: String,
    /// SIOCINQ: data bytes not yet read (the FIN is not counted).
    pub unread_bytes: u64,
    /// The program read EOF (recv returned 0).
    pub eof_read: bool,
}

impl Scenario {
    pub fn role(&self, name: &str) -> &Role {
        self.roles
            .iter()
            .find(|r| r.role == name)
            .unwrap_or_else(|| panic!("fixture {} has no role {name}: {self:?}", self.scenario))
    }
}

fn fixture_path() -> PathBuf {
    example_path("fixture")
}

/// Where cargo put an example: integration tests run from
/// target/<profile>/deps/, examples live in target/<profile>/examples/.
pub fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary under target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build --examples` (plain `cargo test` and \
         `cargo nextest run` build examples; `--test NAME` alone does not)",
        path.display()
    );
    path
}

/// A running fixture. Dropping it stops every process the fixture made, by
/// pid, even when the test panicked.
pub struct Fixture {
    child: Child,
    pub info: Scenario,
}

/// Kills the coordinator and its reported children (see [`Fixture`]'s Drop).
fn stop(child: &mut Child, forked: &[u32]) {
    // While the coordinator runs it has reaped none of its processes, so
    // their pids cannot have been reused: killing them by pid is safe. Deepest
    // first, for the same reason one level down.
    if matches!(child.try_wait(), Ok(None)) {
        for &pid in forked.iter().rev() {
            if let Ok(pid) = libc::pid_t::try_from(pid) {
                // SAFETY: plain syscall on a pid the fixture reported.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    // EOF on stdin: the coordinator reaps what it forked and exits.
    drop(child.stdin.take());
    let deadline = Instant::now() + FIXTURE_EXIT_TIMEOUT;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Kills the coordinator if the JSON line never came.
struct Starting(Option<Child>);

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            stop(child, &[]);
        }
    }
}

impl Fixture {
    /// Starts `fixture <scenario> [n]` and reads its JSON line.
    pub fn start(scenario: &str, n: Option<u32>) -> Fixture {
        Fixture::start_with(&[], scenario, n)
    }

    /// The same under a wrapper that execs it in place (so the pid stays the
    /// fixture's), e.g. `ip netns exec NAME`.
    pub fn start_with(wrapper: &[&str], scenario: &str, n: Option<u32>) -> Fixture {
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(fixture_path());
                c
            }
            None => Command::new(fixture_path()),
        };
        cmd.arg(scenario);
        if let Some(n) = n {
            cmd.arg(n.to_string());
        }
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the fixture");
        let mut starting = Starting(Some(child));
        let stdout = starting
            .0
            .as_mut()
            .and_then(|c| c.stdout.take())
            .expect("fixture stdout is piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(read);
        });
        let line = match rx.recv_timeout(FIXTURE_TIMEOUT) {
            Ok(Ok(line)) if !line.trim().is_empty() => line,
            Ok(Ok(_)) => panic!("fixture {scenario} exited without its JSON line (see its stderr)"),
            Ok(Err(e)) => panic!("reading the fixture's stdout: {e}"),
            Err(_) => panic!("fixture {scenario}: no JSON line within {FIXTURE_TIMEOUT:?}"),
        };
        let info: Scenario = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("fixture {scenario} printed bad JSON ({e}): {line}"));
        let child = starting.0.take().expect("still owned");
        let fixture = Fixture { child, info };
        assert_eq!(fixture.info.coordinator, fixture.child.id());
        assert_eq!(fixture.info.scenario, scenario);
        fixture
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        stop(&mut self.child, &self.info.children);
    }
}

// -------------------------------------------------------------- closewatch

/// One finished run of closewatch.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The JSON report on stdout, validated against docs/report.schema.json
    /// (panics when it is not JSON or does not match).
    pub fn json(&self) -> Value {
        report_json_of(self.stdout.as_bytes(), self.stderr.as_bytes())
    }
}

/// The JSON report in `stdout`, validated against docs/report.schema.json;
/// panics with `stderr` when it is not JSON or does not match.
pub fn report_json_of(stdout: &[u8], stderr: &[u8]) -> Value {
    let stderr = String::from_utf8_lossy(stderr);
    let report = serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "closewatch printed invalid JSON ({e}):\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(stdout)
        )
    });
    schema::assert_valid(&report, &format!("stderr:\n{stderr}"));
    report
}

fn drain(mut r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = r.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs the real binary with `args`, an empty config file (so a host's
/// /etc/closewatch cannot change the thresholds), NO_COLOR unset, stdout and
/// stderr piped (not a TTY), and a bounded wait.
pub fn closewatch<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    closewatch_under(&[], args)
}

/// [`closewatch`] under a `wrapper` that execs it in place (e.g. `setpriv
/// ...`); the config file is readable by any user.
pub fn closewatch_under<S: AsRef<std::ffi::OsStr>>(wrapper: &[&str], args: &[S]) -> Run {
    use std::os::unix::fs::PermissionsExt;
    let config = tempfile::NamedTempFile::new().expect("a temp config file");
    std::fs::set_permissions(config.path(), std::fs::Permissions::from_mode(0o644))
        .expect("chmod the config");
    let mut cmd = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(env!("CARGO_BIN_EXE_closewatch"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_closewatch")),
    };
    let child = cmd
        .arg("--config")
        .arg(config.path())
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .env_remove("COLUMNS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start closewatch");
    struct Guard(Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut guard = Guard(child);
    let out = drain(guard.0.stdout.take().expect("stdout is piped"));
    let err = drain(guard.0.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + CLOSEWATCH_TIMEOUT;
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("wait for closewatch") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "closewatch did not finish within {CLOSEWATCH_TIMEOUT:?}"
        );
        thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code(),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// `closewatch --report --format json` with every CLOSE_WAIT / FIN_WAIT_2
/// stale, restricted to `pids` unless it is empty.
pub fn report_json(pids: &[u32]) -> Run {
    report_json_with(pids, &[])
}

/// [`report_json`] with more flags.
pub fn report_json_with(pids: &[u32], extra: &[&str]) -> Run {
    let mut args: Vec<String> = REPORT_JSON
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
    for pid in pids {
        args.push("--pid".to_string());
        args.push(pid.to_string());
    }
    closewatch(&args)
}

// ------------------------------------------------------------- attribution

/// How a report maps sockets to processes (`--attribution`). The tests on
/// real sockets check their reports under each backend that can be asked
/// for by name: the same host state must read the same under both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The walk of /proc/PID/fd.
    Procfs,
    /// The BPF iterators (loading them needs CAP_BPF and CAP_PERFMON).
    Bpf,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Procfs, Backend::Bpf];

    /// Its name in `--attribution` and in the report's `attribution`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Procfs => "procfs",
            Backend::Bpf => "bpf",
        }
    }

    /// `--attribution NAME`.
    pub fn flags(self) -> [&'static str; 2] {
        ["--attribution", self.name()]
    }
}

/// [`report_json_with`] under `backend`. When the output is a JSON report,
/// it must say it was made by that backend (panics otherwise); whether it
/// is valid is for the caller ([`Run::json`]).
pub fn report_json_by(backend: Backend, pids: &[u32], extra: &[&str]) -> Run {
    let mut flags = backend.flags().to_vec();
    flags.extend(extra);
    // Said, so that a failure shows which backend's report it was.
    eprintln!("report by --attribution {}", backend.name());
    let run = report_json_with(pids, &flags);
    if let Ok(report) = serde_json::from_str::<Value>(&run.stdout) {
        assert_eq!(
            report["attribution"],
            backend.name(),
            "--attribution {} made a report by another backend; stderr:\n{}",
            backend.name(),
            run.stderr
        );
    }
    run
}

// ------------------------------------------------------------ expectations

/// What the report must say about one process.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Expected {
    pub close_wait: u64,
    pub fin_wait2: u64,
    pub close_wait_unaccepted: u64,
    /// (remote, state) → (count, recv_q_bytes).
    pub peers: BTreeMap<(String, String), (u64, u64)>,
}

impl Expected {
    pub fn holds_any(&self) -> bool {
        self.close_wait + self.fin_wait2 + self.close_wait_unaccepted > 0
    }
}

/// `tcpi_state` of FIN_WAIT_2 (include/net/tcp_states.h).
pub const TCP_FIN_WAIT2: u8 = 5;

/// The kernel's TCP state of `s` (`getsockopt(TCP_INFO)`'s `tcpi_state`).
pub fn tcp_state(s: &std::net::TcpStream) -> u8 {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain old data; all-zero is valid.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: info and len describe a writable buffer of that size.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(
        rc,
        0,
        "getsockopt(TCP_INFO): {}",
        std::io::Error::last_os_error()
    );
    info.tcpi_state
}

/// Waits (10 s at most, then panics) until `s` is in `state`. After
/// `shutdown(SHUT_WR)` the socket stays in FIN_WAIT_1 until the peer's kernel
/// ACKs the FIN, and that ACK is delayed: the peer reads EOF first (measured
/// here: 1,999 of 2,000 half-closers were still in FIN_WAIT_1 when the peer
/// read EOF, and reached FIN_WAIT_2 1.8-4.4 ms later).
pub fn wait_tcp_state(s: &std::net::TcpStream, state: u8) {
    let mut last = 0;
    let reached = agent::wait_for(Duration::from_secs(10), || {
        last = tcp_state(s);
        (last == state).then_some(())
    });
    assert!(
        reached.is_some(),
        "{s:?} is still in TCP state {last} after 10 s, not {state}"
    );
}

/// sock_diag's Recv-Q is rcv_nxt - copied_seq, and a FIN takes one sequence
/// number: a CLOSE_WAIT socket whose EOF was never read shows one byte more
/// than its unread data (as `ss` shows Recv-Q 1).
pub fn recv_q(s: &HeldSocket) -> u64 {
    s.unread_bytes + u64::from(s.state == "close_wait" && !s.eof_read)
}

/// Per pid of the fixture: what each holds, from the roles' own reports.
/// A socket a role holds belongs to every pid of the role (fork).
pub fn expected(info: &Scenario) -> BTreeMap<u32, Expected> {
    let mut map: BTreeMap<u32, Expected> = info
        .pids
        .iter()
        .map(|&p| (p, Expected::default()))
        .collect();
    for role in &info.roles {
        for pid in &role.pids {
            let e = map.entry(*pid).or_default();
            e.close_wait_unaccepted += role.queued;
            for s in &role.sockets {
                match s.state.as_str() {
                    "close_wait" => e.close_wait += 1,
                    "fin_wait2" => e.fin_wait2 += 1,
                    _ => continue,
                }
                let peer = e
                    .peers
                    .entry((s.remote.clone(), s.state.clone()))
                    .or_default();
                peer.0 += 1;
                peer.1 += recv_q(s);
            }
        }
    }
    map
}

/// The default levels of `close_wait_stale` and `fin_wait2_stale` (README:
/// What it checks): warning at ≥ 1 stale socket, critical at ≥ 100.
pub fn default_severity(stale: u64) -> Option<&'static str> {
    match stale {
        0 => None,
        1..=99 => Some("warning"),
        _ => Some("critical"),
    }
}

fn rank(severity: Option<&str>) -> u8 {
    match severity {
        None => 0,
        Some("warning") => 1,
        Some("critical") => 2,
        Some(other) => panic!("unknown severity {other:?}"),
    }
}

/// The status `close_wait_stale` and `fin_wait2_stale` give these processes
/// at their default levels.
pub fn expected_status(exp: &BTreeMap<u32, Expected>) -> &'static str {
    let worst = exp
        .values()
        .flat_map(|e| {
            [
                default_severity(e.close_wait),
                default_severity(e.fin_wait2),
            ]
        })
        .max_by_key(|s| rank(*s))
        .flatten();
    status_name(rank(worst))
}

fn status_name(rank: u8) -> &'static str {
    match rank {
        0 => "ok",
        1 => "warning",
        _ => "critical",
    }
}

/// Nagios: ok 0, warning 1, critical 2.
pub fn exit_code_of(status: &str) -> i32 {
    match status {
        "ok" => 0,
        "warning" => 1,
        "critical" => 2,
        other => panic!("unknown status {other:?}"),
    }
}

// -------------------------------------------------------------- assertions

pub fn u(v: &Value, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what} is not an unsigned integer: {v}"))
}

pub fn processes(report: &Value) -> &Vec<Value> {
    report["processes"]
        .as_array()
        .unwrap_or_else(|| panic!("report has no processes array: {report}"))
}

pub fn process(report: &Value, pid: u32) -> Option<&Value> {
    processes(report)
        .iter()
        .find(|p| p["pid"].as_u64() == Some(u64::from(pid)))
}

pub fn listed_pids(report: &Value) -> Vec<u32> {
    processes(report)
        .iter()
        .map(|p| u32::try_from(u(&p["pid"], "pid")).expect("pid fits u32"))
        .collect()
}

pub fn finding_checks(p: &Value) -> Vec<String> {
    p["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("process has no findings array: {p}"))
        .iter()
        .map(|f| f["check"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Checks one process entry against what the fixture says it holds.
pub fn assert_process(p: &Value, pid: u32, exp: &Expected) {
    let ctx = format!("pid {pid}: {p:#}");
    assert_eq!(u(&p["pid"], "pid"), u64::from(pid), "{ctx}");
    // comm as the kernel has it, read independently.
    if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        assert_eq!(p["comm"].as_str(), Some(comm.trim_end()), "{ctx}");
    }
    let s = &p["sockets"];
    assert_eq!(u(&s["close_wait"], "close_wait"), exp.close_wait, "{ctx}");
    assert_eq!(u(&s["fin_wait2"], "fin_wait2"), exp.fin_wait2, "{ctx}");
    assert_eq!(
        u(&s["close_wait_unaccepted"], "close_wait_unaccepted"),
        exp.close_wait_unaccepted,
        "{ctx}"
    );
    // --close-wait-age 0s / --fin-wait2-age 0s: every one is stale.
    assert_eq!(
        u(&s["close_wait_stale"], "close_wait_stale"),
        exp.close_wait,
        "{ctx}"
    );
    assert_eq!(
        u(&s["fin_wait2_stale"], "fin_wait2_stale"),
        exp.fin_wait2,
        "{ctx}"
    );
    for (field, n) in [
        ("oldest_close_wait_seconds", exp.close_wait),
        ("oldest_fin_wait2_seconds", exp.fin_wait2),
    ] {
        if n == 0 {
            assert!(s[field].is_null(), "{field} must be null: {ctx}");
        } else {
            let age = s[field].as_f64().unwrap_or(-1.0);
            assert!(age >= 0.0, "{field} must be a number ≥ 0: {ctx}");
        }
    }

    let peers = p["peers"]
        .as_array()
        .unwrap_or_else(|| panic!("no peers array: {ctx}"));
    let got: BTreeMap<(String, String), (u64, u64)> = peers
        .iter()
        .map(|peer| {
            (
                (
                    peer["remote"].as_str().unwrap_or_default().to_string(),
                    peer["state"].as_str().unwrap_or_default().to_string(),
                ),
                (
                    u(&peer["count"], "count"),
                    u(&peer["recv_q_bytes"], "recv_q_bytes"),
                ),
            )
        })
        .collect();
    assert_eq!(got.len(), peers.len(), "duplicate peer entries: {ctx}");
    assert_eq!(got, exp.peers, "peers: {ctx}");
    let counts: Vec<u64> = peers.iter().map(|p| u(&p["count"], "count")).collect();
    assert!(
        counts.windows(2).all(|w| w[0] >= w[1]),
        "peers must be ordered by count: {ctx}"
    );
    for peer in peers {
        assert!(
            peer["oldest_seconds"].as_f64().unwrap_or(-1.0) >= 0.0,
            "{ctx}"
        );
    }

    // close_wait_stale and fin_wait2_stale fire exactly when their sockets
    // exist.
    let findings = p["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings array: {ctx}"));
    for (check, n) in [
        ("close_wait_stale", exp.close_wait),
        ("fin_wait2_stale", exp.fin_wait2),
    ] {
        let fired: Vec<&Value> = findings.iter().filter(|f| f["check"] == check).collect();
        match default_severity(n) {
            None => assert!(fired.is_empty(), "{check} must not fire: {ctx}"),
            Some(severity) => {
                assert_eq!(fired.len(), 1, "{check} must fire once: {ctx}");
                assert_eq!(fired[0]["severity"], severity, "{ctx}");
                for field in ["message", "hint"] {
                    let text = fired[0][field].as_str().unwrap_or_default();
                    assert!(!text.is_empty(), "{check} needs a {field}: {ctx}");
                }
            }
        }
    }
    // Nothing else is expected of these few-fd processes, except the checks
    // of a listener with an accept queue: the fixture fills it to its backlog
    // (the `unaccepted` scenario listens with a backlog of N and queues N),
    // which is a full queue (accept_queue_full, critical).
    for f in findings {
        let check = f["check"].as_str().unwrap_or_default();
        let queue = exp.close_wait_unaccepted > 0;
        let allowed = matches!(check, "close_wait_stale" | "fin_wait2_stale")
            || (check == "close_wait_unaccepted" && queue)
            || (check == "accept_queue_full" && queue && f["severity"] == "critical");
        assert!(allowed, "unexpected finding {check}: {ctx}");
    }
}

/// The worst severity among the listed processes' findings, as a status.
pub fn worst_listed(report: &Value) -> &'static str {
    let worst = processes(report)
        .iter()
        .flat_map(|p| p["findings"].as_array().cloned().unwrap_or_default())
        .map(|f| rank(f["severity"].as_str()))
        .max()
        .unwrap_or(0);
    status_name(worst)
}

/// `--pid` with every fixture pid, under `backend`: exactly those listed,
/// each as the fixture says, the status weighing only them, the exit status
/// matching it. Returns the report and the exit status.
pub fn assert_pid_report(fx: &Fixture, backend: Backend) -> (Value, Option<i32>) {
    let info = &fx.info;
    let exp = expected(info);
    let run = report_json_by(backend, &info.pids, &[]);
    let report = run.json();
    let ctx = format!(
        "fixture {info:?}\n--attribution {}\nreport:\n{report:#}\nstderr:\n{}",
        backend.name(),
        run.stderr
    );
    assert_eq!(report["errors"], Value::Array(vec![]), "{ctx}");
    let listed: BTreeSet<u32> = listed_pids(&report).into_iter().collect();
    let asked: BTreeSet<u32> = info.pids.iter().copied().collect();
    assert_eq!(
        listed, asked,
        "--pid lists exactly the pids asked for: {ctx}"
    );
    assert_eq!(processes(&report).len(), asked.len(), "{ctx}");
    for (pid, e) in &exp {
        let p = process(&report, *pid).unwrap_or_else(|| panic!("pid {pid} missing: {ctx}"));
        assert_process(p, *pid, e);
    }
    let severities: Vec<u8> = processes(&report)
        .iter()
        .map(|p| {
            p["findings"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| rank(f["severity"].as_str()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    assert!(
        severities.windows(2).all(|w| w[0] >= w[1]),
        "processes are listed worst first: {ctx}"
    );
    let status = report["status"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        status,
        worst_listed(&report),
        "status weighs only --pid: {ctx}"
    );
    assert_eq!(run.code, Some(exit_code_of(&status)), "exit status: {ctx}");
    (report, run.code)
}

/// The full report (no --pid) under `backend`: the fixture's holders are
/// listed as the fixture says and its other processes are not; no other
/// process is blamed for a fixture socket; the host-wide counts include the
/// fixture's.
pub fn assert_full_report(fx: &Fixture, backend: Backend) -> Value {
    let info = &fx.info;
    let exp = expected(info);
    let run = report_json_by(backend, &[], &[]);
    let report = run.json();
    let ctx = format!(
        "fixture {info:?}\n--attribution {}\nstderr:\n{}",
        backend.name(),
        run.stderr
    );
    assert!(
        matches!(run.code, Some(0..=2)),
        "full report exit {:?}, errors {}: {ctx}",
        run.code,
        report["errors"]
    );
    assert_eq!(report["errors"], Value::Array(vec![]), "{ctx}");

    for (pid, e) in &exp {
        match process(&report, *pid) {
            Some(p) => {
                assert!(
                    e.holds_any(),
                    "pid {pid} holds nothing, yet listed: {p:#}\n{ctx}"
                );
                assert_process(p, *pid, e);
            }
            None => assert!(!e.holds_any(), "pid {pid} is not listed: {ctx}"),
        }
    }

    // A socket whose remote is one of the fixture's local addresses is the
    // other end of a fixture connection: only fixture processes hold those.
    let ours: BTreeSet<&str> = info.endpoints.iter().map(String::as_str).collect();
    for p in processes(&report) {
        let pid = u32::try_from(u(&p["pid"], "pid")).expect("pid fits u32");
        if info.pids.contains(&pid) {
            continue;
        }
        for peer in p["peers"].as_array().into_iter().flatten() {
            let remote = peer["remote"].as_str().unwrap_or_default();
            assert!(
                !ours.contains(remote),
                "pid {pid} ({}) is blamed for a fixture socket to {remote}: {p:#}\n{ctx}",
                p["comm"]
            );
        }
    }

    // Host-wide counts are ≥: parallel tests and the host add their own.
    let sum = |f: &dyn Fn(&Role) -> u64| info.roles.iter().map(f).sum::<u64>();
    let count_state =
        |role: &Role, state: &str| role.sockets.iter().filter(|s| s.state == state).count() as u64;
    let queued = sum(&|r| r.queued);
    let un = &report["unattributed"];
    assert!(
        u(&un["close_wait_unaccepted"], "close_wait_unaccepted") >= queued,
        "{un}: {ctx}"
    );
    let states = &report["tcp_states"];
    assert!(
        u(&states["close_wait"], "close_wait") >= sum(&|r| count_state(r, "close_wait")) + queued,
        "{states}: {ctx}"
    );
    assert!(
        u(&states["established"], "established") >= sum(&|r| count_state(r, "established")),
        "{states}: {ctx}"
    );
    // Held FIN_WAIT_2 sockets only. Orphaned ones (`Role::orphaned`) are not
    // counted on: with tcp_fin_timeout ≤ 60 s the kernel turns them into
    // TIME_WAIT minisockets, and when the host's TIME_WAIT table is full
    // (tcp_max_tw_buckets, easily reached on a busy shared machine) it
    // drops them at once.
    assert!(
        u(&states["fin_wait2"], "fin_wait2") >= sum(&|r| count_state(r, "fin_wait2")),
        "{states}: {ctx}"
    );
    report
}
