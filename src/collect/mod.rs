//! Kernel access, and nothing else: sock_diag dumps and the /proc walk fill a
//! [`Snapshot`]. Every read of the kernel's state lives under this module.
//!
//! A scan reads the host's figures, dumps the TCP tables of every namespace
//! ([`tables`]), then walks /proc to name the owners of the flagged sockets
//! and listeners ([`procfs`]). A cached scan (the agent's, and `--duration`'s)
//! reuses what [`ScanCache`] allows; the time is the caller's ([`ScanTime`]).

pub mod cache;
pub mod netns;
pub mod procfs;
pub mod sockdiag;
pub mod source;
mod tables;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use rustc_hash::FxHashSet;

use crate::model::{DeadCheck, NetnsScan, ProcessDetails, ProcessKey, ScanError, Snapshot, Stage};

pub use cache::ScanCache;
pub use procfs::{ProcRoot, Skip, WalkCache, Wanted};
pub use source::{Netlink, Recorded, SocketSource};

/// When a scan starts: the wall clock for the snapshot (and the ages the
/// analysis derives from it), the monotonic clock for the caches' refresh
/// rules. Read once by the caller of a scan.
#[derive(Clone, Copy, Debug)]
pub struct ScanTime {
    pub wall: SystemTime,
    pub mono: Instant,
}

impl ScanTime {
    pub fn now() -> ScanTime {
        ScanTime {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }
}

/// The inode of every TCP socket of the host, when this scan has them all:
/// every namespace dumped in every state (an unscanned namespace's sockets
/// would look dead). Processes whose namespace could not be read are no
/// obstacle: their fd tables cannot be read either, so none of their
/// sockets is judged.
fn alive(tables: &[(NetnsScan, sockdiag::TcpTables)], snap: &Snapshot) -> Option<FxHashSet<u64>> {
    let complete = !tables.is_empty()
        && tables.iter().all(|(_, t)| t.counted)
        && snap.unscanned_netns.is_empty();
    if !complete {
        return None;
    }
    let mut alive = FxHashSet::default();
    alive.reserve(tables.iter().map(|(_, t)| t.inodes.len()).sum());
    for (_, t) in tables {
        alive.extend(t.inodes.iter().copied());
    }
    Some(alive)
}

/// Destinations using at least this share of their namespace's ephemeral
/// range have their sockets' owners named (looking them all up costs a
/// readlink per socket at every scan that counts).
pub const OWNER_FLOOR: f64 = 0.5;

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

    /// One scan: host figures, TCP tables, then the /proc walk that names the
    /// owners of the flagged sockets and listeners. Failures are recorded in
    /// `Snapshot::errors`; the snapshot holds whatever did succeed.
    pub fn scan(&self, at: ScanTime) -> Snapshot {
        self.scan_with(None, at)
    }

    /// [`scan`](Self::scan), reusing what `cache` allows (see
    /// [`ScanCache`]): the agent and `--duration` keep one.
    pub fn scan_cached(&self, cache: &mut ScanCache, at: ScanTime) -> Snapshot {
        self.scan_with(Some(cache), at)
    }

    fn scan_with(&self, mut cache: Option<&mut ScanCache>, at: ScanTime) -> Snapshot {
        let mut snap = Snapshot::new(at.wall);
        self.host(&mut snap, cache.as_deref_mut(), at.mono);
        let pids = match self.root.pids() {
            Ok(pids) => pids,
            Err(e) => {
                snap.errors.push(ScanError {
                    stage: Stage::Procfs,
                    message: e.to_string(),
                });
                Vec::new()
            }
        };
        let tables = self.tables(&pids, &mut snap, cache.as_deref_mut(), at.mono);
        let mut wanted: FxHashSet<u64> = FxHashSet::default();
        for (_, t) in &tables {
            wanted.reserve(t.flagged.len() + t.listeners.len());
            wanted.extend(t.flagged.iter().map(|s| s.inode).filter(|&i| i != 0));
            wanted.extend(t.listeners.iter().map(|l| l.inode).filter(|&i| i != 0));
        }
        // The owners of the ports to a destination near exhaustion.
        for (_, t) in &tables {
            if let Some(ports) = &t.ports {
                wanted.extend(ports.owner_inodes(OWNER_FLOOR));
            }
        }
        let alive = alive(&tables, &snap);
        for (scan, mut t) in tables {
            snap.sockets.append(&mut t.flagged);
            snap.listeners.append(&mut t.listeners);
            snap.namespaces.push(scan);
        }
        let wanted = Wanted {
            sockets: &wanted,
            alive: alive.as_ref(),
        };
        self.walk(&pids, &wanted, &mut snap, cache.as_deref_mut(), at.mono);
        if let Some(cache) = cache {
            cache.keep_units_of(&snap.processes);
        }
        snap.duration = at.mono.elapsed();
        snap
    }

