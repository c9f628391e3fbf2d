//! No socket is ever blamed on a process that did not hold it, under churn: the
//! real agent scans every 100 ms for 60 s while examples/churn forks and reaps
//! over 500 short-lived processes a second, each holding CLOSE_WAIT sockets for
//! a moment, and sets two traps for the fd-table cache (see examples/churn.rs);
//! every scraped and reported figure is judged against churn's timed record.
//! Two agents watch the same churn side by side, one per attribution backend
//! (`--attribution procfs`, `--attribution bpf`), and the reports alternate
//! between the two: each backend passes every check below on its own.
//!
//! Checked:
//!
//! - no socket is attributed to a process that did not hold it: every
//!   `closewatch_process_tcp_sockets` sample (scraped every ~25 ms) and every
//!   `processes[].sockets` of `closewatch --report` (run a few times during
//!   the churn) for a process churn made is at most what churn's own record
//!   allows for that pid at that time (the churn parent: none, ever; dead
//!   sockets: none, ever, as churn's placeholders are UDP sockets and every
//!   TCP socket it makes connects at once);
//! - the agent never crashes, counts no scan error and logs no warning for
//!   the processes and fds that vanish under it (vanished processes are
//!   counted in `closewatch_processes_skipped{reason="vanished"}`, which is
//!   fine); the report's exit status is 0–2, never 3;
//! - churn did make ≥ 500 processes a second, and every one of them did what
//!   it was meant to.
//!
//! # When a published figure was true
//! The record gives each incarnation of each pid a span (read before the
//! fork, after the reap) and the spans in which it may hold CLOSE_WAIT
//! sockets, and how many; pids wrap (pid_max 32768 at 750 forks/s), so the
//! time of a figure matters. A scrape showing `closewatch_scans_total` = n
//! shows scan n, which ran after scan n − 1 was published, which was after
//! every scrape that still showed n − 2 had been sent (the scan loop is
//! sequential). So scan n dumped its sockets and walked its processes in
//! [sent time of the last scrape showing ≤ n − 2, receipt of this scrape]:
//! a figure for a pid is true only if, in that window, some incarnation of
//! the pid could hold that many. The window is wider than the scan (never
//! narrower), so the check can only be lenient, never wrong. A report's
//! window is its run, from spawn to exit. Pids that are not churn's in the
//! window are ignored unless their comm is one of churn's names, which
//! would mean a process of churn's the record does not know.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use common::agent::{request, sample, Agent};
use common::helper::Helper;
use common::Backend;

/// Forks a second asked of churn: comfortably above the 500 required.
const RATE: u32 = 750;
const MIN_FORKS_PER_SEC: f64 = 500.0;
const DURATION: Duration = Duration::from_secs(60);
/// The agent's minimum interval: "as fast as it can".
const INTERVAL: Duration = Duration::from_millis(100);
const SCRAPE_EVERY: Duration = Duration::from_millis(25);
const REPORT_EVERY: Duration = Duration::from_secs(12);
/// Bounds on hangs, never measures of speed.
const START_WITHIN: Duration = Duration::from_secs(60);
const END_WITHIN: Duration = DURATION.saturating_add(Duration::from_secs(90));

/// The host-wide monotonic clock, as churn's record reads it.
fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

// ----------------------------------------------------------------- churn

#[derive(Debug, Clone, Deserialize)]
struct Comms {
    parent: String,
    child: String,
    sharer: String,
    holder: String,
    heir: String,
}

impl Comms {
    fn all(&self) -> BTreeSet<String> {
        [
            &self.parent,
            &self.child,
            &self.sharer,
            &self.holder,
            &self.heir,
        ]
        .into_iter()
        .cloned()
        .collect()
    }
}

/// churn's first line.
#[derive(Debug, Deserialize)]
struct Ready {
    parent: u32,
    holder: u32,
    comms: Comms,
}

/// churn's last line.
#[derive(Debug, Deserialize)]
struct Summary {
    forks: u64,
    children: u64,
    sharers: u64,
    heirs: u64,
    reaped: u64,
    fork_failures: u64,
    failed_processes: u64,
    exit_codes: BTreeMap<String, u64>,
    elapsed_s: f64,
    forks_per_s: f64,
    sockets_opened: u64,
    pairs: u64,
    holder_cycles: u64,
    errors: Vec<String>,
    failures: u64,
}

