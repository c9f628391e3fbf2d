//! The /proc walk reads what procfs holds and never takes an exited process for
//! a failure: on a fixture tree per test (identity, fd counts, socket inodes,
//! limits, host figures, missing files as errors, `describe`'s PID-reuse check,
//! failed reads counted as unknown)
//! and on the real /proc (this test's fds from st_size; 600 processes at a time
//! reaped under the walk: vanished, never failed).

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use closewatch::collect::procfs::ProcRoot;
use closewatch::collect::Skip;
use closewatch::model::{HeldSocket, ProcessKey};
use rustc_hash::FxHashSet;

const LIMITS: &str =
    "Limit                     Soft Limit           Hard Limit           Units     \n\
Max open files            1024                 4096                 files     \n";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn stat_line(pid: u32, comm: &str, start: u64) -> String {
    format!("{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n")
}

/// pid 100: 4 fds (two sockets, one deleted file, /dev/null); pid 101: a
/// process whose stat is missing (it exited mid-walk); "self" and "sys" are
/// not processes.
fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(&root.join("sys/kernel/hostname"), "fixture-host\n");
    write(&root.join("sys/kernel/osrelease"), "6.18.0-test\n");
    write(&root.join("sys/fs/file-nr"), "2048\t0\t100000\n");
    let p = root.join("100");
    write(&p.join("stat"), &stat_line(100, "leaky server", 4242));
    write(&p.join("limits"), LIMITS);
    write(&p.join("cgroup"), "0::/system.slice/leaky.service\n");
    write(&p.join("cmdline"), "leaky\0--port\08080\0");
    std::fs::create_dir_all(p.join("fd")).expect("mkdir");
    std::fs::create_dir_all(p.join("ns")).expect("mkdir");
    symlink("/dev/null", p.join("fd/0")).expect("link");
    symlink("socket:[555]", p.join("fd/3")).expect("link");
    symlink("socket:[556]", p.join("fd/4")).expect("link");
    symlink("/var/log/app.log (deleted)", p.join("fd/5")).expect("link");
    symlink("net:[4026531840]", p.join("ns/net")).expect("link");
    symlink("/usr/bin/leaky", p.join("exe")).expect("link");
    std::fs::create_dir_all(root.join("101/fd")).expect("mkdir");
    std::fs::create_dir_all(root.join("self")).expect("mkdir");
    dir
}

/// tree()'s process 100, by its stat's start time; and its pid as a
/// process started later would reuse it.
const LEAKY: ProcessKey = ProcessKey {
    pid: 100,
    start_time: 4242,
};
const REUSED: ProcessKey = ProcessKey {
    pid: 100,
    start_time: 1,
};

#[test]
fn walk_reads_identity_fds_and_wanted_sockets() {
    let dir = tree();
    let root = ProcRoot::new(dir.path());
    assert_eq!(root.pids().expect("pids"), vec![100, 101]);
    let wanted: FxHashSet<u64> = [555u64, 999].into_iter().collect();
    let pids = root.pids().expect("pids");
    let walk = root.walk(&pids, &wanted, 2).expect("walk");
    assert_eq!(walk.processes.len(), 1);
    assert_eq!(walk.skipped.vanished, 1, "pid 101 has no stat: it exited");
    let p = &walk.processes[0];
    assert_eq!(p.key, LEAKY);
    assert_eq!(p.comm, "leaky server");
    assert!(p.fds_walked);
    // Not procfs: st_size means nothing, so the entries are counted.
    assert_eq!(p.fds.open, 4);
    assert_eq!(p.fds.sockets, 2);
    assert_eq!(p.fds.limit, Some(1024));
    assert_eq!(p.sockets, vec![HeldSocket { inode: 555, fd: 3 }]);
    // The fixture's "(deleted)" link does not resolve: not confirmed deleted.
    assert_eq!(p.fds.deleted_files, 0);
}

