//! Kernel access, and nothing else: sock_diag dumps and the /proc walk fill a
//! [`Snapshot`]. Every read of the kernel's state lives under this module.
//!
//! A scan reads the host's figures, dumps the TCP tables of every namespace
//! ([`tables`]), then walks /proc to name the owners of the flagged sockets
//! and listeners ([`procfs`]). A cached scan (the agent's, and `--duration`'s)
//! reuses what [`ScanCache`] allows; the time is the caller's ([`ScanTime`]).

pub mod attribution;
pub mod bpf;
pub mod cache;
pub mod netns;
pub mod own_process;
mod peers;
pub mod procfs;
pub mod sockdiag;
pub mod source;
mod tables;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustc_hash::FxHashSet;

use crate::model::{
    Attribution, Freshness, LocalPeer, NetnsScan, ProcessDetails, ProcessKey, ScanError, Snapshot,
    Stage,
};
use attribution::{Attributor, Backend, BpfScan};

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

pub use crate::defaults::PORT_OWNER_FLOOR as OWNER_FLOOR;

/// The sockets whose owners a scan names: flagged sockets, listeners,
/// idle connections, UNIX sockets whose peer closed, the local peers of
/// all these, and the ports to a destination near exhaustion.
fn wanted(tables: &[(NetnsScan, sockdiag::TcpTables)], snap: &Snapshot) -> FxHashSet<u64> {
    let mut wanted: FxHashSet<u64> = FxHashSet::default();
    for (_, t) in tables {
        wanted.reserve(t.flagged.len() + t.listeners.len());
        wanted.extend(t.flagged.iter().map(|s| s.inode).filter(|&i| i != 0));
        wanted.extend(t.listeners.iter().map(|l| l.inode).filter(|&i| i != 0));
    }
    let peer_inode = |s: &crate::model::TcpSocket| match s.peer {
        Some(LocalPeer::Socket { inode, .. }) if inode != 0 => Some(inode),
        _ => None,
    };
    for s in &snap.idle {
        wanted.extend((s.inode != 0).then_some(s.inode));
        wanted.extend(peer_inode(s));
    }
    wanted.extend(snap.unix.iter().map(|s| s.inode).filter(|&i| i != 0));
    for (_, t) in tables {
        wanted.extend(t.flagged.iter().filter_map(peer_inode));
        if let Some(ports) = &t.ports {
            wanted.extend(ports.owner_inodes(OWNER_FLOOR));
        }
    }
    wanted
}

/// The TCP sockets processes hold in each `deferred` namespace, each once,
/// and its port range, from the BPF TCP pass; `None` if the pass failed
/// (the namespaces are then dumped).
fn held_sockets(
    scan: &mut BpfScan<'_>,
    deferred: &tables::Deferred,
) -> Option<rustc_hash::FxHashMap<crate::model::NetnsId, tables::HeldTcp>> {
    let mut held: rustc_hash::FxHashMap<crate::model::NetnsId, tables::HeldTcp> = deferred
        .ids()
        .map(|id| (id, tables::HeldTcp::default()))
        .collect();
    let mut seen = FxHashSet::default();
    let read = scan.iterators().tcp_sockets(|r| {
        if let Some(found) = held.get_mut(&crate::model::NetnsId(u64::from(r.netns))) {
            if seen.insert(r.socket.inode) {
                found.sockets.push(r.socket);
            }
            found.port_range = found.port_range.or(r.port_range);
        }
    });
    match read {
        Ok(()) => Some(held),
        Err(e) => {
            log::debug!("the TCP socket pass failed ({e}): deferred namespaces dumped");
            None
        }
    }
}

/// `--attribution bpf` and the iterators could not be used: no owner is
/// known, and the scan says why.
fn attribution_failed(snap: &mut Snapshot, e: bpf::BpfError) {
    snap.attribution = Attribution::Bpf;
    snap.errors.push(ScanError {
        stage: Stage::Bpf,
        message: e.to_string(),
    });
}

/// What a scan's attribution step is given.
struct Owners<'a, 'w> {
    backend: Backend<'a>,
    tasks: Option<Vec<bpf::TaskRecord>>,
    /// The pids in /proc, if listed (a walk lists them when not).
    pids: Option<&'a [u32]>,
    wanted: &'a Wanted<'w>,
}

/// How many failures of one kind are spelled out before they are summarised.
const MAX_LISTED_FAILURES: usize = 5;