    /// The host name, the kernel release (a cached scan re-reads them once
    /// a minute) and file-nr (every scan).
    fn host(&self, snap: &mut Snapshot, cache: Option<&mut ScanCache>, now: Instant) {
        let names = cache.as_deref().and_then(|c| c.host_names(now));
        let reread = names.is_none();
        let (host, host_errors) = self.root.host_with(names);
        if let Some(cache) = cache.filter(|_| reread && host_errors.is_empty()) {
            cache.remember_host_names(now, &host.hostname, &host.kernel);
        }
        snap.host = host;
        for e in host_errors {
            snap.errors.push(ScanError {
                stage: Stage::Host,
                message: e.to_string(),
            });
        }
    }

    /// Every namespace's TCP tables; a cached scan counts every state only
    /// when its counts are due, and takes the rest from the last count.
    fn tables(
        &self,
        pids: &[u32],
        snap: &mut Snapshot,
        mut cache: Option<&mut ScanCache>,
        now: Instant,
    ) -> Vec<(NetnsScan, sockdiag::TcpTables)> {
        let counted_recently = cache
            .as_deref()
            .map(|c| c.counted_recently(now))
            .unwrap_or_default();
        let dumps = tables::Dumps {
            source: self.sockets.as_ref(),
            root: &self.root,
            threads: self.threads,
        };
        let known = cache.as_deref_mut().map(ScanCache::netns);
        let mut tables = dumps.dump(pids, snap, &counted_recently, known, now);
        if let Some(cache) = cache {
            let scans = tables
                .iter_mut()
                .map(|(scan, t)| (scan.id, &mut scan.states, t.counted));
            cache.merge_counts(now, scans, sockdiag::EVERY_SCAN_STATES);
        }
        tables
    }

    /// The /proc walk (cached when `cache` is given), into `snap`.
    fn walk(
        &self,
        pids: &[u32],
        wanted: &Wanted<'_>,
        snap: &mut Snapshot,
        cache: Option<&mut ScanCache>,
        now: Instant,
    ) {
        let checked = wanted.alive.is_some();
        let walk = match cache {
            Some(cache) => {
                let (walk_cache, full) = cache.walk(now);
                let walk = self
                    .root
                    .walk_cached(pids, wanted, self.threads, walk_cache, full);
                if walk.as_ref().is_ok_and(|w| w.stats.full) {
                    cache.walked_full(now);
                }
                snap.dead = cache.dead_check(checked && walk.is_ok());
                walk
            }
            None => {
                snap.dead = if checked {
                    DeadCheck::Fresh
                } else {
                    DeadCheck::Unknown
                };
                self.root.walk_for(pids, wanted, self.threads)
            }
        };
        let walk = match walk {
            Ok(walk) => walk,
            Err(e) => {
                snap.errors.push(ScanError {
                    stage: Stage::Procfs,
                    message: e.to_string(),
                });
                return;
            }
        };
        snap.walk = walk.stats;
        snap.unread.fd_stat = walk.stats.fd_stat_failed;
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

    /// Reads what a report shows of one process (exe, cmdline, unit, netns).
    pub fn describe(&self, key: ProcessKey) -> Result<ProcessDetails, Skip> {
        self.root.describe(key)
    }

    /// The agent's details of one process: only its unit (see
    /// [`ProcRoot::describe_unit`]), from `cache` if it was read recently
    /// (the rule: [`cache::DETAILS_EVERY`]). The cache forgets processes
    /// that a scan with it no longer finds.
    pub fn describe_unit_cached(
        &self,
        key: ProcessKey,
        cache: &mut ScanCache,
        now: Instant,
    ) -> Result<Option<String>, Skip> {
        if let Some(unit) = cache.unit(key, now) {
            return Ok(unit);
        }
        let unit = self.root.describe_unit(key)?;
        cache.remember_unit(key, now, unit.clone());
        Ok(unit)
    }
}

#[cfg(test)]
#[path = "fault_tests.rs"]
mod fault_tests;