/// churn's record (see examples/churn.rs).
#[derive(Debug, Deserialize)]
struct Record {
    parent: u32,
    holder: Option<u32>,
    comms: Comms,
    processes: Vec<Incarnation>,
}

#[derive(Debug, Clone, Deserialize)]
struct Incarnation {
    pid: u32,
    role: String,
    from_ns: u64,
    /// `None`: still running when the record was written.
    to_ns: Option<u64>,
    exit: Option<i32>,
    max_fin_wait2: u32,
    /// (from_ns, to_ns, n): at most n CLOSE_WAIT in the span, none outside.
    close_wait: Vec<(u64, u64, u32)>,
}

impl Incarnation {
    fn overlaps(&self, lo: u64, hi: u64) -> bool {
        self.from_ns <= hi && self.to_ns.is_none_or(|to| to >= lo)
    }

    /// The most it could hold of `state` at some instant of [lo, hi].
    fn allowed(&self, state: &str, lo: u64, hi: u64) -> u32 {
        match state {
            "close_wait" => self
                .close_wait
                .iter()
                .filter(|(from, to, _)| *from <= hi && *to >= lo)
                .map(|s| s.2)
                .max()
                .unwrap_or(0),
            "fin_wait2" => self.max_fin_wait2,
            _ => 0,
        }
    }
}

/// Names for churn's processes that no other churn on the host uses (the
/// prefix carries this test process's pid, base 36), so that the processes
/// of another churn (another test at the same time) are not taken for ours.
fn comm_prefix() -> String {
    let mut pid = std::process::id();
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit(pid % 36, 36).expect("a base-36 digit"));
        pid /= 36;
        if pid == 0 {
            break;
        }
    }
    "cw".chars().chain(digits.into_iter().rev()).collect()
}

/// Starts churn and reads its first line. Dropped while it runs (a failed
/// test), the helper gets EOF on its stdin, then SIGKILL; what it forked
/// dies with it (PR_SET_PDEATHSIG).
fn start_churn(record: &Path) -> (Helper, Ready) {
    let args = [
        "--rate".to_string(),
        RATE.to_string(),
        "--duration".to_string(),
        DURATION.as_secs().to_string(),
        "--record".to_string(),
        record.display().to_string(),
        "--comm-prefix".to_string(),
        comm_prefix(),
    ];
    let (churn, line) = Helper::start("churn", &args, START_WITHIN);
    let ready: Ready =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("churn's first line ({e}): {line}"));
    assert_eq!(ready.parent, churn.child.id(), "{line}");
    (churn, ready)
}

/// Waits for churn's summary line and its exit (status 0 expected: checked
/// by the caller, which prints the summary first).
fn finish_churn(churn: &mut Helper) -> (Summary, Option<i32>) {
    let line = churn.line(END_WITHIN, "summary line");
    let summary: Summary = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("churn's summary line ({e}): {line}"));
    eprintln!("churn: {line}");
    (summary, churn.wait_exit(Duration::from_secs(30)))
}

// ------------------------------------------------------------- the truth

/// churn's record, by pid.
struct Truth {
    by_pid: HashMap<u32, Vec<Incarnation>>,
    comms: BTreeSet<String>,
}

/// What the record says of one figure.
enum Verdict {
    /// Not a process of churn's at the time: none of our business.
    NotOurs,
    /// churn's, with this role; it could hold at most `allowed`.
    Ours { role: String, allowed: u32 },
    /// Named like churn's processes but unknown to the record.
    Unrecorded,
}

impl Truth {
    fn new(record: &Record) -> Truth {
        let mut by_pid: HashMap<u32, Vec<Incarnation>> = HashMap::new();
        for p in &record.processes {
            by_pid.entry(p.pid).or_default().push(p.clone());
        }
        Truth {
            by_pid,
            comms: record.comms.all(),
        }
    }

    fn judge(&self, pid: u32, comm: &str, state: &str, lo: u64, hi: u64) -> Verdict {
        let live: Vec<&Incarnation> = self
            .by_pid
            .get(&pid)
            .map(|v| v.iter().filter(|i| i.overlaps(lo, hi)).collect())
            .unwrap_or_default();
        if live.is_empty() {
            return if self.comms.contains(comm) {
                Verdict::Unrecorded
            } else {
                Verdict::NotOurs
            };
        }
        let mut roles: Vec<&str> = live.iter().map(|i| i.role.as_str()).collect();
        roles.dedup();
        Verdict::Ours {
            role: roles.join("/"),
            allowed: live
                .iter()
                .map(|i| i.allowed(state, lo, hi))
                .max()
                .unwrap_or(0),
        }
    }