/// A process being reaped: the kernel serves an empty limits file for an
/// instant before its pid goes (`lock_task_sighand` fails once the task is
/// released). Measured here with a C probe reading /proc/PID/limits of
/// children as they were reaped: 682 empty reads in 13,308 forks. That is a
/// process that exited, not one that could not be read; a malformed file
/// still is.
#[test]
fn an_empty_limits_file_is_a_process_that_exited() {
    let dir = tree();
    let root = dir.path();
    let p = root.join("102");
    write(&p.join("stat"), &stat_line(102, "reaped", 5000));
    write(&p.join("limits"), "");
    std::fs::create_dir_all(p.join("fd")).expect("mkdir");
    symlink("socket:[555]", p.join("fd/3")).expect("link");
    let q = root.join("103");
    write(&q.join("stat"), &stat_line(103, "garbled", 5001));
    write(&q.join("limits"), "Limit  Soft Limit\nnothing else\n");
    std::fs::create_dir_all(q.join("fd")).expect("mkdir");
    let proc_root = ProcRoot::new(root);
    let pids = proc_root.pids().expect("pids");
    assert_eq!(pids, vec![100, 101, 102, 103]);
    let walk = proc_root
        .walk(&pids, &FxHashSet::default(), 2)
        .expect("walk");
    let listed: Vec<u32> = walk.processes.iter().map(|p| p.key.pid).collect();
    assert_eq!(listed, vec![100]);
    assert_eq!(
        walk.skipped.vanished, 2,
        "101 (no stat) and 102 (empty limits)"
    );
    assert_eq!(walk.failed.len(), 1, "{:?}", walk.failed);
    assert_eq!(walk.failed[0].0, 103);
}

#[test]
fn describe_reads_details_and_rejects_a_reused_pid() {
    let dir = tree();
    let root = ProcRoot::new(dir.path());
    let key = LEAKY;
    let d = root.describe(key).expect("describe");
    assert_eq!(d.cmdline, "leaky --port 8080");
    assert_eq!(d.unit.as_deref(), Some("leaky.service"));
    assert_eq!(d.exe.as_deref(), Some("/usr/bin/leaky"));
    assert_eq!(d.netns.map(|n| n.0), Some(4026531840));
    let reused = REUSED;
    assert_eq!(root.describe(reused), Err(Skip::Vanished));
    let gone = ProcessKey {
        pid: 7777,
        start_time: 1,
    };
    assert_eq!(root.describe(gone), Err(Skip::Vanished));
}

#[test]
fn describe_all_keeps_the_order_of_its_keys_on_threads_too() {
    let dir = tree();
    let root = ProcRoot::new(dir.path());
    let key = LEAKY;
    let reused = REUSED;
    // Enough keys to be described on threads; every seventh is a reused
    // pid and every eleventh no key at all, both to come back as None in
    // their own places.
    let keys: Vec<Option<ProcessKey>> = (0..1000)
        .map(|i| match i {
            i if i % 11 == 0 => None,
            i if i % 7 == 0 => Some(reused),
            _ => Some(key),
        })
        .collect();
    for threads in [1, 2, 3] {
        let details = root.describe_all(&keys, threads);
        assert_eq!(details.len(), keys.len());
        for (i, (k, d)) in keys.iter().zip(&details).enumerate() {
            match k {
                Some(k) if *k == key => {
                    let d = d.as_ref().expect("described");
                    assert_eq!(d.cmdline, "leaky --port 8080", "key {i}, {threads} threads");
                }
                _ => assert_eq!(d, &None, "key {i}, {threads} threads"),
            }
        }
    }
}

#[test]
fn host_figures_come_from_the_proc_root() {
    let dir = tree();
    let (host, errors) = ProcRoot::new(dir.path()).host();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(host.hostname, "fixture-host");
    assert_eq!(host.kernel, "6.18.0-test");
    assert_eq!((host.open_fds, host.max_fds), (Some(2048), Some(100_000)));
}

#[test]
fn missing_host_files_are_errors_not_zeros() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, errors) = ProcRoot::new(dir.path()).host();
    assert_eq!(errors.len(), 3);
    assert_eq!((host.open_fds, host.max_fds), (None, None));
}

#[test]
fn an_unreadable_root_is_an_error() {
    let root = ProcRoot::new("/nonexistent/proc");
    assert!(root.pids().is_err());
    assert!(root.walk(&[1], &FxHashSet::default(), 1).is_err());
}

#[test]
fn the_real_proc_sees_this_test_with_its_fd_count_from_st_size() {
    let root = ProcRoot::new("/proc");
    let me = std::process::id();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let inode = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&listener)
    ))
    .expect("readlink")
    .to_string_lossy()
    .trim_start_matches("socket:[")
    .trim_end_matches(']')
    .parse::<u64>()
    .expect("socket inode");
    let wanted: FxHashSet<u64> = [inode].into_iter().collect();
    let walk = root.walk(&[me], &wanted, 1).expect("walk");
    let p = walk
        .processes
        .iter()
        .find(|p| p.key.pid == me)
        .expect("this process is listed");
    assert!(p.fds_walked);
    assert!(p.fds.open >= 4 && p.fds.sockets >= 1, "{:?}", p.fds);
    assert_eq!(p.sockets.len(), 1);
    assert_eq!(p.sockets[0].inode, inode);
    drop(listener);
}

