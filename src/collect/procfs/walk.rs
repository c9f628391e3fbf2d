//! The walk driver: every thread-group leader, read on several threads that
//! take PIDs from a shared counter, their parts merged in PID order.

use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustc_hash::{FxHashMap, FxHashSet};

use super::walk_cache::{CachedFds, Update};
use super::{ProcError, ProcRoot, Skip};
use crate::model::{ProcessInfo, ProcessKey, Skipped, WalkStats};

/// statfs magic of procfs: only there does `st_size` of /proc/PID/fd count fds.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// What a walk found.
#[derive(Debug, Default)]
pub struct Walk {
    pub processes: Vec<ProcessInfo>,
    pub skipped: Skipped,
    /// Processes that failed for an unexpected reason, with the reason.
    pub failed: Vec<(u32, String)>,
    /// The processes counted in `skipped.permission_denied`, by pid.
    pub denied: Vec<u32>,
    /// What the walk cost, and how much a [`WalkCache`](super::WalkCache)
    /// saved.
    pub stats: WalkStats,
    /// What the cache keeps of each process read (parallel to `processes`
    /// until merged).
    pub(super) updates: Vec<(ProcessKey, Update)>,
}

/// What every worker of one walk shares.
pub(super) struct WalkContext<'a> {
    pub(super) root: &'a OwnedFd,
    pub(super) wanted: &'a FxHashSet<u64>,
    pub(super) fd_count_from_size: bool,
    /// The last walk's tables, for processes whose fd count is unchanged.
    pub(super) prev: Option<&'a FxHashMap<ProcessKey, CachedFds>>,
    /// The last walk's tables, whatever this walk reuses: their dead
    /// sockets stand when this walk cannot check them.
    pub(super) before: Option<&'a FxHashMap<ProcessKey, CachedFds>>,
    /// Whether to keep what the cache needs of each table read.
    pub(super) record: bool,
    /// The inode of every socket in every namespace's TCP tables, when the
    /// scan has them: a TCP socket held but not among them is dead.
    pub(super) alive: Option<&'a FxHashSet<u64>>,
}

/// What a walk is given of the last one.
#[derive(Clone, Copy)]
pub(super) enum Memo<'a> {
    /// Nothing: read every table, remember nothing.
    Cold,
    /// Read every table; remember them; carry the last dead sockets.
    Full(&'a FxHashMap<ProcessKey, CachedFds>),
    /// Reuse the tables whose fd count is unchanged; remember them all.
    Reuse(&'a FxHashMap<ProcessKey, CachedFds>),
}

/// What a walk looks for.
#[derive(Clone, Copy)]
pub struct Wanted<'a> {
    /// Socket inodes whose holders are named (flagged sockets, listeners).
    pub sockets: &'a FxHashSet<u64>,
    /// Every TCP socket inode of every namespace, when the scan has them:
    /// the walk then looks for dead sockets (held, in no table).
    pub alive: Option<&'a FxHashSet<u64>>,
}

impl<'a> Wanted<'a> {
    /// Only the holders of `sockets`.
    pub fn sockets(sockets: &'a FxHashSet<u64>) -> Wanted<'a> {
        Wanted {
            sockets,
            alive: None,
        }
    }
}

/// Buffers reused for every process a worker reads.
pub(super) struct Scratch {
    pub(super) dirents: Vec<MaybeUninit<u8>>,
    pub(super) link: Vec<u8>,
    pub(super) file: Vec<u8>,
}

impl ProcRoot {
    /// Reads every process: identity, fd count and limit, and which of the
    /// `wanted` socket inodes it holds (with their fd numbers).
    pub fn walk(
        &self,
        pids: &[u32],
        wanted: &FxHashSet<u64>,
        threads: usize,
    ) -> Result<Walk, ProcError> {
        self.walk_for(pids, &Wanted::sockets(wanted), threads)
    }

