//! Kernel access, and nothing else: sock_diag dumps and the /proc walk fill a
//! [`Snapshot`]. Every read of the kernel's state lives under this module.

pub mod procfs;
pub mod sockdiag;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use rustc_hash::FxHashSet;

use crate::model::{NetnsId, NetnsScan, ProcessDetails, ProcessKey, ScanError, Snapshot, Stage};

pub use procfs::{ProcRoot, Skip};

/// Where TCP tables come from: the kernel, or a recording of it.
pub trait SocketSource: Send + Sync + std::fmt::Debug {
    /// The namespace the dumps describe.
    fn namespace(&self) -> io::Result<NetnsId>;
    /// Dumps both families of that namespace.
    fn tables(&self, netns: NetnsId) -> (sockdiag::TcpTables, Vec<sockdiag::FamilyError>);
}

/// sock_diag netlink in the calling thread's network namespace.
#[derive(Debug, Default)]
pub struct Netlink;

impl SocketSource for Netlink {
    fn namespace(&self) -> io::Result<NetnsId> {
        procfs::own_netns()
    }

    fn tables(&self, netns: NetnsId) -> (sockdiag::TcpTables, Vec<sockdiag::FamilyError>) {
        sockdiag::dump_tables(netns, sockdiag::NetlinkTransport::open)
    }
}

/// Recorded dumps (see [`sockdiag::replay`]); the namespace id is read from
/// the recording's `netns` file.
#[derive(Debug)]
pub struct Recorded {
    pub dir: PathBuf,
}

impl SocketSource for Recorded {
    fn namespace(&self) -> io::Result<NetnsId> {
        let text = std::fs::read_to_string(self.dir.join("netns"))?;
        text.trim()
            .parse()
            .map(NetnsId)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("netns file: {e}")))
    }

    fn tables(&self, netns: NetnsId) -> (sockdiag::TcpTables, Vec<sockdiag::FamilyError>) {
        let dir = self.dir.clone();
        sockdiag::dump_tables(netns, move || Ok(sockdiag::replay::Replay::new(&dir)))
    }
}

/// How many failures of one kind are spelled out before they are summarised.
const MAX_LISTED_FAILURES: usize = 5;

/// Takes snapshots of one host.
#[derive(Debug, Clone)]
pub struct Collector {
    root: ProcRoot,
    threads: usize,
    sockets: Arc<dyn SocketSource>,
}

impl Collector {
    /// A collector of this host: /proc at `root`, sockets from the kernel.
    pub fn new(root: ProcRoot) -> Collector {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        Collector {
            root,
            threads,
            sockets: Arc::new(Netlink),
        }
    }

    /// Takes sockets from another source (a recording, in tests).
    pub fn with_sockets(mut self, source: Arc<dyn SocketSource>) -> Collector {
        self.sockets = source;
        self
    }

    pub fn with_threads(mut self, threads: usize) -> Collector {
        self.threads = threads.max(1);
        self
    }

    pub fn root(&self) -> &ProcRoot {
        &self.root
    }

    /// One scan: host figures, TCP tables, then the /proc walk that names the
    /// owners of the flagged sockets and listeners. Failures are recorded in
    /// `Snapshot::errors`; the snapshot holds whatever did succeed.
    pub fn scan(&self) -> Snapshot {
        let started = Instant::now();
        let mut snap = Snapshot {
            scanned_at: Some(SystemTime::now()),
            ..Snapshot::default()
        };
        let (host, host_errors) = self.root.host();
        snap.host = host;
        for e in host_errors {
            snap.errors.push(ScanError {
                stage: Stage::Host,
                message: e.to_string(),
            });
        }

        let netns = match self.sockets.namespace() {
            Ok(id) => id,
            Err(e) => {
                snap.errors.push(ScanError {
                    stage: Stage::Sockdiag,
                    message: format!("cannot identify the network namespace: {e}"),
                });
                NetnsId(0)
            }
        };
        let (tables, dump_errors) = self.sockets.tables(netns);
        for e in dump_errors {
            snap.errors.push(ScanError {
                stage: Stage::Sockdiag,
                message: format!("{} dump: {}", e.family.name(), e.error),
            });
        }
        snap.namespaces.push(NetnsScan {
            id: netns,
            states: tables.states,
        });

        let mut wanted: FxHashSet<u64> = FxHashSet::with_capacity_and_hasher(
            tables.flagged.len() + tables.listeners.len(),
            Default::default(),
        );
        wanted.extend(tables.flagged.iter().map(|s| s.inode).filter(|&i| i != 0));
        wanted.extend(tables.listeners.iter().map(|l| l.inode).filter(|&i| i != 0));
        snap.sockets = tables.flagged;
        snap.listeners = tables.listeners;

        match self.root.walk(&wanted, self.threads) {
            Ok(walk) => {
                snap.processes = walk.processes;
                snap.skipped = walk.skipped;
                if !walk.failed.is_empty() {
                    let listed: Vec<String> = walk
                        .failed
                        .iter()
                        .take(MAX_LISTED_FAILURES)
                        .map(|(pid, why)| format!("pid {pid}: {why}"))
                        .collect();
                    let more = walk.failed.len().saturating_sub(MAX_LISTED_FAILURES);
                    log::warn!(
                        "{} processes could not be read: {}{}",
                        walk.failed.len(),
                        listed.join("; "),
                        if more > 0 {
                            format!(" and {more} more")
                        } else {
                            String::new()
                        }
                    );
                    snap.skipped.failed = walk.failed.len() as u64;
                }
            }
            Err(e) => snap.errors.push(ScanError {
                stage: Stage::Procfs,
                message: e.to_string(),
            }),
        }
        snap.duration = started.elapsed();
        snap
    }

    /// Reads what a report shows of one process (exe, cmdline, unit, netns).
    pub fn describe(&self, key: ProcessKey) -> Result<ProcessDetails, Skip> {
        self.root.describe(key)
    }
}
