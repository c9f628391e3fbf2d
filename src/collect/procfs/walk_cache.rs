//! A cached walk: what a walk remembers of each fd table for the next one,
//! and the rules for trusting it. (When the walk must be full regardless is
//! the scan cache's rule: `collect::cache`.)

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use rustc_hash::{FxHashMap, FxHashSet};
use rustix::fs::AtFlags;

use super::fds::is_tcp;
use super::fds::Table;
use super::parse::{self, FdTarget};
use super::read::fd_name;
use super::walk::{Memo, Walk, WalkContext, Wanted};
use super::{ProcError, ProcRoot};
use crate::model::{FdStats, HeldSocket, ProcessInfo, ProcessKey, WalkStats};

/// What a walk remembers of each process's fd table for the next one.
///
/// A process whose fd count (`st_size` of /proc/PID/fd, one `fstat`) has not
/// changed is not walked again: its breakdown and socket fds are taken from
/// here. Every cached socket the scan wants (flagged, or a listener) is
/// verified with one `readlinkat` of its cached fd at every scan, so no
/// socket is blamed on a process that no longer holds it, even one it handed
/// to a child before swapping the fd. Deleted files are re-`fstatat`ed (their
/// size changes). If a verification fails the process is walked again. A
/// flagged socket whose owner the cache cannot place in two scans running (an
/// fd swapped under an unchanged count) makes the whole walk start from
/// scratch; so does the periodic full walk the scan cache asks for.
#[derive(Debug, Default)]
pub struct WalkCache {
    root: Option<PathBuf>,
    entries: FxHashMap<ProcessKey, CachedFds>,
    /// Wanted inodes that the last full walk found no owner for.
    accepted: FxHashSet<u64>,
    /// Wanted inodes the last cached walk found no owner for (and a full
    /// walk had not missed either): if still missing, a full walk follows.
    pending: FxHashSet<u64>,
}

impl WalkCache {
    /// Processes remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keeps of each table's dead sockets only those `confirmed`.
    pub(crate) fn keep_dead(&mut self, confirmed: &FxHashSet<u64>) {
        for c in self.entries.values_mut() {
            c.dead.retain(|(inode, _)| confirmed.contains(inode));
        }
    }
}

/// One process's fd table as last walked.
#[derive(Debug, Clone, Default)]
pub(super) struct CachedFds {
    /// `st_size` of /proc/PID/fd when walked.
    pub(super) size: i64,
    /// The breakdown (open and limit are read every scan).
    pub(super) stats: FdStats,
    /// Every socket fd: (inode, fd), in fd order.
    pub(super) sockets: Vec<(u64, u32)>,
    /// Deleted files: fd and path.
    pub(super) deleted: Vec<(u32, String)>,
    /// Dead sockets (TCP, in no table) at the last check: (inode, fd).
    pub(super) dead: Vec<(u64, u32)>,
    /// Links ending in " (deleted)" that could not be stat-ed when walked.
    pub(super) unstated: u64,
}

/// What the cache keeps of one process after a walk.
#[derive(Debug)]
pub(super) enum Update {
    /// Nothing to remember (fds unreadable, or not procfs).
    None,
    /// The cached table still holds (its wanted sockets verified); with
    /// its dead sockets as checked again by this walk, if it checked.
    Reused(Option<Vec<(u64, u32)>>),
    Fresh(CachedFds),
}

impl ProcRoot {
    /// [`walk`](Self::walk), reading only what changed since the walk that
    /// filled `cache` (see [`WalkCache`]), or every table when `full`. The
    /// result is the same as a cold walk's but for what the cache's rules
    /// accept as stale.
    pub fn walk_cached(
        &self,
        pids: &[u32],
        wanted: &Wanted<'_>,
        threads: usize,
        cache: &mut WalkCache,
        full: bool,
    ) -> Result<Walk, ProcError> {
        if cache.root.as_deref() != Some(self.path.as_path()) {
            *cache = WalkCache {
                root: Some(self.path.clone()),
                ..WalkCache::default()
            };
        }
        let prev = std::mem::take(&mut cache.entries);
        let mut walk = if full {
            self.walk_with(pids, wanted, threads, Memo::Full(&prev))?
        } else {
            self.walk_from(&prev, pids, wanted, threads, cache)?
        };
        if walk.stats.full {
            cache.accepted = unfound(wanted.sockets, &walk.processes);
            cache.pending.clear();
        }
        cache.entries = remember(prev, std::mem::take(&mut walk.updates));
        Ok(walk)
    }