    /// [`walk`](Self::walk), also looking for dead sockets when `wanted`
    /// carries the scan's live TCP inodes.
    pub fn walk_for(
        &self,
        pids: &[u32],
        wanted: &Wanted<'_>,
        threads: usize,
    ) -> Result<Walk, ProcError> {
        self.walk_with(pids, wanted, threads, Memo::Cold)
    }

    /// A walk on up to `threads` threads, with what a cached walk remembers
    /// (see [`Memo`]).
    pub(super) fn walk_with(
        &self,
        pids: &[u32],
        wanted: &Wanted<'_>,
        threads: usize,
        memo: Memo<'_>,
    ) -> Result<Walk, ProcError> {
        let (prev, before, record) = match memo {
            Memo::Cold => (None, None, false),
            Memo::Full(m) => (None, Some(m), true),
            Memo::Reuse(m) => (Some(m), Some(m), true),
        };
        let root = self.open_root()?;
        let fd_count_from_size = rustix::fs::fstatfs(&root)
            // f_type's width differs across architectures.
            .map(|s| {
                #[allow(clippy::unnecessary_cast)]
                let f_type = s.f_type as i64;
                f_type == PROC_SUPER_MAGIC
            })
            .unwrap_or(false);
        let threads = threads.clamp(1, 64).min(pids.len() / 32 + 1);
        let next = AtomicUsize::new(0);
        let ctx = WalkContext {
            root: &root,
            wanted: wanted.sockets,
            alive: wanted.alive,
            fd_count_from_size,
            // Without st_size there is no cheap sign of change.
            prev: prev.filter(|_| fd_count_from_size),
            before: before.filter(|_| fd_count_from_size),
            record: record && fd_count_from_size,
        };
        let mut parts: Vec<Walk> = Vec::with_capacity(threads);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| s.spawn(|| ctx.run(pids, &next)))
                .collect();
            for w in workers {
                match w.join() {
                    Ok(part) => parts.push(part),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        });
        Ok(merge(parts, ctx.prev.is_none()))
    }
}

/// The workers' parts as one walk, in PID order.
fn merge(parts: Vec<Walk>, full: bool) -> Walk {
    let mut walk = Walk {
        stats: WalkStats {
            full,
            ..WalkStats::default()
        },
        ..Walk::default()
    };
    for mut part in parts {
        walk.processes.append(&mut part.processes);
        walk.updates.append(&mut part.updates);
        walk.skipped.vanished += part.skipped.vanished;
        walk.skipped.permission_denied += part.skipped.permission_denied;
        walk.failed.append(&mut part.failed);
        walk.denied.append(&mut part.denied);
        walk.stats.links_read += part.stats.links_read;
        walk.stats.processes_reused += part.stats.processes_reused;
        walk.stats.fd_stat_failed += part.stats.fd_stat_failed;
    }
    walk.processes.sort_unstable_by_key(|p| p.key.pid);
    walk.failed.sort();
    walk.denied.sort_unstable();
    walk
}

impl WalkContext<'_> {
    /// One worker: reads processes until the PIDs run out.
    fn run(&self, pids: &[u32], next: &AtomicUsize) -> Walk {
        let mut scratch = Scratch {
            dirents: vec![MaybeUninit::uninit(); 32 * 1024],
            link: vec![0; 4096],
            file: Vec::with_capacity(4096),
        };
        let mut walk = Walk::default();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(&pid) = pids.get(i) else { break };
            match self.process(pid, &mut scratch, &mut walk.stats) {
                Ok((p, update)) => {
                    if !p.fds_walked {
                        walk.skipped.permission_denied += 1;
                        walk.denied.push(pid);
                    }
                    if self.record {
                        walk.updates.push((p.key, update));
                    }
                    walk.processes.push(p);
                }
                Err(Skip::Vanished) => walk.skipped.vanished += 1,
                Err(Skip::PermissionDenied) => {
                    walk.skipped.permission_denied += 1;
                    walk.denied.push(pid);
                }
                Err(Skip::Failed(why)) => walk.failed.push((pid, why)),
            }
        }
        walk
    }
}