    /// For a violation: when the pid last held CLOSE_WAIT before the window
    /// and next held some after it.
    fn around(&self, pid: u32, lo: u64, hi: u64) -> String {
        let spans = || {
            self.by_pid
                .get(&pid)
                .into_iter()
                .flatten()
                .filter(|i| i.overlaps(lo, hi))
                .flat_map(|i| i.close_wait.iter())
        };
        let ms = |ns: u64| ns as f64 / 1e6;
        let before = spans().filter(|s| s.1 < lo).map(|s| s.1).max();
        let after = spans().filter(|s| s.0 > hi).map(|s| s.0).min();
        format!(
            "its last span holding CLOSE_WAIT ended {}, the next began {}",
            before.map_or("never".to_string(), |t| format!(
                "{:.0} ms before",
                ms(lo - t)
            )),
            after.map_or("never".to_string(), |t| format!(
                "{:.0} ms after",
                ms(t - hi)
            ))
        )
    }
}

/// One figure for one process, from a scrape or a report.
#[derive(Debug, Clone)]
struct Figure {
    pid: u32,
    comm: String,
    state: String,
    value: u64,
}

/// What the checks found, and what they looked at.
#[derive(Default)]
struct Checked {
    /// Figures of churn's processes looked at, by role.
    ours: BTreeMap<String, u64>,
    /// Of those, figures > 0 (the checks are not vacuous), by role.
    positive: BTreeMap<String, u64>,
    /// (kind, role) → the violations of that kind.
    violations: BTreeMap<(&'static str, String), Vec<String>>,
}

impl Checked {
    fn check(&mut self, truth: &Truth, source: &str, lo: u64, hi: u64, f: &Figure) {
        match truth.judge(f.pid, &f.comm, &f.state, lo, hi) {
            Verdict::NotOurs => {}
            Verdict::Unrecorded => {
                if f.value > 0 {
                    let key = ("named like churn's but unrecorded", f.comm.clone());
                    self.violations.entry(key).or_default().push(format!(
                        "{source}: pid {} comm {:?} {} = {}, but churn's record has no \
                         process with that pid in [{lo}, {hi}] ns",
                        f.pid, f.comm, f.state, f.value
                    ));
                }
            }
            Verdict::Ours { role, allowed } => {
                *self.ours.entry(role.clone()).or_default() += 1;
                if f.value > 0 {
                    *self.positive.entry(role.clone()).or_default() += 1;
                }
                if f.value > u64::from(allowed) {
                    let key = ("more than it held", role.clone());
                    self.violations.entry(key).or_default().push(format!(
                        "{source}: pid {} ({role}, comm {:?}) {} = {}, but it held at most \
                         {allowed} in the window [{lo}, {hi}] ns ({:.0} ms; {})",
                        f.pid,
                        f.comm,
                        f.state,
                        f.value,
                        (hi - lo) as f64 / 1e6,
                        truth.around(f.pid, lo, hi)
                    ));
                }
            }
        }
    }
}

// --------------------------------------------------------------- scrapes

/// One scrape of /metrics, reduced to what is checked.
struct Scrape {
    sent_ns: u64,
    got_ns: u64,
    scan: u64,
    vanished: f64,
    failed: f64,
    scan_errors: f64,
    figures: Vec<Figure>,
}

/// `name{k="v",…} value` → (name, labels, value); label values unescaped.
fn parse_series(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series, BTreeMap::new(), value));
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    while chars.peek().is_some_and(|&c| c != '}') {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut v = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => v.push('\n'),
                    c => v.push(c),
                },
                '"' => break,
                c => v.push(c),
            }
        }
        labels.insert(key, v);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some((name, labels, value))
}

