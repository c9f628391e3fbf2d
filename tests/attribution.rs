//! The two attribution backends, BPF iterators (src/collect/bpf/) and the
//! /proc walk, name the same owners on a real host, and `--attribution`
//! falls back, or fails, as it says when BPF cannot be loaded.
//!
//! - **Equivalence**: with the scenario fixtures (examples/fixture/) running,
//!   and examples/fd_tables (a forked sharer holding its parent's sockets,
//!   an `O_PATH` fd on a UNIX socket's path, a thread that unshared its fd
//!   table and opened TCP sockets of its own), both backends are asked who
//!   holds every socket inode on the host. For every process these tests
//!   made, the (inode, fd) sets and the fd counts are identical (but for an
//!   fd number a blocked accept() holds reserved, which only /proc's count
//!   includes), except the sockets only the unshared thread's table holds:
//!   BPF names them under the thread's process, /proc does not
//!   (`/proc/PID/fd` shows the leader's table only). Over the rest of the host, where processes come and go
//!   between the two passes, at least 95 % of the socket holders agree.
//! - **Fallback**: the real binary with CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN
//!   dropped (setpriv; root keeps the rest, which the /proc walk needs):
//!   under `--attribution auto` the report says `"attribution": "procfs"`,
//!   the fallback is logged once, and the fixture's counts equal those of a
//!   normal run under `--attribution bpf`; under `--attribution bpf` the scan
//!   has an error of stage `bpf` naming the missing capability, nobody is
//!   blamed, attribution is incomplete, and a `--pid` that exists is not
//!   called missing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::{Duration, Instant};

use closewatch::collect::bpf::{Builder, FdKind, FdRecord, Iterators, TaskRecord};
use closewatch::collect::procfs::Walk;
use closewatch::collect::ProcRoot;
use closewatch::model::{FdStats, ProcessInfo};
use rustc_hash::FxHashSet;
use serde::Deserialize;
use serde_json::Value;

use common::helper::Helper;
use common::{expected, Fixture};

// ------------------------------------------------------------ the helper

/// examples/fd_tables' line.
#[derive(Debug, Deserialize)]
struct FdTables {
    pid: u32,
    sharer: u32,
    thread: u32,
    /// Every socket of the leader's table (the sharer's too).
    leader_sockets: Vec<Fd>,
    /// The sockets only the thread's own table holds.
    thread_sockets: Vec<Fd>,
    o_path: OPath,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Fd {
    fd: u32,
    inode: u64,
}

#[derive(Debug, Deserialize)]
struct OPath {
    fd: u32,
    /// The socket file's inode on its file system (not a sockfs inode).
    inode: u64,
    path: String,
}

fn start_fd_tables() -> (Helper, FdTables) {
    let (helper, line) = Helper::start::<&str>("fd_tables", &[], Duration::from_secs(60));
    let info: FdTables =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("fd_tables' line ({e}): {line}"));
    assert_eq!(info.pid, helper.child.id(), "{line}");
    (helper, info)
}

// ------------------------------------------------------ the two backends

/// This process as the iterators must find it: (pid, start time in ticks).
fn me() -> (u32, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // Field 22, counted after the comm (field 2, in parentheses).
    let after_comm = &stat[stat.rfind(')').expect("comm in parentheses") + 1..];
    let start = after_comm
        .split_whitespace()
        .nth(19)
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("no start time in {stat}"));
    (std::process::id(), start)
}

fn ticks_per_second() -> u64 {
    // SAFETY: plain libc call.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).expect("_SC_CLK_TCK")
}

/// One look at the host by both backends, back to back.
struct Views {
    /// Every fd record of the BPF pass.
    records: Vec<FdRecord>,
    bpf: Walk,
    procfs: Walk,
    /// How long the BPF pass (tasks, fds) and the /proc walk took.
    took: (Duration, Duration),
}

