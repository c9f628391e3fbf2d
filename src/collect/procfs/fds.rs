//! Reading one fd table: every link of /proc/PID/fd classified (sockets,
//! pipes, files, anon inodes), the wanted sockets kept with their fd, and
//! deleted-but-open files confirmed by their link count.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd};

use rustix::fs::{AtFlags, RawDir};
use rustix::io::Errno;

use super::parse::{self, FdTarget};
use super::read::parse_u32;
use super::walk::{Scratch, WalkContext};
use super::walk_cache::CachedFds;
use super::{skip, Skip};
use crate::model::{FdStats, HeldSocket};

/// One fd table as read from /proc or from the cache.
#[derive(Default)]
pub(super) struct Table {
    pub(super) fds: FdStats,
    pub(super) sockets: Vec<HeldSocket>,
    pub(super) largest_deleted: Option<(String, u64)>,
    /// Links ending in " (deleted)" that could not be stat-ed.
    pub(super) unstated: u64,
    /// TCP sockets in no table (see `WalkContext::alive`).
    pub(super) dead: Vec<HeldSocket>,
}

impl Table {
    /// Counts a deleted file of `bytes`, keeping the largest's path.
    pub(super) fn deleted(&mut self, bytes: u64, path: impl FnOnce() -> String) {
        self.fds.deleted_files += 1;
        self.fds.deleted_bytes += bytes;
        if self
            .largest_deleted
            .as_ref()
            .is_none_or(|(_, b)| bytes > *b)
        {
            self.largest_deleted = Some((path(), bytes));
        }
    }
}

/// Whether the socket at `name` in `fd_dir` is TCP (over IPv4 or IPv6):
/// its `system.sockprotoname`, which `lsof` reads too. Followed through
/// this process's own fd of the directory, so a PID reused since cannot
/// answer for it.
pub(super) fn is_tcp(fd_dir: &OwnedFd, name: &CStr) -> bool {
    let path = format!(
        "/proc/self/fd/{}/{}",
        fd_dir.as_raw_fd(),
        name.to_string_lossy()
    );
    let mut proto = [0u8; 32];
    match rustix::fs::getxattr(path.as_str(), "system.sockprotoname", &mut proto[..]) {
        Ok(n) => matches!(
            proto.get(..n),
            Some(b"TCP\0" | b"TCPv6\0" | b"TCP" | b"TCPv6")
        ),
        Err(_) => false,
    }
}

impl WalkContext<'_> {
    /// Whether a socket that is not wanted is dead: with the scan's tables,
    /// a TCP socket in none of them; without them, one the last check found.
    fn dead(&self, fd_dir: &OwnedFd, name: &CStr, inode: u64, before: Option<&CachedFds>) -> bool {
        match self.alive {
            Some(alive) => !alive.contains(&inode) && is_tcp(fd_dir, name),
            None => before.is_some_and(|c| c.dead.iter().any(|&(i, _)| i == inode)),
        }
    }

    /// Reads the links of one fd directory: the table, and how many fds it
    /// saw. `record` gets every socket and deleted file, for the cache;
    /// `before` is the process's table of the last cached walk, whose dead
    /// sockets stand when this walk cannot check.
    pub(super) fn fds(
        &self,
        fd_dir: &OwnedFd,
        scratch: &mut Scratch,
        mut record: Option<&mut CachedFds>,
        before: Option<&CachedFds>,
    ) -> Result<(Table, u64), Skip> {
        let mut table = Table::default();
        let mut count = 0u64;
        let mut dir = RawDir::new(fd_dir, &mut scratch.dirents);
        while let Some(entry) = dir.next() {
            let entry = entry.map_err(skip)?;
            let name = entry.file_name();
            let Some(fd) = parse_u32(name.to_bytes()) else {
                continue; // "." and ".."
            };
            let len = match rustix::fs::readlinkat_raw(fd_dir, name, &mut scratch.link[..]) {
                Ok(len) => len.min(scratch.link.len()),
                Err(Errno::NOENT) => continue, // closed since getdents
                Err(e) => return Err(skip(e)),
            };
            count += 1;
            let link = &scratch.link[..len];
            match parse::fd_target(link) {
                FdTarget::Socket(inode) => {
                    table.fds.sockets += 1;
                    if self.wanted.contains(&inode) {
                        table.sockets.push(HeldSocket { inode, fd });
                    } else if self.dead(fd_dir, name, inode, before) {
                        table.dead.push(HeldSocket { inode, fd });
                    }
                    if let Some(r) = record.as_deref_mut() {
                        r.sockets.push((inode, fd));
                    }
                }
                FdTarget::MaybeDeleted => {
                    table.fds.files += 1;
                    // Following the magic link reaches the file even when it
                    // has no name left; a link count of 0 confirms deletion.
                    let st = match rustix::fs::statat(fd_dir, name, AtFlags::empty()) {
                        Ok(st) => st,
                        Err(Errno::NOENT) => continue, // closed since readlink
                        Err(_) => {
                            table.unstated += 1;
                            continue;
                        }
                    };
                    if st.st_nlink == 0 {
                        let path =
                            || String::from_utf8_lossy(parse::deleted_path(link)).into_owned();
                        table.deleted(st.st_size.max(0) as u64, path);
                        if let Some(r) = record.as_deref_mut() {
                            r.deleted.push((fd, path()));
                        }
                    }
                }
                FdTarget::Pipe => table.fds.pipes += 1,
                FdTarget::AnonInode => table.fds.anon_inodes += 1,
                FdTarget::File => table.fds.files += 1,
                FdTarget::Other => {}
            }
        }
        Ok((table, count))
    }
}