fn parse_scrape(text: &str, sent_ns: u64, got_ns: u64) -> Option<Scrape> {
    let mut s = Scrape {
        sent_ns,
        got_ns,
        scan: sample(text, "closewatch_scans_total", &[])? as u64,
        vanished: 0.0,
        failed: 0.0,
        scan_errors: 0.0,
        figures: Vec::new(),
    };
    for line in text.lines() {
        let Some((name, labels, value)) = parse_series(line) else {
            continue;
        };
        match name {
            "closewatch_process_tcp_sockets" => {
                let (Some(pid), Some(comm), Some(state)) =
                    (labels.get("pid"), labels.get("comm"), labels.get("state"))
                else {
                    continue;
                };
                s.figures.push(Figure {
                    pid: pid.parse().ok()?,
                    comm: comm.clone(),
                    state: state.clone(),
                    value: value as u64,
                });
            }
            "closewatch_processes_skipped" => match labels.get("reason").map(String::as_str) {
                Some("vanished") => s.vanished = value,
                Some("failed") => s.failed = value,
                _ => {}
            },
            "closewatch_scan_errors_total" => s.scan_errors += value,
            _ => {}
        }
    }
    Some(s)
}

/// Scrapes /metrics every [`SCRAPE_EVERY`] until `done`.
fn scraper(addr: std::net::SocketAddr, done: Arc<AtomicBool>) -> (Vec<Scrape>, u64) {
    let mut scrapes = Vec::new();
    let mut failed = 0;
    while !done.load(Ordering::SeqCst) {
        let sent_ns = mono_ns();
        let r = request(addr, "GET", "/metrics");
        let got_ns = mono_ns();
        match r.filter(|r| r.status == 200) {
            Some(r) => match parse_scrape(&r.body, sent_ns, got_ns) {
                Some(s) => scrapes.push(s),
                None => failed += 1,
            },
            None => failed += 1,
        }
        thread::sleep(SCRAPE_EVERY);
    }
    (scrapes, failed)
}

// --------------------------------------------------------------- reports

/// One `closewatch --report --format json` run during the churn.
struct Report {
    backend: Backend,
    sent_ns: u64,
    got_ns: u64,
    code: Option<i32>,
    stderr: String,
    json: Option<Value>,
    stdout_head: String,
}

/// Runs a report every [`REPORT_EVERY`] under each backend in turn (so
/// every [`REPORT_EVERY`] / 2 one of them), until `done`.
fn reporter(done: Arc<AtomicBool>) -> Vec<Report> {
    let mut reports = Vec::new();
    let step = REPORT_EVERY / Backend::ALL.len() as u32;
    let mut next = Instant::now() + step;
    let mut backends = Backend::ALL.iter().copied().cycle();
    while !done.load(Ordering::SeqCst) {
        if Instant::now() < next {
            thread::sleep(Duration::from_millis(50));
            continue;
        }
        next += step;
        let backend = backends.next().expect("a cycle never ends");
        let sent_ns = mono_ns();
        let run = common::report_json_by(backend, &[], &[]);
        let got_ns = mono_ns();
        reports.push(Report {
            backend,
            sent_ns,
            got_ns,
            code: run.code,
            json: serde_json::from_str(&run.stdout).ok(),
            stdout_head: run.stdout.chars().take(2000).collect(),
            stderr: run.stderr,
        });
    }
    reports
}

fn report_figures(json: &Value) -> Vec<Figure> {
    let mut figures = Vec::new();
    for p in json["processes"].as_array().into_iter().flatten() {
        let pid = p["pid"].as_u64().expect("processes[].pid") as u32;
        let comm = p["comm"].as_str().unwrap_or_default().to_string();
        for state in ["close_wait", "fin_wait2"] {
            figures.push(Figure {
                pid,
                comm: comm.clone(),
                state: state.to_string(),
                value: p["sockets"][state]
                    .as_u64()
                    .unwrap_or_else(|| panic!("processes[].sockets.{state} in {p}")),
            });
        }
    }
    figures
}

// ------------------------------------------------------------------ test

/// Log lines of level WARN or ERROR (`[time LEVEL] message`).
fn is_warning(line: &str) -> bool {
    line.split(']')
        .next()
        .is_some_and(|head| head.contains(" WARN") || head.contains(" ERROR"))
}