/// Both walks, each asked for every socket inode any process holds (the
/// BPF pass's socket records): the BPF pass first, then the /proc walk at
/// once, so that little changes between them.
fn both_views(it: &mut Iterators) -> Views {
    let tps = ticks_per_second();
    let started = Instant::now();
    let tasks: Vec<TaskRecord> = it.tasks(me(), tps).expect("the task iterator");
    let mut records = Vec::new();
    it.fds(|r| records.push(*r))
        .expect("the task_file iterator");
    let bpf_took = started.elapsed();

    let wanted: FxHashSet<u64> = records
        .iter()
        .filter(|r| r.kind == FdKind::Socket)
        .map(|r| r.ino)
        .collect();
    let root = ProcRoot::new("/proc");
    let started = Instant::now();
    let pids = root.pids().expect("list /proc");
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let procfs = root.walk(&pids, &wanted, threads).expect("the /proc walk");
    let procfs_took = started.elapsed();

    let mut builder = Builder::new(&tasks, &wanted, tps);
    for r in &records {
        builder.fd(r);
    }
    let bpf = builder.finish(&root);
    Views {
        records,
        bpf,
        procfs,
        took: (bpf_took, procfs_took),
    }
}

/// The processes of a walk whose fd table was read, by pid.
fn by_pid(walk: &Walk) -> BTreeMap<u32, &ProcessInfo> {
    walk.processes
        .iter()
        .filter(|p| p.fds_walked)
        .map(|p| (p.key.pid, p))
        .collect()
}

/// The sockets a process is named for: (inode, fd).
fn held(p: &ProcessInfo) -> BTreeSet<(u64, u32)> {
    p.sockets.iter().map(|s| (s.inode, s.fd)).collect()
}

