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
use super::procfs::ProcRoot;
use super::sockdiag::{FamilyError, TcpTables, Wants};
use super::source::SocketSource;
use crate::model::{Freshness, NetnsId, NetnsScan, ScanError, Snapshot, Stage, UnscannedNetns};

/// The TCP tables of one namespace, or why it could not be dumped.
type DumpResult = Result<(TcpTables, Vec<FamilyError>), netns::Unscanned>;

/// What dumping every namespace needs.
pub(super) struct Dumps<'a> {
    pub(super) source: &'a dyn SocketSource,
    pub(super) root: &'a ProcRoot,
    pub(super) threads: usize,
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
    pub(super) fn dump(
        &self,
        processes: Processes<'_>,
        snap: &mut Snapshot,
        counted_recently: &FxHashSet<NetnsId>,
        idle: Option<Duration>,
        now: Instant,
    ) -> (Vec<(NetnsScan, TcpTables)>, Vec<Namespace>) {
        let counts = |id: NetnsId| Wants {
            counts: !counted_recently.contains(&id),
            range: None,
            idle,
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
            let result = Ok(self.source.tables(own, counts(own)));
            record(&mut out, snap, own, 0, result);
        }
        let results = self.on_pool(&namespaces, |ns| {
            if ns.id == own {
                Ok(self.source.tables(own, counts(own)))
            } else {
                netns::run_in(ns, || self.source.tables(ns.id, counts(ns.id)))
            }
        });
        for (ns, result) in namespaces.iter().zip(results) {
            record(&mut out, snap, ns.id, ns.processes, result);
        }
        (out, namespaces)
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
        let results = self.on_pool(namespaces, |ns| {
            if ns.id == own {
                Ok(self.source.found_among(own, candidates))
            } else {
                netns::run_in(ns, || self.source.found_among(ns.id, candidates))
            }
        });
        for r in results {
            found.extend(r.ok().flatten()?);
        }
        Some(found)
    }

    /// Runs `dump` for each namespace, on up to `threads` threads. Each
    /// dump walks the kernel's TCP hash table, which namespaces share unless
    /// net.ipv4.tcp_child_ehash_entries gives them their own: with many
    /// namespaces that is most of the cost (measured: benches/netns.sh).
    fn on_pool<R: Send>(
        &self,
        namespaces: &[Namespace],
        dump: impl Fn(&Namespace) -> Result<R, netns::Unscanned> + Sync,
    ) -> Vec<Result<R, netns::Unscanned>> {
        let results: Vec<Mutex<Option<Result<R, netns::Unscanned>>>> =
            namespaces.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let dump_next = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(ns) = namespaces.get(i) else { break };
            let result = dump(ns);
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
