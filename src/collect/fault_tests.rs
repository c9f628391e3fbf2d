//! A faulty sock_diag dump is retried, then counted once per scan: the golden
//! recording (tests/fixtures/golden), replayed through the transport seam with
//! every reply interrupted, cut short or too large, is retried
//! [`sockdiag::MAX_ATTEMPTS`] times on a fresh socket, then the scan reports a
//! sock_diag error and `closewatch_scan_errors_total{stage="sockdiag"}` rises.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use super::sockdiag::replay::Replay;
use netlink_packet_core::NLM_F_DUMP_INTR;

use super::sockdiag::{self, Transport};
use super::*;
use crate::analyse::{self, History, Thresholds};
use crate::export::metrics::{self, AgentStats, ScanView};
use crate::model::NetnsId;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// Every message carries NLM_F_DUMP_INTR (the table kept changing).
    Interrupted,
    /// The socket reaches EOF after the first datagram, before NLMSG_DONE.
    CutShort,
    /// Every datagram claims to be larger than any receive buffer.
    Oversized,
}

/// The recording, with `fault` done to every reply.
struct FaultyTransport {
    replay: Replay,
    fault: Fault,
    received: usize,
}

impl Transport for FaultyTransport {
    fn send(&mut self, request: &[u8]) -> io::Result<()> {
        self.replay.send(request)
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        if self.fault == Fault::CutShort && self.received == 1 {
            return Ok(0);
        }
        let len = self.replay.recv(buf)?;
        self.received += 1;
        Ok(match self.fault {
            Fault::Interrupted => {
                sockdiag::replay::rewrite_headers(buf, None, NLM_F_DUMP_INTR);
                len
            }
            Fault::CutShort => len,
            Fault::Oversized => len.max(buf.capacity() + 1),
        })
    }
}

/// The recorded namespace, every reply faulty (or none, with `None`).
#[derive(Debug)]
struct FaultySource {
    fault: Option<Fault>,
    /// Netlink sockets opened (one per attempt).
    connects: AtomicU32,
}

impl FaultySource {
    fn new(fault: Option<Fault>) -> FaultySource {
        FaultySource {
            fault,
            connects: AtomicU32::new(0),
        }
    }
}

impl SocketSource for FaultySource {
    fn namespace(&self) -> io::Result<NetnsId> {
        Recorded {
            dir: golden().join("sockdiag"),
        }
        .namespace()
    }

    fn tables(
        &self,
        netns: NetnsId,
        wants: sockdiag::Wants,
        _held: Option<&[sockdiag::lookup::Exact]>,
    ) -> (sockdiag::TcpTables, Vec<sockdiag::FamilyError>) {
        // The recording has no ESTABLISHED dump.
        let wants = sockdiag::Wants {
            idle: None,
            ..wants
        };
        let dir = golden().join("sockdiag");
        let connect = || {
            self.connects.fetch_add(1, Ordering::Relaxed);
            let replay = Replay::new(&dir);
            Ok(FaultyTransport {
                replay,
                fault: self.fault.unwrap_or(Fault::CutShort),
                // Without a fault, never cut short.
                received: if self.fault.is_some() { 0 } else { 2 },
            })
        };
        sockdiag::dump_tables(netns, connect, wants)
    }

    fn every_namespace(&self) -> bool {
        false
    }
}

fn collector(source: &Arc<FaultySource>) -> Collector {
    Collector::new(ProcRoot::new(golden().join("proc"))).with_sockets(source.clone())
}

/// What the agent does with a scan: counts it, then renders its metrics.
fn agent_counts(snap: &Snapshot, stats: &mut AgentStats) -> String {
    stats.count_scan(snap);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let analysis = analyse::analyse(
        snap,
        &History::default(),
        &analyse::Settings::default(),
        now,
    );
    let view = ScanView {
        snapshot: snap,
        analysis: &analysis,
        units: &[],
        units_unreadable: 0,
        thresholds: &Thresholds::default(),
        max_processes: 10,
        own_process: None,
    };
    metrics::render(&view, stats).expect("renders")
}

fn errors_total(text: &str, stage: &str) -> u64 {
    let prefix = format!("closewatch_scan_errors_total{{stage=\"{stage}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}"))
}

#[test]
fn a_healthy_replay_scans_without_errors() {
    // The baseline the faults are judged against.
    let source = Arc::new(FaultySource::new(None));
    let snap = collector(&source).scan(ScanTime::now());
    assert_eq!(snap.errors, Vec::new());
    assert!(
        !snap.sockets.is_empty(),
        "the recording has flagged sockets"
    );
    let mut stats = AgentStats::default();
    let text = agent_counts(&snap, &mut stats);
    assert_eq!(errors_total(&text, "sockdiag"), 0);
}

#[test]
fn faulty_dumps_are_retried_then_counted_once_per_scan() {
    for (fault, says) in [
        (Fault::Interrupted, "interrupted (NLM_F_DUMP_INTR) 4 times"),
        (Fault::CutShort, "closed before NLMSG_DONE"),
        (Fault::Oversized, "did not fit in"),
    ] {
        let source = Arc::new(FaultySource::new(Some(fault)));
        let collector = collector(&source);
        let mut stats = AgentStats::default();
        for scan in 1..=2u64 {
            let before = source.connects.load(Ordering::Relaxed);
            let snap = collector.scan(ScanTime::now());
            let connects = source.connects.load(Ordering::Relaxed) - before;
            // The combined request, then IPv4 and IPv6 alone: each retried
            // on a fresh socket up to MAX_ATTEMPTS times.
            assert!(
                connects >= 2 * sockdiag::MAX_ATTEMPTS,
                "{fault:?}: {connects} attempts"
            );
            assert!(!snap.errors.is_empty(), "{fault:?}: no error reported");
            for e in &snap.errors {
                assert_eq!(e.stage, Stage::Sockdiag, "{fault:?}: {e:?}");
                assert!(e.message.contains(says), "{fault:?}: {e:?}");
            }
            let text = agent_counts(&snap, &mut stats);
            assert_eq!(stats.scans, scan);
            assert_eq!(errors_total(&text, "sockdiag"), scan, "{fault:?}");
            assert_eq!(errors_total(&text, "procfs"), 0, "{fault:?}");
        }
    }
}
