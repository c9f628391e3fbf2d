//! Sockets closed between a scan's dump and its /proc walk: the golden
//! recording and /proc tree, with two CLOSE_WAIT sockets no process of the
//! tree holds added to the first dump. One is gone from the second dump
//! (closed mid-scan): it leaves the snapshot. The other is still there: it
//! stays, a socket of an unknown owner.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use super::sockdiag::{DumpError, Family, FamilyError};
use super::*;
use crate::model::{TcpSocket, TcpState};

const CLOSED: u64 = 990_001;
const KEPT: u64 = 990_002;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

/// The recording, with `CLOSED` in the first dump only and `KEPT` in
/// every dump; the second dump fails if `fail_again`.
#[derive(Debug)]
struct Closing {
    inner: Recorded,
    calls: AtomicU32,
    fail_again: bool,
    /// The `counts` argument of each call.
    counts: Mutex<Vec<bool>>,
}

impl Closing {
    fn new(fail_again: bool) -> Closing {
        Closing {
            inner: Recorded {
                dir: golden().join("sockdiag"),
            },
            calls: AtomicU32::new(0),
            fail_again,
            counts: Mutex::new(Vec::new()),
        }
    }
}

fn unowned(netns: NetnsId, inode: u64, port: u16) -> TcpSocket {
    TcpSocket {
        netns,
        state: TcpState::CloseWait,
        local: ([127, 0, 0, 1], 8080).into(),
        remote: ([127, 0, 0, 1], port).into(),
        cookie: inode,
        inode,
        uid: 0,
        recv_q: 1,
        send_q: 0,
        info: None,
    }
}

impl SocketSource for Closing {
    fn namespace(&self) -> io::Result<NetnsId> {
        self.inner.namespace()
    }

    fn tables(
        &self,
        netns: NetnsId,
        counts: bool,
    ) -> (sockdiag::TcpTables, Vec<sockdiag::FamilyError>) {
        self.counts.lock().expect("lock").push(counts);
        let first = self.calls.fetch_add(1, Ordering::Relaxed) == 0;
        let (mut tables, mut errors) = self.inner.tables(netns, counts);
        tables.flagged.push(unowned(netns, KEPT, 40_002));
        if first {
            tables.flagged.push(unowned(netns, CLOSED, 40_001));
        } else if self.fail_again {
            errors.push(FamilyError {
                family: Family::V4,
                error: DumpError::Eof,
            });
        }
        (tables, errors)
    }

    fn every_namespace(&self) -> bool {
        false
    }
}

fn scan(source: &Arc<Closing>) -> Snapshot {
    Collector::new(ProcRoot::new(golden().join("proc")))
        .with_sockets(source.clone())
        .scan()
}

fn has(snap: &Snapshot, inode: u64) -> bool {
    snap.sockets.iter().any(|s| s.inode == inode)
}

#[test]
fn a_socket_gone_from_the_second_dump_leaves_the_scan_one_still_there_stays() {
    let source = Arc::new(Closing::new(false));
    let snap = scan(&source);
    assert_eq!(snap.errors, Vec::new());
    // The full dump, then the second: flagged sockets and listeners only.
    assert_eq!(*source.counts.lock().expect("lock"), vec![true, false]);
    assert!(!has(&snap, CLOSED), "closed mid-scan, yet still listed");
    assert!(has(&snap, KEPT), "still open: an unknown owner");
    assert_eq!(snap.closed_mid_scan, 1);

    // Every owned socket of the recording is untouched.
    let baseline = Collector::new(ProcRoot::new(golden().join("proc")))
        .with_sockets(Arc::new(Recorded {
            dir: golden().join("sockdiag"),
        }))
        .scan();
    assert_eq!(snap.sockets.len(), baseline.sockets.len() + 1);
}

#[test]
fn a_second_dump_that_fails_leaves_the_sockets_as_they_were() {
    let source = Arc::new(Closing::new(true));
    let snap = scan(&source);
    assert_eq!(source.calls.load(Ordering::Relaxed), 2);
    assert!(has(&snap, CLOSED) && has(&snap, KEPT));
    assert_eq!(snap.closed_mid_scan, 0);
}

#[test]
fn no_second_dump_while_every_socket_has_an_owner() {
    // The recording alone: every flagged socket's owner is in the tree.
    #[derive(Debug)]
    struct Counting(Recorded, AtomicU32);
    impl SocketSource for Counting {
        fn namespace(&self) -> io::Result<NetnsId> {
            self.0.namespace()
        }
        fn tables(
            &self,
            netns: NetnsId,
            counts: bool,
        ) -> (sockdiag::TcpTables, Vec<sockdiag::FamilyError>) {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.tables(netns, counts)
        }
        fn every_namespace(&self) -> bool {
            false
        }
    }
    let source = Arc::new(Counting(
        Recorded {
            dir: golden().join("sockdiag"),
        },
        AtomicU32::new(0),
    ));
    let snap = Collector::new(ProcRoot::new(golden().join("proc")))
        .with_sockets(source.clone())
        .scan();
    let owned: FxHashSet<u64> = snap
        .processes
        .iter()
        .flat_map(|p| p.sockets.iter().map(|s| s.inode))
        .collect();
    assert!(
        snap.sockets
            .iter()
            .all(|s| s.inode == 0 || owned.contains(&s.inode)),
        "the recording has an unowned socket: this test needs one without"
    );
    assert_eq!(source.1.load(Ordering::Relaxed), 1);
}

#[test]
fn without_a_walk_of_proc_no_socket_is_dumped_again() {
    // /proc unreadable: no owner is known, so "no owner found" says nothing
    // about a socket being closed.
    let source = Arc::new(Closing::new(false));
    let snap = Collector::new(ProcRoot::new(golden().join("no-such-proc")))
        .with_sockets(source.clone())
        .scan();
    assert!(snap.errors.iter().any(|e| e.stage == Stage::Procfs));
    assert_eq!(source.calls.load(Ordering::Relaxed), 1);
    assert!(has(&snap, CLOSED) && has(&snap, KEPT));
}