/// The real kernel, as processes are reaped under the walk: the fixture's
/// `reaper` forks 600 processes at a time that exit together and are reaped
/// together, while the walk runs back to back over every pid for 8 s.
/// Processes that exit mid-walk are vanished, never failed. Without the
/// empty-limits fix above, three runs failed 41, 63 and 66 processes
/// ("malformed limits: no \"Max open files\" line").
#[test]
fn processes_reaped_under_the_walk_are_vanished_never_failed() {
    const FOR: Duration = Duration::from_secs(8);
    let fixture = common::Fixture::start("reaper", Some(600));
    let reaper = fixture.info.role("reaper").pids[0];
    let root = ProcRoot::new("/proc");
    let none = FxHashSet::default();
    let (mut walks, mut vanished, mut failed) = (0u64, 0u64, Vec::new());
    let end = Instant::now() + FOR;
    while Instant::now() < end {
        let pids = root.pids().expect("pids");
        let walk = root.walk(&pids, &none, 2).expect("walk");
        walks += 1;
        vanished += walk.skipped.vanished;
        failed.extend(walk.failed);
    }
    let reaper_alive = std::path::Path::new(&format!("/proc/{reaper}")).exists();
    drop(fixture);
    eprintln!("{walks} walks, {vanished} processes vanished under them, failed: {failed:?}");
    assert!(reaper_alive, "the reaper died during the walks");
    assert!(
        vanished > 0,
        "no process vanished under {walks} walks: the race was not run"
    );
    assert!(
        failed.is_empty(),
        "processes that exited were failed: {failed:?}"
    );
}

/// A read that fails leaves its figure unknown, counted, never taken for
/// "nothing there": an fd whose link says " (deleted)" but whose file cannot
/// be stat-ed (here a symlink loop: ELOOP), and a cgroup that cannot be read
/// (here a directory: EISDIR), which leaves the unit unknown, not "none".
#[test]
fn failed_reads_are_counted_not_taken_for_nothing_there() {
    let dir = tree();
    let root = dir.path();
    let looped = root.join("loop (deleted)");
    symlink(&looped, &looped).expect("a link to itself");
    symlink(&looped, root.join("100/fd/6")).expect("link");
    let proc_root = ProcRoot::new(root);
    let pids = proc_root.pids().expect("pids");
    let walk = proc_root
        .walk(&pids, &FxHashSet::default(), 1)
        .expect("walk");
    assert_eq!(walk.stats.fd_stat_failed, 1);
    assert_eq!(walk.processes[0].fds.deleted_files, 0);

    std::fs::remove_file(root.join("100/cgroup")).expect("rm");
    std::fs::create_dir(root.join("100/cgroup")).expect("mkdir");
    let key = LEAKY;
    let d = proc_root.describe(key).expect("the rest is still read");
    assert_eq!(d.cmdline, "leaky --port 8080");
    assert_eq!(d.unit, None);
    assert!(
        d.unit_error
            .as_deref()
            .is_some_and(|e| e.contains("cgroup")),
        "{d:?}"
    );
    assert!(matches!(proc_root.describe_unit(key), Err(Skip::Failed(_))));
}

/// A TCP socket the process holds that is in no TCP table is dead: here one
/// reset by its peer (SO_LINGER 0) and one whose connect() was refused,
/// against a live connection, a UDP socket and a UNIX pair, which are not.
/// The "tables" are given as the inodes of the live sockets.
#[test]
fn held_tcp_sockets_in_no_table_are_dead_and_others_are_not() {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream, UdpSocket};
    let ino = |fd: &dyn std::os::fd::AsFd| rustix::fs::fstat(fd).expect("fstat").st_ino;

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let live = TcpStream::connect(addr).expect("connect");
    let (live_peer, _) = listener.accept().expect("accept");
    let reset = TcpStream::connect(addr).expect("connect");
    let (to_reset, _) = listener.accept().expect("accept");
    rustix::net::sockopt::set_socket_linger(&to_reset, Some(Duration::ZERO)).expect("linger 0");
    drop(to_reset);
    reset
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let got = (&reset).read(&mut [0u8; 8]);
    assert!(got.is_err(), "the peer reset it: {got:?}");
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let refused_to = closed.local_addr().expect("addr");
    drop(closed);
    let refused = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::STREAM,
        None,
    )
    .expect("socket");
    assert!(
        rustix::net::connect(&refused, &refused_to).is_err(),
        "refused"
    );
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let unix = std::os::unix::net::UnixStream::pair().expect("pair");

    let alive: FxHashSet<u64> = [ino(&listener), ino(&live), ino(&live_peer)]
        .into_iter()
        .collect();
    let none = FxHashSet::default();
    let root = ProcRoot::new("/proc");
    let me = std::process::id();
    let wanted = closewatch::collect::Wanted {
        sockets: &none,
        alive: Some(&alive),
    };
    let walk = root.walk_for(&[me], &wanted, 1).expect("walk");
    // Other tests of this binary may hold sockets of their own: only this
    // test's are judged.
    let dead: FxHashSet<u64> = walk.processes[0].dead.iter().map(|s| s.inode).collect();
    assert!(dead.contains(&ino(&reset)), "reset: {dead:?}");
    assert!(dead.contains(&ino(&refused)), "refused: {dead:?}");
    for (what, inode) in [
        ("live", ino(&live)),
        ("its peer", ino(&live_peer)),
        ("the listener", ino(&listener)),
        ("UDP", ino(&udp)),
        ("UNIX", ino(&unix.0)),
    ] {
        assert!(!dead.contains(&inode), "{what} is not dead: {dead:?}");
    }
    // Without the tables nothing is looked for.
    let walk = root.walk(&[me], &none, 1).expect("walk");
    assert!(walk.processes[0].dead.is_empty());
    drop((udp, unix));
}

