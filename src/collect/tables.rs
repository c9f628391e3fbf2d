//! The TCP tables of every network namespace: found from the processes and
//! /run/netns, each dumped from a thread inside it (several namespaces on a
//! pool of threads), the ones that could not be dumped recorded with the
//! reason. None is skipped silently.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustc_hash::FxHashSet;

use super::cache::PidNamespaces;
use super::netns::{self, Namespace};
use super::procfs::parse::TcpSockstat;
use super::procfs::ProcRoot;
use super::sockdiag::lookup::Exact;
use super::sockdiag::{FamilyError, TcpTables, Wants};
use super::source::SocketSource;
use crate::model::{
    Freshness, NetnsId, NetnsScan, PortRange, ScanError, Snapshot, Stage, UnscannedNetns,
};

/// The TCP tables of one namespace, or why it could not be dumped.
type DumpResult = Result<(TcpTables, Vec<FamilyError>), netns::Unscanned>;

/// A namespace with at most this many sockets in its TCP tables, none in
/// TIME_WAIT, waits for the fd pass to be read by lookups (see
/// [`Dumps::dump`]). A lookup costs about what a dump spends on one socket,
/// so past a few thousand sockets the walk the lookups save is a small part
/// of the dump: such a namespace is dumped at once, beside the BPF load.
pub(super) const LOOKUP_MAX: u64 = 4096;

/// What the first pass over the namespaces left for after the fd pass:
/// the namespaces to read by lookups, each with what its dumps want.
#[derive(Debug, Default)]
pub(super) struct Deferred {
    namespaces: Vec<Namespace>,
    wants: Vec<Wants>,
    own: NetnsId,
}

impl Deferred {
    /// The namespaces left, by id.
    pub(super) fn ids(&self) -> impl Iterator<Item = NetnsId> + '_ {
        self.namespaces.iter().map(|ns| ns.id)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }
}

/// Which namespaces the first pass may leave for lookups.
#[derive(Clone, Copy, Debug)]
pub(super) enum Defer<'a> {
    /// None: the scan has no BPF fd pass.
    Never,
    /// Any small one but these (their lookups fell back to a dump lately).
    Unless(&'a FxHashSet<NetnsId>),
}

/// What the first pass did with one namespace.
enum First {
    Dumped(Box<(TcpTables, Vec<FamilyError>)>),
    Deferred,
}

/// What the BPF TCP pass found of one deferred namespace: the TCP sockets
/// processes hold there, and its ephemeral port range when the kernel's
/// layout let the program read it (then /proc/sys is not).
#[derive(Debug, Default)]
pub(super) struct HeldTcp {
    pub(super) sockets: Vec<Exact>,
    pub(super) port_range: Option<PortRange>,
}

/// What dumping every namespace needs.
pub(super) struct Dumps<'a> {
    pub(super) source: &'a dyn SocketSource,
    pub(super) root: &'a ProcRoot,
    pub(super) threads: usize,
    /// Whether each namespace's listen counters are read (see
    /// [`Wants::listen`]).
    pub(super) listen: bool,
}

/// The processes whose namespaces are dumped, and what is known of them.
pub(super) enum Processes<'a> {
    /// Pids from /proc, each one's namespace read from /proc/PID/ns/net
    /// unless the agent's cache has it.
    Pids(&'a [u32], Option<&'a mut PidNamespaces>),
    /// The BPF task pass, which read every process's namespace.
    Tasks(&'a [crate::collect::bpf::TaskRecord]),
}

