//! The record parser on records the iterators wrote (recorded by
//! examples/record_bpf.rs, with /proc's view of the same fds alongside),
//! and the walk they build.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rustc_hash::FxHashSet;

use super::records::{self, Decoder, FdKind, RecordError, FD_RECORD, TASK_RECORD};
use super::walk::{ticks, Builder};
use crate::collect::procfs::ProcRoot;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bpf")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// proc.txt: `key value` lines, and `fd N what...` lines.
struct Proc {
    keys: BTreeMap<String, String>,
    fds: BTreeMap<u32, String>,
}

fn proc_view() -> Proc {
    let text = String::from_utf8(fixture("proc.txt")).expect("utf-8");
    let mut keys = BTreeMap::new();
    let mut fds = BTreeMap::new();
    for line in text.lines() {
        let (key, rest) = line.split_once(' ').expect("key value");
        if key == "fd" {
            let (fd, what) = rest.split_once(' ').expect("fd N what");
            fds.insert(fd.parse().expect("fd number"), what.to_string());
        } else {
            keys.insert(key.to_string(), rest.to_string());
        }
    }
    Proc { keys, fds }
}

fn all_fds() -> Vec<records::FdRecord> {
    fixture("fds.bin")
        .chunks_exact(FD_RECORD)
        .map(|r| records::fd(r.try_into().expect("a whole record")).expect("a known kind"))
        .collect()
}

fn task() -> records::TaskRecord {
    let bytes = fixture("task.bin");
    records::task(bytes.as_slice().try_into().expect("one task record"))
}

/// The recording's clock ticks per second (USER_HZ, 100 on every
/// architecture closewatch builds for).
const TICKS: u64 = 100;

#[test]
fn the_task_record_says_what_proc_says() {
    let proc = proc_view();
    let t = task();
    assert_eq!(t.tgid.to_string(), proc.keys["pid"]);
    assert_eq!(t.comm, proc.keys["comm"]);
    assert_eq!(
        ticks(t.start_boottime_ns, TICKS).to_string(),
        proc.keys["start_time"]
    );
    assert_eq!(
        t.nofile.map_or("unlimited".into(), |n| n.to_string()),
        proc.keys["nofile"]
    );
    assert_eq!(t.netns.to_string(), proc.keys["netns"]);
    assert!(!t.kernel_thread);
}

#[test]
fn every_fd_record_is_of_the_kind_its_proc_link_says() {
    let proc = proc_view();
    let fds = all_fds();
    let pid: u32 = proc.keys["pid"].parse().expect("pid");
    let mut compared = 0;
    for r in &fds {
        assert_eq!((r.tgid, r.tid), (pid, pid));
        // The loader's own fds (BPF objects, the iterator) were open while
        // the iterator ran and closed before /proc was read, or since.
        let Some(what) = proc.fds.get(&r.fd) else {
            continue;
        };
        let said = match r.kind {
            FdKind::Socket => format!("socket {}", r.ino),
            FdKind::Pipe => "pipe".into(),
            FdKind::AnonInode => "anon".into(),
            FdKind::File => "file".into(),
            FdKind::Deleted => format!("deleted {}", r.ino),
            FdKind::Other => "other".into(),
        };
        assert_eq!(&said, what, "fd {}", r.fd);
        compared += 1;
    }
    // The fds the recorder made (3 to 16) are all there.
    assert!(compared >= 17, "only {compared} fds compared");
    for fd in 3..=16 {
        assert!(fds.iter().any(|r| r.fd == fd), "fd {fd} missing");
    }
}

#[test]
fn sockets_carry_family_and_state_and_closed_ones_the_rest() {
    let fds = all_fds();
    let by_fd = |fd: u32| *fds.iter().find(|r| r.fd == fd).expect("recorded fd");
    // The recorder's fds, in the order it made them. Type, protocol and
    // namespace are read only in state CLOSE (7).
    let listener = by_fd(3);
    assert_eq!(
        (
            listener.family,
            listener.state,
            listener.protocol,
            listener.netns
        ),
        (2, 10, 0, 0)
    );
    for fd in [4, 5] {
        let r = by_fd(fd);
        assert_eq!(
            (r.family, r.state, r.protocol, r.sock_type),
            (2, 1, 0, 0),
            "fd {fd}"
        );
        assert!(!r.is_dead_tcp());
    }
    for fd in [6, 7] {
        assert_eq!(by_fd(fd).family, 1, "UNIX pair, fd {fd}");
    }
    let unconnected = fds.iter().filter(|r| r.is_dead_tcp()).collect::<Vec<_>>();
    assert_eq!(unconnected.len(), 1, "the never-connected socket");
    let dead = unconnected[0];
    assert_eq!(
        (dead.family, dead.state, dead.protocol, dead.sock_type),
        (2, 7, 6, 1)
    );
    let proc = proc_view();
    let netns: u32 = proc.keys["netns"].parse().expect("netns");
    assert_eq!(dead.netns, netns);
}

#[test]
fn records_split_anywhere_across_reads_decode_the_same() {
    let bytes = fixture("fds.bin");
    let whole = all_fds();
    for step in [1, 5, 31, 32, 33, 100, 4096] {
        let mut decoder = Decoder::<FD_RECORD>::default();
        let mut got = Vec::new();
        for chunk in bytes.chunks(step) {
            decoder.feed(chunk, |r| got.push(records::fd(r).expect("known kind")));
        }
        assert_eq!(decoder.finish(), Ok(()));
        assert_eq!(got, whole, "chunks of {step}");
    }
}

