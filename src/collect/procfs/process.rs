//! One process of the walk: its identity (stat), its fd table (from /proc or
//! from the cache), and its fd limit.

use std::os::fd::OwnedFd;

use rustix::fs::AtFlags;
use rustix::io::Errno;

use super::fds::Table;
use super::read::{open_fd_dir, open_pid, read_at, Read};
use super::walk::{Scratch, WalkContext};
use super::walk_cache::{CachedFds, Update};
use super::{parse, skip, Skip};
use crate::model::{FdStats, ProcessInfo, ProcessKey, WalkStats};

impl WalkContext<'_> {
    /// Reads process `pid`, and what the cache should remember of it.
    pub(super) fn process(
        &self,
        pid: u32,
        scratch: &mut Scratch,
        stats: &mut WalkStats,
    ) -> Result<(ProcessInfo, Update), Skip> {
        let dir = open_pid(self.root, pid).map_err(skip)?;
        let uid = rustix::fs::fstat(&dir).ok().map(|s| s.st_uid);
        let stat =
            parse::stat(read_at(&dir, c"stat", &mut scratch.file, Read::SeqFile).map_err(skip)?)
                .map_err(|e| Skip::Failed(e.to_string()))?;
        let key = ProcessKey {
            pid,
            start_time: stat.start_time,
        };
        let mut info = ProcessInfo {
            key,
            comm: stat.comm,
            uid,
            fds: FdStats::default(),
            fds_walked: true,
            sockets: Vec::new(),
            largest_deleted: None,
            dead: Vec::new(),
        };
        if stat.kernel_thread {
            // No fd table to walk or count, and no use for its limits.
            return Ok((info, Update::None));
        }
        let (table, fds_walked, update) = self.fd_table(&dir, key, scratch, stats)?;
        stats.fd_stat_failed += table.unstated;
        info.fds = table.fds;
        info.fds.limit = self.limit(&dir, pid, scratch)?;
        info.fds_walked = fds_walked;
        info.sockets = table.sockets;
        info.largest_deleted = table.largest_deleted;
        info.dead = table.dead;
        Ok((info, update))
    }

    /// The fd table: from the cache when its fd count has not changed and
    /// what it holds checks out, else read; without permission to read it,
    /// only its size (`false`: not walked).
    fn fd_table(
        &self,
        dir: &OwnedFd,
        key: ProcessKey,
        scratch: &mut Scratch,
        stats: &mut WalkStats,
    ) -> Result<(Table, bool, Update), Skip> {
        let fd_dir = match open_fd_dir(dir) {
            Ok(fd_dir) => fd_dir,
            Err(Errno::ACCESS | Errno::PERM) => return self.fd_count_only(dir),
            Err(e) => return Err(skip(e)),
        };
        let size = rustix::fs::fstat(&fd_dir).map(|s| s.st_size).unwrap_or(0);
        let cached = self
            .prev
            .and_then(|prev| prev.get(&key))
            .filter(|c| size > 0 && c.size == size);
        let reused = cached.and_then(|c| self.reuse(c, &fd_dir, stats));
        let (mut table, update) = match reused {
            Some(table) => {
                stats.processes_reused += 1;
                let dead = self
                    .alive
                    .map(|_| table.dead.iter().map(|s| (s.inode, s.fd)).collect());
                (table, Update::Reused(dead))
            }
            None => {
                let mut record = self.record.then(|| CachedFds {
                    size,
                    ..CachedFds::default()
                });
                let before = self.before.and_then(|before| before.get(&key));
                let (mut table, walked) = self.fds(&fd_dir, scratch, record.as_mut(), before)?;
                stats.links_read += walked;
                table.fds.open = walked;
                let update = match record {
                    Some(mut c) => {
                        c.stats = table.fds;
                        c.unstated = table.unstated;
                        c.dead = table.dead.iter().map(|s| (s.inode, s.fd)).collect();
                        Update::Fresh(c)
                    }
                    None => Update::None,
                };
                (table, update)
            }
        };
        if self.fd_count_from_size && size > 0 {
            table.fds.open = size as u64;
        }
        Ok((table, true, update))
    }

    /// A table we may not read: `st_size` needs no permission to read
    /// (Linux ≥ 6.2); without it the count is unknown and the process is
    /// left out, not shown with zero fds.
    fn fd_count_only(&self, dir: &OwnedFd) -> Result<(Table, bool, Update), Skip> {
        let size = rustix::fs::statat(dir, c"fd", AtFlags::empty())
            .map(|s| s.st_size)
            .unwrap_or(0);
        if !(self.fd_count_from_size && size > 0) {
            return Err(Skip::PermissionDenied);
        }
        let mut table = Table::default();
        table.fds.open = size as u64;
        Ok((table, false, Update::None))
    }

    /// The soft RLIMIT_NOFILE (`None`: unlimited or unreadable).
    fn limit(&self, dir: &OwnedFd, pid: u32, scratch: &mut Scratch) -> Result<Option<u64>, Skip> {
        match read_at(dir, c"limits", &mut scratch.file, Read::SeqFile) {
            // The kernel writes nothing once the task has been released
            // (reaped: lock_task_sighand fails), for an instant before its
            // pid goes: it has exited, not failed.
            Ok([]) => Err(Skip::Vanished),
            Ok(text) => parse::max_open_files(text).map_err(|e| Skip::Failed(e.to_string())),
            Err(e) => match skip(e) {
                Skip::Vanished => Err(Skip::Vanished),
                // limits is world-readable; should it not be, the limit is
                // unknown (shown as such), the rest of the process is good.
                other => {
                    log::debug!("pid {pid}: limits unreadable: {other:?}");
                    Ok(None)
                }
            },
        }
    }
}