impl Dumps<'_> {
    /// Dumps every namespace the source can reach: its own directly, the
    /// others from a thread that has entered each. `counted_recently` are
    /// the namespaces whose all-states counts a cached scan reuses.
    /// Namespaces that cannot be entered are recorded in `snap` with the
    /// reason, as are dump errors.
    ///
    /// With [`Defer::Unless`] (the scan has the BPF fd pass), a namespace
    /// not among those it names, with no TIME_WAIT and at most
    /// [`LOOKUP_MAX`] sockets, is left in the returned
    /// [`Deferred`] for [`complete`](Self::complete): after the fd pass has
    /// named the sockets held in it, they may be all it has, and lookups of
    /// them cost far less than a dump's walk of the shared hash.
    pub(super) fn dump(
        &self,
        processes: Processes<'_>,
        snap: &mut Snapshot,
        counted_recently: &FxHashSet<NetnsId>,
        idle: Option<Duration>,
        defer: Defer<'_>,
        now: Instant,
    ) -> (Vec<(NetnsScan, TcpTables)>, Vec<Namespace>, Deferred) {
        let counts = |id: NetnsId| Wants {
            counts: !counted_recently.contains(&id),
            range: None,
            idle,
            listen: self.listen,
        };
        let own = match self.source.namespace() {
            Ok(id) => id,
            Err(e) => {
                snap.errors.push(ScanError {
                    stage: Stage::Sockdiag,
                    message: format!("cannot identify the network namespace: {e}"),
                });
                NetnsId(0)
            }
        };
        let discovery = if self.source.every_namespace() {
            let run_netns = Some(std::path::Path::new(netns::RUN_NETNS));
            match processes {
                Processes::Tasks(tasks) => netns::discover_known(
                    self.root,
                    tasks.iter().map(|t| (t.tgid, u64::from(t.netns))),
                    run_netns,
                ),
                Processes::Pids(pids, known) => {
                    netns::discover(self.root, pids, run_netns, known, now)
                }
            }
        } else {
            netns::Discovery::default()
        };
        snap.netns_unknown_processes = discovery.unreadable_processes;
        snap.denied.netns = discovery.unreadable_pids;
        snap.unread.run_netns = discovery.run_netns_error.clone();
        let namespaces = discovery.namespaces;
        // Every namespace's UNIX dump must answer for the check to be fresh.
        snap.unix_check = Freshness::Fresh;
        let mut out = Vec::with_capacity(namespaces.len().max(1));
        if !namespaces.iter().any(|ns| ns.id == own) {
            let result = Ok(self.source.tables(own, counts(own), None));
            record(&mut out, snap, own, 0, result);
        }
        let first = |id: NetnsId| {
            let small = |c: TcpSockstat| c.tw == 0 && c.inuse + c.inuse6 <= LOOKUP_MAX;
            let deferrable = matches!(defer, Defer::Unless(dumped) if !dumped.contains(&id));
            if deferrable && self.source.tcp_counters().is_some_and(small) {
                return First::Deferred;
            }
            First::Dumped(Box::new(self.source.tables(id, counts(id), None)))
        };
        let results = self.in_each(&namespaces, own, |_, ns| first(ns.id));
        let mut deferred = Deferred {
            own,
            ..Deferred::default()
        };
        for (ns, result) in namespaces.iter().zip(results) {
            let result = match result {
                Ok(First::Deferred) => {
                    deferred.namespaces.push(ns.clone());
                    deferred.wants.push(counts(ns.id));
                    continue;
                }
                Ok(First::Dumped(tables)) => Ok(*tables),
                Err(e) => Err(e),
            };
            record(&mut out, snap, ns.id, ns.processes, result);
        }
        (out, namespaces, deferred)
    }

    /// Reads the tables of the `deferred` namespaces into `out`: by lookups
    /// of the sockets `held` in each (by namespace, from the fd pass) where
    /// its counters show those are all it has, else by dumps (and all by
    /// dumps without `held`: the fd pass did not run). `out` is then in
    /// the order of `namespaces`. Returns the namespaces dumped though the
    /// fd pass ran.
    pub(super) fn complete(
        &self,
        deferred: Deferred,
        held: Option<&rustc_hash::FxHashMap<NetnsId, HeldTcp>>,
        namespaces: &[Namespace],
        out: &mut Vec<(NetnsScan, TcpTables)>,
        snap: &mut Snapshot,
    ) -> Vec<NetnsId> {
        let Deferred {
            namespaces: left,
            wants,
            own,
        } = deferred;
        let read = |i: usize| {
            let id = left[i].id;
            let found = held.map(|h| h.get(&id));
            let sockets = found.map(|f| f.map_or(&[][..], |f| f.sockets.as_slice()));
            let wants = Wants {
                range: found.flatten().and_then(|f| f.port_range),
                ..wants[i]
            };
            self.source.tables(id, wants, sockets)
        };
        let results = self.in_each(&left, own, |i, _| read(i));
        let mut dumped = Vec::new();
        for (ns, result) in left.iter().zip(results) {
            if held.is_some() && matches!(&result, Ok((t, _)) if !t.looked_up) {
                dumped.push(ns.id);
            }
            record(out, snap, ns.id, ns.processes, result);
        }
        let order: rustc_hash::FxHashMap<NetnsId, usize> = namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| (ns.id, i + 1))
            .collect();
        out.sort_by_key(|(scan, _)| order.get(&scan.id).copied().unwrap_or(0));
        dumped
    }

    /// Which of `candidates` are in a TCP table of `namespaces` (or of the
    /// source's own), dumped again: `None` if one could not be.
    pub(super) fn found_again(
        &self,
        namespaces: &[Namespace],
        candidates: &FxHashSet<u64>,
    ) -> Option<FxHashSet<u64>> {
        let own = self.source.namespace().ok()?;
        let mut found = FxHashSet::default();
        if !namespaces.iter().any(|ns| ns.id == own) {
            found.extend(self.source.found_among(own, candidates)?);
        }
        let results = self.in_each(namespaces, own, |_, ns| {
            self.source.found_among(ns.id, candidates)
        });
        for r in results {
            found.extend(r.ok().flatten()?);
        }
        Some(found)
    }

    /// Runs `f` inside each namespace: the source's `own` on the calling
    /// thread, the others at the same time on up to `threads` threads made
    /// for them, each entering one namespace after another (setns; the
    /// threads end with the last). The calling thread is not counted: it
    /// cannot leave its namespace to help, so with one worker fewer the
    /// others would go one at a time once it is done (a 300-namespace
    /// report on 2 CPUs took twice the wall time). Each dump walks the
    /// kernel's TCP hash table, which namespaces share unless
    /// net.ipv4.tcp_child_ehash_entries gives them their own: with many
    /// namespaces that is most of the cost (measured: benches/netns.sh),
    /// which is why a few are dumped at a time.
    fn in_each<R: Send>(
        &self,
        namespaces: &[Namespace],
        own: NetnsId,
        f: impl Fn(usize, &Namespace) -> R + Sync,
    ) -> Vec<Result<R, netns::Unscanned>> {
        let results: Vec<Mutex<Option<Result<R, netns::Unscanned>>>> =
            namespaces.iter().map(|_| Mutex::new(None)).collect();
        let put = |i: usize, result| {
            if let Ok(mut slot) = results[i].lock() {
                *slot = Some(result);
            }
        };
        let (own_at, others): (Vec<usize>, Vec<usize>) =
            (0..namespaces.len()).partition(|&i| namespaces[i].id == own);
        let next = AtomicUsize::new(0);
        let work = || {
            while let Some(&i) = others.get(next.fetch_add(1, Ordering::Relaxed)) {
                let ns = &namespaces[i];
                put(i, netns::enter(ns).map(|()| f(i, ns)));
            }
        };
        // The calling thread takes the source's own namespace, beside the
        // workers: no setns, and no per-thread allocator arena left holding
        // its dump's memory (most hosts have that namespace alone).
        std::thread::scope(|s| {
            for _ in 0..self.threads.min(others.len()) {
                s.spawn(work);
            }
            for &i in &own_at {
                put(i, Ok(f(i, &namespaces[i])));
            }
        });
        results
            .into_iter()
            .map(|slot| {
                slot.into_inner().ok().flatten().unwrap_or_else(|| {
                    Err(netns::Unscanned::Failed(
                        "the dump thread failed".to_string(),
                    ))
                })
            })
            .collect()
    }
}

