//! Kernel access, and nothing else: sock_diag dumps and the /proc walk fill a
//! [`Snapshot`]. Every read of the kernel's state lives under this module.

pub mod netns;
pub mod procfs;
pub mod sockdiag;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::model::{
    NetnsId, NetnsScan, ProcessDetails, ProcessKey, ScanError, Snapshot, Stage, StateCounts,
    UnscannedNetns,
};

pub use procfs::{ProcRoot, Skip, WalkCache};

/// Where TCP tables come from: the kernel, or a recording of it.
pub trait SocketSource: Send + Sync + std::fmt::Debug {
    /// The namespace the dumps describe.
    fn namespace(&self) -> io::Result<NetnsId>;
    /// Dumps both families of the calling thread's namespace; without
    /// `counts`, only the flagged sockets and the listeners.
    fn tables(
        &self,
        netns: NetnsId,
        counts: bool,
    ) -> (sockdiag::TcpTables, Vec<sockdiag::FamilyError>);
    /// Whether the other namespaces of the host can be entered and dumped
    /// (a recording holds only its own).
    fn every_namespace(&self) -> bool;
}

/// sock_diag netlink in the calling thread's network namespace.
#[derive(Debug, Default)]
pub struct Netlink;

impl SocketSource for Netlink {
    fn namespace(&self) -> io::Result<NetnsId> {
        procfs::own_netns()
    }

    fn tables(
        &self,
        netns: NetnsId,
        counts: bool,
    ) -> (sockdiag::TcpTables, Vec<sockdiag::FamilyError>) {
        sockdiag::dump_tables(netns, sockdiag::NetlinkTransport::open, counts)
    }