#[test]
fn a_stream_ending_inside_a_record_is_an_error() {
    let bytes = fixture("task.bin");
    let mut decoder = Decoder::<TASK_RECORD>::default();
    let mut n = 0;
    decoder.feed(&bytes[..TASK_RECORD - 3], |_| n += 1);
    assert_eq!(n, 0);
    assert_eq!(
        decoder.finish(),
        Err(RecordError::Truncated(TASK_RECORD - 3))
    );
}

#[test]
fn an_unknown_kind_is_an_error_not_a_guess() {
    let mut bytes: [u8; FD_RECORD] = fixture("fds.bin")[..FD_RECORD].try_into().expect("record");
    bytes[12] = 99;
    assert_eq!(records::fd(&bytes), Err(RecordError::Kind(99)));
}

#[test]
fn the_walk_counts_fds_as_proc_does_and_names_what_is_wanted() {
    let proc = proc_view();
    let fds = all_fds();
    let t = task();
    let listener = fds.iter().find(|r| r.fd == 3).expect("listener").ino;
    let wanted: FxHashSet<u64> = [listener].into_iter().collect();
    let mut b = Builder::new(std::slice::from_ref(&t), &wanted, TICKS);
    for r in &fds {
        b.fd(r);
    }
    let walk = b.finish(&ProcRoot::new("/nonexistent"));
    let p = &walk.processes[0];
    assert_eq!(p.key.start_time.to_string(), proc.keys["start_time"]);
    assert_eq!(p.fds.open, fds.len() as u64);
    let count = |kind: FdKind| fds.iter().filter(|r| r.kind == kind).count() as u64;
    assert_eq!(p.fds.sockets, count(FdKind::Socket));
    assert_eq!(p.fds.pipes, count(FdKind::Pipe));
    assert_eq!(p.fds.anon_inodes, count(FdKind::AnonInode));
    assert_eq!(p.fds.files, count(FdKind::File) + count(FdKind::Deleted));
    assert_eq!((p.fds.deleted_files, p.fds.deleted_bytes), (1, 12_345));
    assert_eq!(
        p.fds.limit.map(|n| n.to_string()),
        proc.keys["nofile"]
            .parse::<u64>()
            .ok()
            .map(|n| n.to_string())
    );
    assert_eq!(p.sockets.len(), 1);
    assert_eq!((p.sockets[0].inode, p.sockets[0].fd), (listener, 3));
    assert_eq!(p.dead.len(), 1, "the never-connected TCP socket");
    // The path of a deleted file comes from its link, gone with the recorder.
    assert_eq!(p.largest_deleted.as_ref().map(|(_, b)| *b), Some(12_345));
}

#[test]
fn a_thread_with_its_own_table_adds_sockets_not_fds() {
    let fds = all_fds();
    let t = task();
    let sockets: Vec<_> = fds
        .iter()
        .filter(|r| r.kind == FdKind::Socket)
        .copied()
        .collect();
    let wanted: FxHashSet<u64> = sockets.iter().map(|r| r.ino).collect();
    let mut b = Builder::new(std::slice::from_ref(&t), &wanted, TICKS);
    for r in &fds {
        b.fd(r);
    }
    // The same table seen again from a thread that unshared it (a copy:
    // the same sockets on the same fds), plus one socket only it holds.
    for r in &sockets {
        b.fd(&records::FdRecord {
            tid: t.tgid + 1,
            ..*r
        });
    }
    let own = records::FdRecord {
        tid: t.tgid + 1,
        fd: 40,
        ino: 999_999_999,
        ..sockets[0]
    };
    let wanted_too: FxHashSet<u64> = wanted.iter().copied().chain([own.ino]).collect();
    let walk = b.finish(&ProcRoot::new("/nonexistent"));
    let p = &walk.processes[0];
    assert_eq!(
        p.fds.open,
        fds.len() as u64,
        "counts are the leader's table"
    );
    assert_eq!(p.sockets.len(), sockets.len(), "each socket once");
    let mut b = Builder::new(std::slice::from_ref(&t), &wanted_too, TICKS);
    b.fd(&own);
    let walk = b.finish(&ProcRoot::new("/nonexistent"));
    assert_eq!(walk.processes[0].sockets.len(), 1);
    assert_eq!(walk.processes[0].fds.open, 0);
}

/// A `tcp_rec` of zeros but for its port range word (offset 64).
fn tcp_with_range(v: u32) -> records::TcpRecord {
    let mut b = [0u8; records::TCP_RECORD];
    b[64..68].copy_from_slice(&v.to_ne_bytes());
    records::tcp(&b)
}

#[test]
fn a_tcp_records_port_range_is_low_then_high() {
    use crate::model::PortRange;
    assert_eq!(
        tcp_with_range(32768 | 60999 << 16).port_range,
        Some(PortRange {
            low: 32768,
            high: 60999
        })
    );
    assert_eq!(
        tcp_with_range(1024 | 1024 << 16).port_range,
        Some(PortRange {
            low: 1024,
            high: 1024
        })
    );
    // Not read (an older kernel's layout), or inverted: unknown.
    assert_eq!(tcp_with_range(0).port_range, None);
    assert_eq!(tcp_with_range(60999 | 32768 << 16).port_range, None);
}