    /// A walk from the cached tables `prev`, followed by a full one if a
    /// wanted socket has stayed without an owner for two scans.
    fn walk_from(
        &self,
        prev: &FxHashMap<ProcessKey, CachedFds>,
        pids: &[u32],
        wanted: &Wanted<'_>,
        threads: usize,
        cache: &mut WalkCache,
    ) -> Result<Walk, ProcError> {
        let walk = self.walk_with(pids, wanted, threads, Memo::Reuse(prev))?;
        let unfound = unfound(wanted.sockets, &walk.processes);
        // Owners not found: those a full walk could not find either are
        // held where /proc does not show them (or by unreadable
        // processes). Others may sit under an fd swapped without a change
        // of count, or may have been closed since the dump (a socket
        // that lived milliseconds). Only one still missing at the next
        // scan is looked for with a full walk: closed ones are gone by
        // then, and a busy host does not pay a full walk for each.
        cache.accepted.retain(|i| unfound.contains(i));
        let missing: FxHashSet<u64> = unfound
            .into_iter()
            .filter(|i| !cache.accepted.contains(i))
            .collect();
        if missing.iter().any(|i| cache.pending.contains(i)) {
            log::debug!("a flagged socket has no cached owner: full walk");
            let links = walk.stats.links_read;
            let mut again = self.walk_with(pids, wanted, threads, Memo::Full(prev))?;
            again.stats.links_read += links;
            Ok(again)
        } else {
            cache.pending = missing;
            Ok(walk)
        }
    }
}

/// The tables to keep after a walk: those read afresh, and those of `prev`
/// the walk reused; processes gone are forgotten.
fn remember(
    mut prev: FxHashMap<ProcessKey, CachedFds>,
    updates: Vec<(ProcessKey, Update)>,
) -> FxHashMap<ProcessKey, CachedFds> {
    let mut entries = FxHashMap::default();
    entries.reserve(updates.len());
    for (key, update) in updates {
        match update {
            Update::None => {}
            Update::Reused(dead) => {
                if let Some(mut c) = prev.remove(&key) {
                    if let Some(dead) = dead {
                        c.dead = dead;
                    }
                    entries.insert(key, c);
                }
            }
            Update::Fresh(c) => {
                entries.insert(key, c);
            }
        }
    }
    entries
}

/// Wanted inodes that no process was found to hold.
fn unfound(wanted: &FxHashSet<u64>, processes: &[ProcessInfo]) -> FxHashSet<u64> {
    let mut left = wanted.clone();
    for p in processes {
        for s in &p.sockets {
            left.remove(&s.inode);
        }
    }
    left
}

impl WalkContext<'_> {
    /// The table of an unchanged process from the cache, after checking
    /// what may have moved: deleted files (re-`fstatat`ed for their size)
    /// and wanted sockets (one `readlinkat` each).
    /// `None` if anything does not match: the process is walked again.
    pub(super) fn reuse(
        &self,
        c: &CachedFds,
        fd_dir: &OwnedFd,
        stats: &mut WalkStats,
    ) -> Option<Table> {
        let mut table = Table {
            fds: c.stats,
            unstated: c.unstated,
            ..Table::default()
        };
        table.fds.deleted_files = 0;
        table.fds.deleted_bytes = 0;
        for (fd, path) in &c.deleted {
            stats.links_read += 1;
            let st = rustix::fs::statat(fd_dir, fd_name(*fd).as_c_str(), AtFlags::empty()).ok()?;
            if st.st_nlink != 0 {
                return None;
            }
            table.deleted(st.st_size.max(0) as u64, || path.clone());
        }
        // Every wanted socket is verified, every scan: a socket verified once
        // may have been handed over since (the process forked, then put
        // another fd in its slot), and a cached claim is never exported
        // without a readlink that shows it still holds.
        let mut link = [0u8; 64];
        for &(inode, fd) in &c.sockets {
            if !self.wanted.contains(&inode) {
                continue;
            }
            stats.links_read += 1;
            let len =
                rustix::fs::readlinkat_raw(fd_dir, fd_name(fd).as_c_str(), &mut link[..]).ok()?;
            if parse::fd_target(&link[..len.min(link.len())]) != FdTarget::Socket(inode) {
                return None;
            }
            table.sockets.push(HeldSocket { inode, fd });
        }
        self.reuse_dead(c, fd_dir, stats, &mut table)?;
        Some(table)
    }

    /// The dead sockets of a reused table: looked for among its sockets when
    /// the walk checks (`alive`), else those of the last check, each
    /// verified with a `readlinkat` (`None`: the table moved, walk it again).
    fn reuse_dead(
        &self,
        c: &CachedFds,
        fd_dir: &OwnedFd,
        stats: &mut WalkStats,
        table: &mut Table,
    ) -> Option<()> {
        let candidates: Vec<(u64, u32)> = match self.alive {
            Some(alive) => c
                .sockets
                .iter()
                .copied()
                .filter(|(inode, _)| !self.wanted.contains(inode) && !alive.contains(inode))
                .collect(),
            None => c.dead.clone(),
        };
        let mut link = [0u8; 64];
        for (inode, fd) in candidates {
            stats.links_read += 1;
            let name = fd_name(fd);
            let len = rustix::fs::readlinkat_raw(fd_dir, name.as_c_str(), &mut link[..]).ok()?;
            if parse::fd_target(&link[..len.min(link.len())]) != FdTarget::Socket(inode) {
                return None;
            }
            if self.alive.is_none() || is_tcp(fd_dir, &name) {
                table.dead.push(HeldSocket { inode, fd });
            }
        }
        Some(())
    }
}