    fn every_namespace(&self) -> bool {
        true
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

    fn tables(
        &self,
        netns: NetnsId,
        _counts: bool,
    ) -> (sockdiag::TcpTables, Vec<sockdiag::FamilyError>) {
        // A recording holds the count dumps: replay them every time.
        let dir = self.dir.clone();
        sockdiag::dump_tables(netns, move || Ok(sockdiag::replay::Replay::new(&dir)), true)
    }

    fn every_namespace(&self) -> bool {
        false
    }
}

/// The TCP tables of one namespace, or why it could not be dumped.
type DumpResult = Result<(sockdiag::TcpTables, Vec<sockdiag::FamilyError>), netns::Unscanned>;

/// How old the per-state counts of a cached scan may get: the all-states
/// dump emits every socket of the host, and is most of the cost of a scan
/// whose /proc walk came from the cache. The states of
/// [`sockdiag::EVERY_SCAN_STATES`] are counted by every scan.
pub const STATE_COUNTS_EVERY: Duration = Duration::from_secs(60);

/// Whether something done `age` ago is due again every `period`. A second
/// early counts as due: with an interval that divides the period, timing
/// jitter would otherwise decide between this scan and the next.
pub(crate) fn due(age: Duration, period: Duration) -> bool {
    age + Duration::from_secs(1) >= period
}

/// What the agent (and `--duration`) keep from one scan to the next.
#[derive(Debug, Default)]
pub struct ScanCache {
    walk: WalkCache,
    /// Per namespace: the last all-states counts, and when they were taken.
    states: FxHashMap<NetnsId, (Instant, StateCounts)>,
    /// The namespace of each process, re-read every minute.
    netns: netns::PidNamespaces,
    /// What [`Collector::describe_unit_cached`] read, and when.
    units: FxHashMap<ProcessKey, (Instant, Option<String>)>,
    /// The host name and kernel release, and when they were read.
    host_names: Option<(Instant, String, String)>,
}

/// How long [`Collector::describe_unit_cached`] keeps what it read of a process
/// (and a cached scan the host name and kernel release).
/// A process keeps its PID and start time across `execve`, and its cgroup
/// can change: the details are re-read this often.
pub const DETAILS_EVERY: Duration = Duration::from_secs(60);

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
        // available_parallelism reads cgroup files: once per process, not
        // once per scan (the agent builds a collector for each).
        static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let threads = *THREADS.get_or_init(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(8)
        });
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
    pub fn scan(&self) -> Snapshot {
        self.scan_with(None)
    }

    /// [`scan`](Self::scan), walking /proc only where it changed since the
    /// scan that filled `cache` (the agent and `--duration` keep one).
    pub fn scan_cached(&self, cache: &mut ScanCache) -> Snapshot {
        self.scan_with(Some(cache))
    }

    fn scan_with(&self, mut cache: Option<&mut ScanCache>) -> Snapshot {
        let started = Instant::now();
        let mut snap = Snapshot {
            scanned_at: Some(SystemTime::now()),
            ..Snapshot::default()
        };
        // The host name and kernel release, re-read once a minute by a
        // cached scan (file-nr every scan).
        let names = cache.as_deref().and_then(|c| {
            c.host_names
                .as_ref()
                .filter(|(at, _, _)| started.duration_since(*at) < DETAILS_EVERY)
                .map(|(_, h, k)| (h.as_str(), k.as_str()))
        });
        let reread = names.is_none();
        let (host, host_errors) = self.root.host_with(names);
        if let Some(cache) = cache
            .as_deref_mut()
            .filter(|_| reread && host_errors.is_empty())
        {
            cache.host_names = Some((started, host.hostname.clone(), host.kernel.clone()));
        }
        snap.host = host;
        for e in host_errors {
            snap.errors.push(ScanError {
                stage: Stage::Host,
                message: e.to_string(),
            });
        }

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
        let started_dumps = Instant::now();
        let counted_recently: FxHashSet<NetnsId> = cache
            .as_deref()
            .map(|c| {
                c.states
                    .iter()
                    .filter(|(_, (at, _))| {
                        !due(started_dumps.duration_since(*at), STATE_COUNTS_EVERY)
                    })
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default();
        let mut tables = self.dump_namespaces(
            &pids,
            &mut snap,
            &counted_recently,
            cache.as_deref_mut().map(|c| &mut c.netns),
        );
        if let Some(cache) = cache.as_deref_mut() {
            cache
                .states
                .retain(|id, _| tables.iter().any(|(s, _)| s.id == *id));
            for (scan, t) in &mut tables {
                if t.counted {
                    cache.states.insert(scan.id, (started_dumps, scan.states));
                } else if let Some((_, last)) = cache.states.get(&scan.id) {
                    // The other states as last counted.
                    let mut states = *last;
                    states.replace(&scan.states, sockdiag::EVERY_SCAN_STATES);
                    scan.states = states;
                }
            }
        }

        let mut wanted: FxHashSet<u64> = FxHashSet::default();
        for (_, t) in &tables {
            wanted.reserve(t.flagged.len() + t.listeners.len());
            wanted.extend(t.flagged.iter().map(|s| s.inode).filter(|&i| i != 0));
            wanted.extend(t.listeners.iter().map(|l| l.inode).filter(|&i| i != 0));
        }
        for (scan, mut t) in tables {
            snap.sockets.append(&mut t.flagged);
            snap.listeners.append(&mut t.listeners);
            snap.namespaces.push(scan);
        }

        let walk = match cache.as_deref_mut() {
            Some(cache) => self
                .root
                .walk_cached(&pids, &wanted, self.threads, &mut cache.walk),
            None => self.root.walk(&pids, &wanted, self.threads),
        };
        match walk {
            Ok(walk) => {
                snap.walk = walk.stats;
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
        if let Some(cache) = cache {
            cache.units.retain(|key, _| {
                snap.processes
                    .binary_search_by_key(&key.pid, |p| p.key.pid)
                    .is_ok_and(|i| snap.processes[i].key == *key)
            });
        }
        snap.duration = started.elapsed();
        snap
    }

    /// Dumps every namespace the source can reach: its own directly, the
    /// others from a thread that has entered each. Namespaces that cannot be
    /// entered are recorded with the reason; none is skipped silently.
    fn dump_namespaces(
        &self,
        pids: &[u32],
        snap: &mut Snapshot,
        counted_recently: &FxHashSet<NetnsId>,
        known: Option<&mut netns::PidNamespaces>,
    ) -> Vec<(NetnsScan, sockdiag::TcpTables)> {
        let counts = |id: NetnsId| !counted_recently.contains(&id);
        let own = match self.sockets.namespace() {
            Ok(id) => id,
            Err(e) => {
                snap.errors.push(ScanError {
                    stage: Stage::Sockdiag,
                    message: format!("cannot identify the network namespace: {e}"),
                });
                NetnsId(0)
            }
        };
        let discovery = if self.sockets.every_namespace() {
            netns::discover(
                &self.root,
                pids,
                Some(std::path::Path::new(netns::RUN_NETNS)),
                known,
            )
        } else {
            netns::Discovery::default()
        };
        snap.netns_unknown_processes = discovery.unreadable_processes;
        let mut out = Vec::with_capacity(discovery.namespaces.len().max(1));
        let mut record =
            |snap: &mut Snapshot, id: NetnsId, processes: u64, result: DumpResult| match result {
                Ok((tables, errors)) => {
                    for e in errors {
                        snap.errors.push(ScanError {
                            stage: Stage::Sockdiag,
                            message: format!("netns {id}: {} dump: {}", e.family.name(), e.error),
                        });
                    }
                    let scan = NetnsScan {
                        id,
                        states: tables.states,
                        processes,
                    };
                    out.push((scan, tables));
                }
                Err(netns::Unscanned::Vanished) => {
                    log::debug!("netns {id} vanished before its dump");
                }
                Err(why) => snap.unscanned_netns.push(UnscannedNetns {
                    id,
                    reason: why.reason(),
                    message: why.to_string(),
                    processes,
                }),
            };
        if !discovery.namespaces.iter().any(|ns| ns.id == own) {
            record(snap, own, 0, Ok(self.sockets.tables(own, counts(own))));
        }
        // Each dump walks the kernel's TCP hash table, which namespaces share
        // unless net.ipv4.tcp_child_ehash_entries gives them their own: with
        // many namespaces that is most of the cost, so they are dumped on
        // several threads (measured: benches/netns.sh).
        let namespaces = &discovery.namespaces;
        let results: Vec<std::sync::Mutex<Option<DumpResult>>> = namespaces
            .iter()
            .map(|_| std::sync::Mutex::new(None))
            .collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let dump_next = || loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(ns) = namespaces.get(i) else { break };
            let result = if ns.id == own {
                Ok(self.sockets.tables(own, counts(own)))
            } else {
                netns::run_in(ns, || self.sockets.tables(ns.id, counts(ns.id)))
            };
            if let Ok(mut slot) = results[i].lock() {
                *slot = Some(result);
            }
        };
        let workers = self.threads.min(namespaces.len()).max(1);
        if workers == 1 {
            // One namespace (most hosts): no pool, no per-thread allocator
            // arenas left holding the dump's memory.
            dump_next();
        } else {
            std::thread::scope(|s| {
                for _ in 0..workers {
                    s.spawn(dump_next);
                }
            });
        }
        for (ns, slot) in namespaces.iter().zip(results) {
            let result = slot.into_inner().ok().flatten().unwrap_or_else(|| {
                Err(netns::Unscanned::Failed(
                    "the dump thread failed".to_string(),
                ))
            });
            record(snap, ns.id, ns.processes, result);
        }
        out
    }

    /// Reads what a report shows of one process (exe, cmdline, unit, netns).
    pub fn describe(&self, key: ProcessKey) -> Result<ProcessDetails, Skip> {
        self.root.describe(key)
    }

    /// The agent's details of one process: only its unit (see
    /// [`ProcRoot::describe_unit`]), from `cache` if it was read less than
    /// [`DETAILS_EVERY`] ago. The cache forgets processes that a scan with
    /// it no longer finds.
    pub fn describe_unit_cached(
        &self,
        key: ProcessKey,
        cache: &mut ScanCache,
    ) -> Result<Option<String>, Skip> {
        let now = Instant::now();
        if let Some((at, unit)) = cache.units.get(&key) {
            if now.duration_since(*at) < DETAILS_EVERY {
                return Ok(unit.clone());
            }
        }
        let unit = self.root.describe_unit(key)?;
        cache.units.insert(key, (now, unit.clone()));
        Ok(unit)
    }
}

#[cfg(test)]
#[path = "fault_tests.rs"]
mod fault_tests;