/// Sockets as the kernel dumps them, but for `hidden`, which the first
/// all-states dump of each scan leaves out (as if made after it), and the
/// second too when `twice`; `closing` is closed before the second.
#[derive(Debug)]
struct Hiding {
    hidden: u64,
    twice: bool,
    closing: std::sync::Mutex<Option<std::net::TcpStream>>,
}

impl closewatch::collect::source::SocketSource for Hiding {
    fn namespace(&self) -> std::io::Result<closewatch::model::NetnsId> {
        closewatch::collect::source::Netlink.namespace()
    }

    fn tables(
        &self,
        netns: closewatch::model::NetnsId,
        wants: closewatch::collect::sockdiag::Wants,
        _held: Option<&[closewatch::collect::sockdiag::lookup::Exact]>,
    ) -> (
        closewatch::collect::sockdiag::TcpTables,
        Vec<closewatch::collect::sockdiag::FamilyError>,
    ) {
        let (mut t, errors) = closewatch::collect::source::Netlink.tables(netns, wants, None);
        t.inodes.retain(|&i| i != self.hidden);
        (t, errors)
    }

    fn every_namespace(&self) -> bool {
        false
    }

    fn found_among(
        &self,
        netns: closewatch::model::NetnsId,
        candidates: &FxHashSet<u64>,
    ) -> Option<FxHashSet<u64>> {
        drop(self.closing.lock().expect("lock").take());
        let mut found = closewatch::collect::source::Netlink.found_among(netns, candidates)?;
        if self.twice {
            found.remove(&self.hidden);
        }
        Some(found)
    }
}

/// A connection made after the all-states dump, and connected by the time
/// the walk reads its fd, is in none of the dump's tables: the scan dumps
/// again before calling it dead. Left out of both dumps, it is dead (the
/// check can fail), unless it was closed before the second.
#[test]
fn a_socket_missing_from_the_dump_is_dumped_again_before_it_is_dead() {
    use closewatch::collect::{Collector, ScanTime};
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    let ino = |fd: &dyn std::os::fd::AsFd| rustix::fs::fstat(fd).expect("fstat").st_ino;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let late = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (_peer, _) = listener.accept().expect("accept");
    let me = std::process::id();
    let dead_of_mine = |hidden: u64, twice: bool, closing: Option<TcpStream>| -> Vec<u64> {
        let collector = Collector::new(ProcRoot::new("/proc")).with_sockets(Arc::new(Hiding {
            hidden,
            twice,
            closing: std::sync::Mutex::new(closing),
        }));
        let snap = collector.scan(ScanTime::now());
        assert_eq!(
            snap.dead,
            closewatch::model::Freshness::Fresh,
            "{:?}",
            snap.errors
        );
        let p = snap
            .processes
            .iter()
            .find(|p| p.key.pid == me)
            .expect("this test process is walked");
        p.dead.iter().map(|s| s.inode).collect()
    };
    let late_ino = ino(&late);
    assert!(
        !dead_of_mine(late_ino, false, None).contains(&late_ino),
        "found by the second dump"
    );
    assert!(
        dead_of_mine(late_ino, true, None).contains(&late_ino),
        "in neither dump: dead"
    );
    assert!(
        !dead_of_mine(late_ino, true, Some(late)).contains(&late_ino),
        "closed before the second dump: not held, not dead"
    );
}