/// The agent's flags under the churn: as fast as it can, every socket stale.
fn agent_args(backend: Backend) -> Vec<String> {
    let mut args: Vec<String> = [
        "--interval",
        &format!("{}ms", INTERVAL.as_millis()),
        "--max-processes",
        "100000",
        "--close-wait-age",
        "0s",
        "--fin-wait2-age",
        "0s",
        "--log-level",
        "debug",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(backend.flags().map(String::from));
    args
}

/// What was seen of one agent during the churn.
struct Watched {
    backend: Backend,
    alive: bool,
    first: Scrape,
    last: Scrape,
    scrapes: Vec<Scrape>,
    failed_scrapes: u64,
    log: Vec<String>,
}

/// Every scraped figure of one agent against the record; how many.
fn check_scrapes(truth: &Truth, name: &str, scrapes: &[Scrape], checked: &mut Checked) -> u64 {
    let mut lo_index = 0; // scrapes[..lo_index] all show scans ≤ n − 2
    let mut figures_seen = 0u64;
    for (i, s) in scrapes.iter().enumerate() {
        while lo_index < i && scrapes[lo_index].scan + 2 <= s.scan {
            lo_index += 1;
        }
        let lo = lo_index
            .checked_sub(1)
            .map(|j| scrapes[j].sent_ns)
            .unwrap_or(0);
        let source = format!("{name}: scrape of scan {}", s.scan);
        for f in &s.figures {
            figures_seen += 1;
            checked.check(truth, &source, lo, s.got_ns, f);
        }
    }
    figures_seen
}

/// Every report made under the backend `name`: sound (exit status, no
/// error, the schema, made by that backend), its figures against the
/// record; how many figures.
fn check_reports(
    truth: &Truth,
    name: &str,
    reports: &[&Report],
    checked: &mut Checked,
    problems: &mut Vec<String>,
) -> u64 {
    let mut figures_seen = 0;
    for (i, r) in reports.iter().enumerate() {
        let source = format!("{name}: report {}", i + 1);
        if !matches!(r.code, Some(0..=2)) {
            problems.push(format!(
                "{source}: exit status {:?} (0-2 expected); stderr:\n{}\nstdout:\n{}",
                r.code, r.stderr, r.stdout_head
            ));
        }
        for needle in ["could not be read", "scan error"] {
            if r.stderr.contains(needle) {
                problems.push(format!("{source}: stderr says {needle:?}:\n{}", r.stderr));
            }
        }
        let Some(json) = &r.json else {
            problems.push(format!("{source}: no JSON:\n{}", r.stdout_head));
            continue;
        };
        if json["attribution"] != name {
            problems.push(format!(
                "{source}: attribution {}, not {name}",
                json["attribution"]
            ));
        }
        if json["errors"].as_array().is_none_or(|e| !e.is_empty()) {
            problems.push(format!("{source}: errors {}", json["errors"]));
        }
        for v in common::schema::violations(json) {
            problems.push(format!(
                "{source}: not as docs/report.schema.json says: {v}"
            ));
        }
        for f in report_figures(json) {
            figures_seen += 1;
            checked.check(truth, &source, r.sent_ns, r.got_ns, &f);
        }
    }
    figures_seen
}

/// All violations to a file, the first of each kind to stderr.
fn print_violations(name: &str, checked: &Checked) {
    if !checked.violations.is_empty() {
        let path = std::env::temp_dir().join(format!(
            "closewatch-churn-violations-{name}-{}.txt",
            std::process::id()
        ));
        let all: Vec<&String> = checked.violations.values().flatten().collect();
        let text = all.iter().map(|v| format!("{v}\n")).collect::<String>();
        match std::fs::write(&path, text) {
            Ok(()) => eprintln!("{name}: all {} violations: {}", all.len(), path.display()),
            Err(e) => eprintln!("writing {}: {e}", path.display()),
        }
    }
    for ((kind, role), list) in &checked.violations {
        eprintln!("{name}: VIOLATIONS, {kind} ({role}): {}", list.len());
        for v in list.iter().take(15) {
            eprintln!("  {v}");
        }
        if list.len() > 15 {
            eprintln!("  ... and {} more", list.len() - 15);
        }
    }
}

/// Judges one agent's scrapes, and the reports made under its backend,
/// against the record; says what it looked at and returns every problem.
fn judge(truth: &Truth, seen: &Watched, reports: &[&Report]) -> Vec<String> {
    let name = seen.backend.name();
    let scrapes = &seen.scrapes;
    let mut checked = Checked::default();
    let mut problems = Vec::new();
    let figures_seen = check_scrapes(truth, name, scrapes, &mut checked);
    let report_figures_seen = check_reports(truth, name, reports, &mut checked, &mut problems);

    // The agent's side.
    let log = &seen.log;
    let warnings: Vec<&String> = log.iter().filter(|l| is_warning(l)).collect();
    let max_vanished = scrapes.iter().map(|s| s.vanished).fold(0.0, f64::max);
    let max_failed = scrapes.iter().map(|s| s.failed).fold(0.0, f64::max);
    let max_scan_errors = scrapes.iter().map(|s| s.scan_errors).fold(0.0, f64::max);
    let scans = seen.last.scan - seen.first.scan;
    let full_walks = log.iter().filter(|l| l.ends_with(" (full walk)")).count();
    let fallbacks = log
        .iter()
        .filter(|l| l.contains("a flagged socket has no cached owner"))
        .count();
    // Liveness only: a scan every 100 ms plus 400 ms of slack, quartered.
    let min_scans = (DURATION.as_secs_f64() / (INTERVAL.as_secs_f64() + 0.4) / 4.0) as u64;

    eprintln!(
        "{name}: agent: {scans} scans ({full_walks} full walks, {fallbacks} cache fallbacks), {} \
         scrapes ({} failed), {figures_seen} samples, {} reports ({report_figures_seen} figures); \
         checked per role {:?}, of which > 0 {:?}; max vanished {max_vanished}, max failed \
         {max_failed}; {} violations",
        scrapes.len(),
        seen.failed_scrapes,
        reports.len(),
        checked.ours,
        checked.positive,
        checked.violations.values().map(Vec::len).sum::<usize>()
    );
    print_violations(name, &checked);

    if !seen.alive {
        problems.push("the agent exited during the churn".to_string());
    }
    if !checked.violations.is_empty() {
        problems.push(format!(
            "figures that blame processes of churn's for CLOSE_WAIT/FIN_WAIT_2 sockets they did \
             not hold (listed above): {:?}",
            checked
                .violations
                .iter()
                .map(|((kind, role), list)| format!("{kind} ({role}): {}", list.len()))
                .collect::<Vec<_>>()
        ));
    }
    if !warnings.is_empty() {
        problems.push(format!(
            "the agent logged warnings during the churn:\n{}",
            warnings
                .iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    if max_scan_errors != 0.0 {
        problems.push("closewatch_scan_errors_total rose".to_string());
    }
    if max_failed != 0.0 {
        problems.push("closewatch_processes_skipped{reason=\"failed\"} was not 0".to_string());
    }
    if scans < min_scans {
        problems.push(format!(
            "only {scans} scans in {DURATION:?} (liveness bound {min_scans})"
        ));
    }
    if reports.len() < 3 {
        problems.push(format!("only {} reports ran", reports.len()));
    }
    // Not vacuous: the agent did name churn's processes, each kind.
    for role in ["child", "sharer", "holder", "heir"] {
        if checked.positive.get(role).copied().unwrap_or(0) == 0 {
            problems.push(format!(
                "no figure > 0 for a {role} of churn's: the check proved nothing for them \
                 (checked per role {:?})",
                checked.positive
            ));
        }
    }
    problems
        .into_iter()
        .map(|p| format!("--attribution {name}: {p}"))
        .collect()
}

/// One churn, watched by two agents at once, one per attribution backend
/// (the /proc walk with its fd-table cache, and the BPF iterators), and
/// reported on by `closewatch --report` under each backend in turn: both
/// must pass every check. Running them side by side keeps the test as
/// long as one churn.
#[test]
fn churn_of_processes_and_sockets_is_never_misattributed() {
    if !common::root("reads every process's fd table and makes hundreds of processes") {
        return;
    }
    let config = tempfile::NamedTempFile::new().expect("temp config");
    let record_file = tempfile::NamedTempFile::new().expect("temp record");
    let mut agents: Vec<(Backend, Agent)> = Backend::ALL
        .iter()
        .map(|&b| (b, Agent::start(config.path(), &agent_args(b))))
        .collect();
    let firsts: Vec<Scrape> = agents
        .iter()
        .map(|(_, a)| parse_scrape(&a.metrics(), 0, 0).expect("a first scrape"))
        .collect();

    let done = Arc::new(AtomicBool::new(false));
    let scraping: Vec<_> = agents
        .iter()
        .map(|(_, a)| {
            let (addr, done) = (a.addr, done.clone());
            thread::spawn(move || scraper(addr, done))
        })
        .collect();
    let (mut churn, ready) = start_churn(record_file.path());
    eprintln!(
        "churn {} (holder {}) started: {RATE} forks/s for {DURATION:?}",
        ready.parent, ready.holder
    );
    let reporting = {
        let done = done.clone();
        thread::spawn(move || reporter(done))
    };
    let (summary, churn_exit) = finish_churn(&mut churn);
    done.store(true, Ordering::SeqCst);
    let scraped: Vec<(Vec<Scrape>, u64)> = scraping
        .into_iter()
        .map(|s| s.join().expect("a scraper"))
        .collect();
    let reports = reporting.join().expect("the reporter");
    let watched: Vec<Watched> = agents
        .iter_mut()
        .zip(firsts)
        .zip(scraped)
        .map(
            |(((backend, agent), first), (scrapes, failed_scrapes))| Watched {
                backend: *backend,
                alive: matches!(agent.child.try_wait(), Ok(None)),
                first,
                last: parse_scrape(&agent.metrics(), 0, 0).expect("a last scrape"),
                scrapes,
                failed_scrapes,
                log: agent.log.try_iter().collect(),
            },
        )
        .collect();

    // churn did its part.
    let record: Record =
        serde_json::from_slice(&std::fs::read(record_file.path()).expect("read churn's record"))
            .expect("churn's record is JSON");
    assert_eq!(record.parent, ready.parent);
    assert_eq!(record.holder, Some(ready.holder));
    assert_eq!(record.comms.all(), ready.comms.all());
    let truth = Truth::new(&record);
    eprintln!(
        "figures: {} forks ({} children, {} sharers, {} heirs) in {:.1} s = {:.1} forks/s, \
         {} sockets, {} sharer pairs, {} holder cycles",
        summary.forks,
        summary.children,
        summary.sharers,
        summary.heirs,
        summary.elapsed_s,
        summary.forks_per_s,
        summary.sockets_opened,
        summary.pairs,
        summary.holder_cycles,
    );

    // Each agent, and the reports under its backend.
    let problems: Vec<String> = watched
        .iter()
        .flat_map(|seen| {
            let mine: Vec<&Report> = reports
                .iter()
                .filter(|r| r.backend == seen.backend)
                .collect();
            judge(&truth, seen, &mine)
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));

    assert_eq!(churn_exit, Some(0), "churn's exit status");
    assert_eq!(summary.failures, 0, "churn's failures: {summary:?}");
    assert_eq!(
        (summary.fork_failures, summary.failed_processes),
        (0, 0),
        "{summary:?}"
    );
    assert!(
        summary.exit_codes.is_empty() && summary.errors.is_empty(),
        "{summary:?}"
    );
    assert_eq!(
        summary.reaped,
        summary.forks + 1,
        "every process reaped (the holder too)"
    );
    assert!(
        summary.forks_per_s >= MIN_FORKS_PER_SEC,
        "churn made {:.1} processes a second, {MIN_FORKS_PER_SEC} wanted",
        summary.forks_per_s
    );
    assert_eq!(
        record.processes.len() as u64,
        summary.forks + 2,
        "the record has every process (and the parent and the holder)"
    );
    assert!(
        record.processes.iter().all(|p| p.exit.unwrap_or(0) == 0),
        "a process of churn's failed (see the record)"
    );
}

#[test]
fn series_are_parsed_with_escaped_label_values() {
    let (name, labels, value) = parse_series(
        r#"closewatch_process_tcp_sockets{pid="42",comm="a \"b\" \\ c",unit="",state="close_wait"} 3"#,
    )
    .expect("a sample");
    assert_eq!(name, "closewatch_process_tcp_sockets");
    assert_eq!(value, 3.0);
    assert_eq!(labels["pid"], "42");
    assert_eq!(labels["comm"], r#"a "b" \ c"#);
    assert_eq!(labels["unit"], "");
    assert_eq!(labels["state"], "close_wait");
    assert_eq!(
        parse_series("closewatch_scans_total 7").map(|s| s.2),
        Some(7.0)
    );
    assert!(parse_series("# HELP closewatch_scans_total x").is_none());
}