/// Takes snapshots of one host.
#[derive(Debug, Clone)]
pub struct Collector {
    root: ProcRoot,
    threads: usize,
    sockets: Arc<dyn SocketSource>,
    /// ESTABLISHED sockets idle at least this long are looked at.
    idle_floor: Duration,
    attribution: Arc<Attributor>,
    /// Whether this collector takes one scan only (see
    /// [`attribution::ONE_SHOT_FLOOR`]).
    lone: bool,
    /// Whether each namespace's listen overflow counters are read: only
    /// the metrics export them.
    listen_counters: bool,
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
            idle_floor: crate::defaults::IDLE_AGE,
            attribution: Arc::new(Attributor::new(attribution::Mode::Auto)),
            lone: false,
            listen_counters: true,
        }
    }

    /// This collector with `other`'s attribution backend (its loaded BPF
    /// iterators) when both choose the same one.
    pub fn attributing_as(mut self, other: &Collector) -> Collector {
        if self.attribution.mode() == other.attribution.mode() {
            self.attribution = Arc::clone(&other.attribution);
        }
        self
    }

    /// A collector for one scan: `auto` attribution then loads the BPF
    /// iterators only on a host with many open files.
    pub fn lone(mut self) -> Collector {
        self.lone = true;
        self
    }

    /// A collector for a report, which shows no listen counters: they
    /// are not read (/proc/net/netstat in every namespace).
    pub fn reporting(mut self) -> Collector {
        self.listen_counters = false;
        self
    }

    /// Maps sockets to processes with this backend (see [`attribution`]).
    pub fn with_attribution(mut self, mode: attribution::Mode) -> Collector {
        self.attribution = Arc::new(Attributor::new(mode));
        self
    }

    /// Looks for ESTABLISHED sockets idle at least `floor` (the idle age).
    pub fn with_idle_floor(mut self, floor: Duration) -> Collector {
        self.idle_floor = floor;
        self
    }

    /// Takes sockets from another source (a recording, in tests). Its
    /// owners come from the /proc tree given (the recorded host's).
    pub fn with_sockets(mut self, source: Arc<dyn SocketSource>) -> Collector {
        self.sockets = source;
        self.with_attribution(attribution::Mode::Procfs)
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
        let started = Instant::now();
        let (backend, tasks) = self.begin_attribution(&snap, false);
        let tasks_took = started.elapsed();
        // The task pass lists every process: /proc is listed only without it.
        let pids = tasks.is_none().then(|| self.pids(&mut snap));
        let bpf = matches!(backend, Backend::Bpf(_) | Backend::Loading);
        // The owners are read after the dumps, never beside them: a socket
        // stays in CLOSE_WAIT until its last holder closes it, so a process
        // seen holding one after a dump found it in CLOSE_WAIT held it in
        // that state. Read before, a process that handed the socket on
        // before the peer closed is blamed for it (the BPF fd pass beside
        // the dumps took 19 % off a report's wall time at the medium load,
        // and the churn test counted 130 such blames in a minute).
        let (mut tables, namespaces, deferred) = self.tables(
            pids.as_deref().unwrap_or_default(),
            tasks.as_deref(),
            &mut snap,
            cache.as_deref_mut(),
            bpf,
            at.mono,
        );
        let dumps_took = started.elapsed() - tasks_took;
        let waited = Instant::now();
        let (mut backend, tasks) = match backend {
            Backend::Loading => self.begin_attribution(&snap, true),
            ready => (ready, tasks),
        };
        let waited = waited.elapsed();
        if !deferred.is_empty() {
            let held = match &mut backend {
                Backend::Bpf(scan) => held_sockets(scan, &deferred),
                _ => None,
            };
            let dumped =
                self.dumps()
                    .complete(deferred, held.as_ref(), &namespaces, &mut tables, &mut snap);
            if let Some(cache) = cache.as_deref_mut() {
                cache.remember_dumped_anyway(at.mono, &dumped);
            }
        }
        self.finish_tables(&mut tables, &mut snap, cache.as_deref_mut(), at.mono);
        let wanted = wanted(&tables, &snap);
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
        let walked = Instant::now();
        let owners = Owners {
            backend,
            tasks,
            pids: pids.as_deref(),
            wanted: &wanted,
        };
        self.attribute(owners, &mut snap, cache.as_deref_mut(), at.mono);
        log::debug!(
            "scan by {}: task pass {tasks_took:?}, dumps {dumps_took:?}, \
             then the BPF load and task pass {waited:?}, fd pass {:?}",
            snap.attribution.name(),
            walked.elapsed()
        );
        if snap.attribution == Attribution::Procfs
            && alive.is_some()
            && snap.processes.iter().any(|p| !p.dead.is_empty())
        {
            self.confirm_dead(&namespaces, &mut snap, cache.as_deref_mut());
        }
        if let Some(cache) = cache {
            cache.keep_units_of(&snap.processes);
        }
        snap.duration = at.mono.elapsed();
        snap
    }

    /// The backend of this scan and, with BPF, the task pass (every
    /// process, its namespace among the rest). Without `wait`, iterators
    /// still loading leave the backend [`Backend::Loading`].
    fn begin_attribution(
        &self,
        snap: &Snapshot,
        wait: bool,
    ) -> (Backend<'_>, Option<Vec<bpf::TaskRecord>>) {
        let lone = self.lone.then_some(snap.host.open_fds);
        let mut backend = self.attribution.backend(&self.root, lone, wait);
        let tasks = match &mut backend {
            Backend::Bpf(scan) => {
                let me = scan.me;
                match scan
                    .iterators()
                    .tasks((me.pid, me.start_time), me.ticks_per_second)
                {
                    Ok(tasks) => Some(tasks),
                    Err(e) => {
                        backend = self.attribution.unavailable(e);
                        None
                    }
                }
            }
            _ => None,
        };
        (backend, tasks)
    }

    /// A socket made after the all-states dump is in none of its tables
    /// even if it connected before the walk read it: the namespaces are
    /// dumped again, and a socket is dead only if it is in no table of that
    /// dump either and its fd still holds it after (so it existed during
    /// the dump). Only when the walk found dead sockets, at most once per
    /// all-states dump. If the second dump fails the first one's verdict
    /// stands.
    fn confirm_dead(
        &self,
        namespaces: &[netns::Namespace],
        snap: &mut Snapshot,
        cache: Option<&mut ScanCache>,
    ) {
        let candidates: FxHashSet<u64> = snap
            .processes
            .iter()
            .flat_map(|p| p.dead.iter().map(|s| s.inode))
            .collect();
        let Some(alive) = self.dumps().found_again(namespaces, &candidates) else {
            log::debug!("the second all-states dump failed: dead sockets unconfirmed");
            return;
        };
        let mut confirmed = FxHashSet::default();
        for p in &mut snap.processes {
            p.dead.retain(|s| {
                !alive.contains(&s.inode) && self.root.still_holds(p.key.pid, s.fd, s.inode)
            });
            confirmed.extend(p.dead.iter().map(|s| s.inode));
        }
        if let Some(cache) = cache {
            cache.keep_dead(&confirmed);
        }
    }

    fn dumps(&self) -> tables::Dumps<'_> {
        tables::Dumps {
            source: self.sockets.as_ref(),
            root: &self.root,
            threads: self.threads,
            listen: self.listen_counters,
        }
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

    /// Every namespace's TCP tables but those `deferred` (see
    /// [`tables::Dumps::dump`]); a cached scan counts every state only when
    /// its counts are due, and takes the rest from the last count
    /// ([`finish_tables`](Self::finish_tables)).
    fn tables(
        &self,
        pids: &[u32],
        tasks: Option<&[bpf::TaskRecord]>,
        snap: &mut Snapshot,
        cache: Option<&mut ScanCache>,
        bpf: bool,
        now: Instant,
    ) -> (
        Vec<(NetnsScan, sockdiag::TcpTables)>,
        Vec<netns::Namespace>,
        tables::Deferred,
    ) {
        let counted_recently = cache
            .as_deref()
            .map(|c| c.counted_recently(now))
            .unwrap_or_default();
        let idle = match cache.as_deref() {
            Some(c) => c.idle_due(now).then_some(self.idle_floor),
            None => Some(self.idle_floor),
        };
        let dumped_anyway = cache
            .as_deref()
            .map(|c| c.dumped_anyway(now))
            .unwrap_or_default();
        let defer = match bpf {
            true => tables::Defer::Unless(&dumped_anyway),
            false => tables::Defer::Never,
        };
        let dumps = self.dumps();
        let known = cache.map(ScanCache::netns);
        let processes = match tasks {
            Some(tasks) => tables::Processes::Tasks(tasks),
            None => tables::Processes::Pids(pids, known),
        };
        dumps.dump(processes, snap, &counted_recently, idle, defer, now)
    }

    /// The local peers, the idle connections, and (a cached scan) the
    /// counts carried from the last count, once every table is in.
    fn finish_tables(
        &self,
        tables: &mut [(NetnsScan, sockdiag::TcpTables)],
        snap: &mut Snapshot,
        mut cache: Option<&mut ScanCache>,
        now: Instant,
    ) {
        for (_, t) in tables.iter_mut() {
            peers::resolve(t);
        }
        peers::resolve_across(tables);
        self.idle(tables, snap, cache.as_deref_mut(), now);
        if let Some(cache) = cache {
            let scans = tables
                .iter_mut()
                .map(|(scan, t)| (scan.id, &mut scan.states, t.counted));
            cache.merge_counts(now, scans, sockdiag::EVERY_SCAN_STATES);
        }
    }

    /// The idle connections into `snap`: this scan's, if it looked (and the
    /// cache remembers them), else the cache's last.
    fn idle(
        &self,
        tables: &mut [(NetnsScan, sockdiag::TcpTables)],
        snap: &mut Snapshot,
        cache: Option<&mut ScanCache>,
        now: Instant,
    ) {
        let looked = tables.iter().any(|(_, t)| t.idle.is_some());
        for (_, t) in tables.iter_mut() {
            if let Some(idle) = t.idle.as_mut() {
                snap.idle.append(&mut idle.candidates);
            }
        }
        snap.idle_check = match cache {
            Some(cache) if looked => {
                cache.remember_idle(now, &snap.idle);
                Freshness::Fresh
            }
            Some(cache) => match cache.idle() {
                Some(last) => {
                    snap.idle = last.to_vec();
                    Freshness::Carried
                }
                None => Freshness::Unknown,
            },
            None if looked => Freshness::Fresh,
            None => Freshness::Unknown,
        };
    }

    /// Names the owners of `owners.wanted` by the scan's backend; a BPF
    /// read that fails falls back to the /proc walk (or, forced, fails).
    fn attribute(
        &self,
        owners: Owners<'_, '_>,
        snap: &mut Snapshot,
        cache: Option<&mut ScanCache>,
        now: Instant,
    ) {
        let Owners {
            backend,
            tasks,
            pids,
            wanted,
        } = owners;
        let walk = |snap: &mut Snapshot| {
            let listed;
            let pids = match pids {
                Some(pids) => pids,
                None => {
                    listed = self.pids(snap);
                    &listed
                }
            };
            self.walk(pids, wanted, snap, cache, now);
        };
        match (backend, tasks) {
            (Backend::Bpf(mut scan), Some(tasks)) => {
                if let Err(e) = self.walk_bpf(&mut scan, &tasks, wanted, snap) {
                    drop(scan);
                    match self.attribution.unavailable(e) {
                        Backend::Failed(e) => attribution_failed(snap, e),
                        _ => walk(snap),
                    }
                }
            }
            (Backend::Failed(e), _) => attribution_failed(snap, e),
            _ => walk(snap),
        }
    }

    /// The pids in /proc; a listing that fails is a scan error (and no pid).
    fn pids(&self, snap: &mut Snapshot) -> Vec<u32> {
        match self.root.pids() {
            Ok(pids) => pids,
            Err(e) => {
                snap.errors.push(ScanError {
                    stage: Stage::Procfs,
                    message: e.to_string(),
                });
                Vec::new()
            }
        }
    }

    /// The walk from the BPF iterators into `snap`: every fd of every
    /// process, read in the kernel. Dead sockets are seen by their state
    /// (CLOSE), so every such walk looks for them.
    fn walk_bpf(
        &self,
        scan: &mut BpfScan<'_>,
        tasks: &[bpf::TaskRecord],
        wanted: &Wanted<'_>,
        snap: &mut Snapshot,
    ) -> Result<(), bpf::BpfError> {
        let mut builder = bpf::Builder::new(tasks, wanted.sockets, scan.me.ticks_per_second);
        scan.iterators().fds(|r| builder.fd(r))?;
        let walk = builder.finish(&self.root);
        snap.attribution = Attribution::Bpf;
        snap.dead = Freshness::Fresh;
        self.take_walk(walk, snap);
        Ok(())
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
                    Freshness::Fresh
                } else {
                    Freshness::Unknown
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
        self.take_walk(walk, snap);
    }

    /// A walk's findings into `snap`; failures logged.
    fn take_walk(&self, walk: procfs::Walk, snap: &mut Snapshot) {
        snap.walk = walk.stats;
        snap.unread.fd_stat = walk.stats.fd_stat_failed;
        snap.processes = walk.processes;
        snap.skipped = walk.skipped;
        snap.denied.fds = walk.denied;
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

    /// Examines, for the report, the processes `snap` could not read (its
    /// `denied` pids): why each was refused, into `snap.unreadable`.
    pub fn examine_unreadable(&self, snap: &mut Snapshot) {
        snap.unreadable = Some(
            self.root
                .examine_unreadable(&snap.denied.fds, &snap.denied.netns),
        );
    }

    /// Reads what a report shows of each process (exe, cmdline, unit,
    /// netns), in order; `None` for one that could not be described.
    pub fn describe_all(&self, keys: &[Option<ProcessKey>]) -> Vec<Option<ProcessDetails>> {
        self.root.describe_all(keys, self.threads)
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

#[cfg(test)]
mod lookup_tests;