/// Keeps one namespace's tables in `out`, or records in `snap` why it has
/// none; dump errors of a family become scan errors.
fn record(
    out: &mut Vec<(NetnsScan, TcpTables)>,
    snap: &mut Snapshot,
    id: NetnsId,
    processes: u64,
    result: DumpResult,
) {
    match result {
        Ok((mut tables, errors)) => {
            if let Some(e) = tables.port_range_error.take() {
                log::debug!("netns {id}: {e}");
                snap.unread.port_range += 1;
            }
            if let Some(e) = tables.unix_error.take() {
                snap.errors.push(ScanError {
                    stage: Stage::Sockdiag,
                    message: format!("netns {id}: UNIX dump: {e}"),
                });
            }
            if !tables.unix.diag_available {
                snap.unix_check = Freshness::Unknown;
            }
            snap.unix_connected += tables.unix.connected;
            snap.unix.append(&mut tables.unix.peer_closed);
            let listen = match tables.listen.take() {
                Some(Ok(c)) => Some(c),
                Some(Err(e)) => {
                    log::debug!("netns {id}: {e}");
                    snap.unread.netstat += 1;
                    None
                }
                None => None,
            };
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
                ports: tables.ports.take().map(|p| p.finish()),
                listen_overflows: listen.map(|c| c.overflows),
                listen_drops: listen.map(|c| c.drops),
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
    }
}