/// `/proc/PID/fd` as `fd → link` (to explain a failure).
fn fd_links(pid: u32) -> String {
    let dir = format!("/proc/{pid}/fd");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return format!("{dir} unreadable");
    };
    let mut links: Vec<(u32, String)> = entries
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let link = std::fs::read_link(e.path()).ok()?;
            Some((fd, link.display().to_string()))
        })
        .collect();
    links.sort();
    links
        .iter()
        .map(|(fd, link)| format!("{fd} → {link}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn inodes(p: &ProcessInfo) -> BTreeSet<u64> {
    p.sockets.iter().map(|s| s.inode).collect()
}

// ------------------------------------------------------------- the tests

/// Scenarios of examples/fixture that leave sockets of every kind the
/// backends classify: TCP over IPv4 and IPv6 in each state the checks look
/// at, listeners (one with a full queue), sockets in other network
/// namespaces, dead TCP sockets, UNIX stream sockets (socketpairs, and
/// through a path), a socket shared across fork, and a deleted file.
const SCENARIOS: [(&str, Option<u32>); 17] = [
    ("eof-server", Some(3)),
    ("half-close", None),
    ("pool", Some(3)),
    ("fork-shared", None),
    ("unaccepted", Some(2)),
    ("clean", Some(2)),
    ("ipv6", Some(2)),
    ("netns", Some(2)),
    ("reset", Some(2)),
    ("refused", Some(2)),
    ("unix-close", Some(3)),
    ("unix-close-path", Some(2)),
    ("accept-queue", Some(5)),
    ("half-open", Some(2)),
    ("port-exhaustion", Some(10)),
    ("swap", None),
    ("deleted-file", Some(1)),
];

/// The share of the host's socket holders on which the backends must agree;
/// the rest may have opened or closed sockets between the two passes.
const HOST_AGREEMENT: f64 = 0.95;

/// Every scenario of [`SCENARIOS`], started side by side.
fn start_fixtures() -> Vec<Fixture> {
    std::thread::scope(|s| {
        let starting: Vec<_> = SCENARIOS
            .iter()
            .map(|&(name, n)| s.spawn(move || Fixture::start(name, n)))
            .collect();
        starting
            .into_iter()
            .map(|h| h.join().expect("a fixture started"))
            .collect()
    })
}

#[test]
fn both_backends_name_the_same_owners_but_for_a_thread_with_its_own_fd_table() {
    if !common::root("loads BPF iterators and reads every process's fds") {
        return;
    }
    let started = Instant::now();
    let fixtures = start_fixtures();
    let (_helper, tables) = start_fd_tables();
    let setup = started.elapsed();
    let mut it = Iterators::load().expect("load the BPF iterators");
    let views = both_views(&mut it);
    let bpf = by_pid(&views.bpf);
    let procfs = by_pid(&views.procfs);
    eprintln!(
        "set up in {setup:?}; BPF pass {:?} ({} fd records, {} processes), /proc walk {:?} \
         ({} processes)",
        views.took.0,
        views.records.len(),
        bpf.len(),
        views.took.1,
        procfs.len()
    );

    // Ours: every process of the fixtures, and the helper with its sharer.
    let mut ours: BTreeSet<u32> = fixtures
        .iter()
        .flat_map(|f| f.info.pids.iter().copied())
        .collect();
    ours.extend([tables.pid, tables.sharer]);
    let thread_only: BTreeSet<(u64, u32)> = tables
        .thread_sockets
        .iter()
        .map(|s| (s.inode, s.fd))
        .collect();
    for &pid in &ours {
        let b = bpf
            .get(&pid)
            .unwrap_or_else(|| panic!("BPF: no process {pid}"));
        let p = procfs
            .get(&pid)
            .unwrap_or_else(|| panic!("/proc: no process {pid} (or not read)"));
        assert_fd_counts(b, p, &views.records);
        let mut b_held = held(b);
        if pid == tables.pid {
            // BPF names the thread's own sockets under its process (the
            // task_file iterator visits every fd table); /proc/PID/fd is the
            // leader's table only.
            assert!(
                b_held.is_superset(&thread_only),
                "BPF names the unshared thread's sockets {thread_only:?}: {b:?}"
            );
            b_held.retain(|s| !thread_only.contains(s));
        }
        assert_eq!(
            b_held,
            held(p),
            "owners of pid {pid}\nBPF:   {b:?}\n/proc: {p:?}"
        );
    }
    assert_thread_table(&tables, &views.records, &procfs);
    assert_fd_tables_as_built(&tables, &views.records, &bpf, &procfs);
    assert_fixture_holders_named(&fixtures, &bpf, &procfs);

    // The rest of the host, where processes open and close sockets between
    // the two passes (the closewatch runs of the test alongside, among
    // others): a disagreement counts only if a second look, both passes
    // again, finds it too, for the same process.
    let (holders, first) = host_disagreements(&bpf, &procfs, &ours);
    let again = both_views(&mut it);
    let (_, second) = host_disagreements(&by_pid(&again.bpf), &by_pid(&again.procfs), &ours);
    let lasting: Vec<&String> = first
        .iter()
        .filter(|(key, d)| second.get(key) == Some(d))
        .map(|(_, d)| d)
        .collect();
    eprintln!(
        "host: {holders} other socket holders in both walks, {} disagree, {} of them again \
         at a second look{}",
        first.len(),
        lasting.len(),
        first
            .values()
            .take(20)
            .map(|d| format!("\n  {d}"))
            .collect::<String>()
    );
    let agree = holders - lasting.len() as u64;
    assert!(
        agree as f64 >= HOST_AGREEMENT * holders as f64,
        "only {agree} of {holders} socket holders agree: {lasting:#?}"
    );
}

/// The same process in both walks, with the same name, owner and fd
/// counts, but for `open`: the /proc walk takes it from st_size of
/// /proc/PID/fd, which counts the fd numbers in use (the open_fds bitmap),
/// and a thread blocked in accept() holds one reserved for the connection
/// to come with no file in it yet (swap's server): one more than the files
/// the iterator visits, and than readdir lists.
fn assert_fd_counts(b: &ProcessInfo, p: &ProcessInfo, records: &[FdRecord]) {
    let pid = b.key.pid;
    let ctx = format!("pid {pid}\nBPF:   {b:?}\n/proc: {p:?}");
    assert_eq!(b.key, p.key, "the same process: {ctx}");
    assert_eq!((&b.comm, b.uid), (&p.comm, p.uid), "{ctx}");
    let reserved = p.fds.open.checked_sub(b.fds.open);
    let same = FdStats {
        open: p.fds.open,
        ..b.fds
    };
    assert!(
        same == p.fds && matches!(reserved, Some(0 | 1)),
        "the leader's fd table, counted: {ctx}\n/proc/{pid}/fd now: {}\nBPF records: {:?}",
        fd_links(pid),
        records.iter().filter(|r| r.tgid == pid).collect::<Vec<_>>()
    );
}

/// The sockets the thread opened after unshare(CLONE_FILES) are in its own
/// table, at the fds it reported, and no process's /proc/PID/fd shows them.
fn assert_thread_table(
    tables: &FdTables,
    records: &[FdRecord],
    procfs: &BTreeMap<u32, &ProcessInfo>,
) {
    for s in &tables.thread_sockets {
        let r = records
            .iter()
            .find(|r| r.kind == FdKind::Socket && r.ino == s.inode)
            .unwrap_or_else(|| panic!("no BPF record of {s:?}"));
        assert_eq!(
            (r.tgid, r.tid, r.fd),
            (tables.pid, tables.thread, s.fd),
            "held by the thread's own table: {r:?}"
        );
    }
    let on_proc: Vec<(u32, u64)> = procfs
        .values()
        .flat_map(|p| p.sockets.iter().map(|s| (p.key.pid, s.inode)))
        .filter(|(_, inode)| tables.thread_sockets.iter().any(|t| t.inode == *inode))
        .collect();
    assert!(
        on_proc.is_empty(),
        "/proc cannot see a socket only a thread's own table holds: {on_proc:?}"
    );
}

/// examples/fd_tables as both walks must see it: the leader and the sharer
/// each hold every socket of the leader's table, at the same fds, and no
/// more sockets than those; the O_PATH fd on the UNIX socket's path is a
/// file.
fn assert_fd_tables_as_built(
    tables: &FdTables,
    records: &[FdRecord],
    bpf: &BTreeMap<u32, &ProcessInfo>,
    procfs: &BTreeMap<u32, &ProcessInfo>,
) {
    let leader: BTreeSet<(u64, u32)> = tables
        .leader_sockets
        .iter()
        .map(|s| (s.inode, s.fd))
        .collect();
    for pid in [tables.pid, tables.sharer] {
        let p = procfs[&pid];
        assert_eq!(held(p), leader, "pid {pid}: {p:?}");
        for walk in [bpf, procfs] {
            assert_eq!(
                walk[&pid].fds.sockets,
                leader.len() as u64,
                "pid {pid}: the O_PATH fd is no socket: {:?}",
                walk[&pid]
            );
        }
    }
    let file = std::fs::metadata(&tables.o_path.path).expect("stat the UNIX socket's path");
    assert!(
        file.file_type().is_socket() && file.ino() == tables.o_path.inode,
        "the O_PATH fd is on a UNIX socket's file: {:?}",
        tables.o_path
    );
    let o_path = records
        .iter()
        .find(|r| r.tgid == tables.pid && r.tid == tables.pid && r.fd == tables.o_path.fd)
        .unwrap_or_else(|| panic!("no BPF record of the O_PATH fd {:?}", tables.o_path));
    assert_eq!(o_path.kind, FdKind::File, "{o_path:?}: {:?}", tables.o_path);
}

/// Not vacuous: every role that keeps sockets is named for some, and the
/// two processes of fork-shared hold the same inodes, in both walks.
fn assert_fixture_holders_named(
    fixtures: &[Fixture],
    bpf: &BTreeMap<u32, &ProcessInfo>,
    procfs: &BTreeMap<u32, &ProcessInfo>,
) {
    for walk in [bpf, procfs] {
        for fx in fixtures {
            for role in fx.info.roles.iter().filter(|r| !r.sockets.is_empty()) {
                for pid in &role.pids {
                    assert!(
                        !walk[pid].sockets.is_empty(),
                        "{} {} pid {pid} keeps sockets: {:?}",
                        fx.info.scenario,
                        role.role,
                        walk[pid]
                    );
                }
            }
        }
        let shared = fixtures
            .iter()
            .find(|f| f.info.scenario == "fork-shared")
            .expect("fork-shared runs");
        let holders = &shared.info.role("holder").pids;
        assert_eq!(holders.len(), 2, "{:?}", shared.info);
        assert_eq!(inodes(walk[&holders[0]]), inodes(walk[&holders[1]]));
    }
}

/// The processes of the host other than `ours` and this one, in both walks
/// as the same process (pid and start time), that hold a socket in either:
/// how many, and those whose socket inodes differ, by (pid, start time).
fn host_disagreements(
    bpf: &BTreeMap<u32, &ProcessInfo>,
    procfs: &BTreeMap<u32, &ProcessInfo>,
    ours: &BTreeSet<u32>,
) -> (u64, BTreeMap<(u32, u64), String>) {
    // This process: the passes themselves change its fds.
    let me = std::process::id();
    let mut holders = 0;
    let mut disagree = BTreeMap::new();
    for (pid, b) in bpf {
        let Some(p) = procfs.get(pid) else { continue };
        if b.key != p.key || ours.contains(pid) || *pid == me {
            continue;
        }
        let (bi, pi) = (inodes(b), inodes(p));
        if bi.is_empty() && pi.is_empty() {
            continue;
        }
        holders += 1;
        if bi != pi {
            let d = format!(
                "pid {pid} ({}): BPF only {:?}, /proc only {:?}",
                b.comm,
                bi.difference(&pi).collect::<Vec<_>>(),
                pi.difference(&bi).collect::<Vec<_>>()
            );
            disagree.insert((*pid, b.key.start_time), d);
        }
    }
    (holders, disagree)
}

// -------------------------------------------------------------- fallback

/// setpriv as root without what loading BPF needs (CAP_BPF, CAP_PERFMON, or
/// CAP_SYS_ADMIN instead of both), from every set a child could regain it
/// from: root keeps CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, which the /proc
/// walk needs. Without CAP_SYS_ADMIN no other network namespace can be
/// entered: the fixtures here live in the host's.
const NO_BPF: [&str; 3] = [
    "setpriv",
    "--inh-caps=-bpf,-perfmon,-sys_admin",
    "--bounding-set=-bpf,-perfmon,-sys_admin",
];

fn report_args(pids: &[u32], extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = common::REPORT_JSON
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
    for pid in pids {
        args.extend(["--pid".to_string(), pid.to_string()]);
    }
    args
}

/// What a process's figures must be under either backend: its socket
/// counts and fd counts. Left out: ages (they grow between runs) and the
/// dead-socket counts, which are `null` when a namespace of the host could
/// not be dumped (dead means "in no TCP table of any namespace", and
/// without CAP_SYS_ADMIN the namespaces of other tests running alongside
/// cannot be entered).
fn counts(p: &Value) -> Value {
    let mut sockets = p["sockets"].clone();
    if let Some(map) = sockets.as_object_mut() {
        map.retain(|k, v| !k.ends_with("_seconds") && !k.starts_with("dead") && !v.is_null());
    }
    serde_json::json!({ "sockets": sockets, "fds": p["fds"] })
}

/// The counts of each of `pids` in `report` (every one must be listed).
fn counts_of(report: &Value, pids: &[u32]) -> BTreeMap<u32, Value> {
    pids.iter()
        .map(|&pid| {
            let p = common::process(report, pid)
                .unwrap_or_else(|| panic!("pid {pid} not listed: {report:#}"));
            (pid, counts(p))
        })
        .collect()
}

#[test]
fn without_cap_bpf_auto_falls_back_to_proc_and_bpf_says_why() {
    if !common::root("setpriv: drops capabilities from root") {
        return;
    }
    let eof = Fixture::start("eof-server", Some(3));
    let half = Fixture::start("half-close", None);
    let pids: Vec<u32> = [&eof, &half]
        .iter()
        .flat_map(|f| f.info.pids.iter().copied())
        .collect();
    let mut exp = expected(&eof.info);
    exp.extend(expected(&half.info));

    // The reference: a run that may load BPF, and does.
    let run = common::closewatch(&report_args(&pids, &["--attribution", "bpf"]));
    let reference = run.json();
    assert_eq!(reference["attribution"], "bpf", "{}", run.stderr);
    assert_eq!(reference["errors"], Value::Array(vec![]), "{reference:#}");
    for (pid, e) in &exp {
        common::assert_process(common::process(&reference, *pid).expect("listed"), *pid, e);
    }
    let want = counts_of(&reference, &pids);
    let reference_code = run.code;

    // `auto` without the capabilities, a lone scan, and a scan every second
    // for 2 s: /proc, logged once, with the same counts. (A lone scan on a
    // host with few open files walks /proc without trying BPF: its load
    // costs more than such a walk; `--duration` always tries.)
    for extra in [&[][..], &["--duration", "2s"][..]] {
        let mut flags = vec!["--attribution", "auto"];
        flags.extend(extra);
        let run = common::closewatch_under(&NO_BPF, &report_args(&pids, &flags));
        let report = run.json();
        let ctx = format!("{flags:?}\nstderr:\n{}\nreport:\n{report:#}", run.stderr);
        assert_eq!(report["attribution"], "procfs", "{ctx}");
        assert_eq!(report["errors"], Value::Array(vec![]), "{ctx}");
        assert_eq!(run.code, reference_code, "{ctx}");
        assert_eq!(counts_of(&report, &pids), want, "{ctx}");
        for (pid, e) in &exp {
            common::assert_process(common::process(&report, *pid).expect("listed"), *pid, e);
        }
        let fallbacks: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("BPF"))
            .collect();
        if !extra.is_empty() {
            assert_eq!(fallbacks.len(), 1, "the fallback is logged once: {ctx}");
            assert!(fallbacks[0].contains("CAP_BPF"), "{ctx}");
        }
    }

    // `bpf` without them: the scan's attribution fails and says why (with
    // --pid: the test below).
    let run = common::closewatch_under(&NO_BPF, &report_args(&[], &["--attribution", "bpf"]));
    let report = run.json();
    let ctx = format!("stderr:\n{}\nreport:\n{report:#}", run.stderr);
    assert_eq!(report["attribution"], "bpf", "{ctx}");
    let errors = report["errors"].as_array().expect("errors");
    let bpf_errors: Vec<&Value> = errors.iter().filter(|e| e["stage"] == "bpf").collect();
    assert_eq!(bpf_errors.len(), 1, "{ctx}");
    let message = bpf_errors[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("CAP_BPF") && message.contains("Operation not permitted"),
        "{ctx}"
    );
    assert_eq!(run.code, Some(3), "a scan error exits 3: {ctx}");
    // Nobody is blamed for sockets the scan could not attribute.
    for pid in &pids {
        if let Some(p) = common::process(&report, *pid) {
            assert_eq!(p["sockets"]["close_wait"], 0, "{p:#}\n{ctx}");
            assert_eq!(p["sockets"]["fin_wait2"], 0, "{p:#}\n{ctx}");
        }
    }
}

/// What `--attribution bpf` should say when BPF cannot be loaded, beyond
/// the scan error: a report docs/report.schema.json describes (its error
/// stage `bpf` included), attribution incomplete (every stale socket has no
/// known owner), and no claim that a `--pid` it could not attribute does not
/// exist.
#[test]
fn without_cap_bpf_a_failed_attribution_is_incomplete_and_the_pid_still_exists() {
    if !common::root("setpriv: drops capabilities from root") {
        return;
    }
    let fx = Fixture::start("eof-server", Some(2));
    let server = fx.info.role("server").pids[0];
    let run = common::closewatch_under(&NO_BPF, &report_args(&[server], &["--attribution", "bpf"]));
    let report: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr));
    let ctx = format!("stderr:\n{}\nreport:\n{report:#}", run.stderr);
    assert_eq!(
        common::schema::violations(&report),
        Vec::<String>::new(),
        "{ctx}"
    );
    assert_eq!(report["attribution_complete"], false, "{ctx}");
    let errors = report["errors"].as_array().expect("errors");
    assert!(
        errors.iter().all(|e| e["stage"] == "bpf"),
        "pid {server} exists; only the attribution failed: {ctx}"
    );
}
