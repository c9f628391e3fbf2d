//! The /proc walk: every thread-group leader, its fd table, its fd limit;
//! and what a report shows of a process, and the host's figures.
//!
//! Each process is opened once as a directory fd and everything else is read
//! relative to it (`openat`, `readlinkat`), so a PID that is reused mid-walk
//! cannot mix two processes: reads through the old directory fail with ESRCH.
//! A process that exits is *vanished* and one we may not read is *permission
//! denied*: both are counted, neither fails the scan.
//!
//! The rooms: [`walk`] drives the walk over threads, `process` reads one
//! process, `fds` one fd table, [`walk_cache`] decides what a cached walk
//! may reuse; `describe` and `host` read what the walk does not; [`parse`]
//! holds the pure parsers and `read` the small reads they are fed by;
//! `access` examines, for the report, the processes the walk could not read.

mod access;
mod describe;
mod fds;
mod host;
pub mod parse;
mod process;
mod read;
pub mod walk;
pub mod walk_cache;

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, RawDir};
use rustix::io::Errno;

use crate::model::NetnsId;

pub use walk::{Walk, Wanted};
pub use walk_cache::WalkCache;

/// Reads a file the kernel writes in one piece (a single_open seq_file
/// such as /proc/net/sockstat, or a sysctl) by its path: an open and one
/// read, where `std::fs::read` adds a statx and three or four reads more.
/// Not for files of many records (/proc/net/tcp), which a read may end
/// short of their end.
pub fn read_small(path: &str) -> io::Result<Vec<u8>> {
    read_whole(&rustix::fs::CWD, path)
}

/// `name` (a path, relative to `dir`), read as [`read_small`] says.
fn read_whole(dir: &impl std::os::fd::AsFd, name: &str) -> io::Result<Vec<u8>> {
    let name = std::ffi::CString::new(name).map_err(|_| io::Error::from(Errno::INVAL))?;
    let mut buf = Vec::new();
    read::read_at(dir, &name, &mut buf, read::Read::SeqFile)?;
    Ok(buf)
}

/// /proc/thread-self/net, opened once for several files of the calling
/// thread's network namespace: the kernel looks each name under it up
/// afresh (its entries never stay valid), so every path walk through it
/// costs more than the read.
pub struct NetDir(OwnedFd);

/// The calling thread's /proc/net.
pub const NET_DIR: &str = "/proc/thread-self/net";

impl NetDir {
    pub fn open() -> io::Result<NetDir> {
        Ok(NetDir(rustix::fs::open(
            NET_DIR,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?))
    }

    /// One of its files, read as [`read_small`] does.
    pub fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        read_whole(&self.0, name)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct ProcError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Why a process is missing from a walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    Vanished,
    PermissionDenied,
    /// An unexpected error: counted and logged.
    Failed(String),
}

fn skip(e: Errno) -> Skip {
    match e {
        Errno::NOENT | Errno::SRCH => Skip::Vanished,
        Errno::ACCESS | Errno::PERM => Skip::PermissionDenied,
        e => Skip::Failed(e.to_string()),
    }
}

/// A mounted procfs (or a fixture tree laid out like one).
#[derive(Debug, Clone)]
pub struct ProcRoot {
    path: PathBuf,
}

impl ProcRoot {
    pub fn new(path: impl Into<PathBuf>) -> ProcRoot {
        ProcRoot { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `pid`'s fd `fd` still is the socket `inode`.
    pub fn still_holds(&self, pid: u32, fd: u32, inode: u64) -> bool {
        let link = self.path.join(format!("{pid}/fd/{fd}"));
        std::fs::read_link(link).is_ok_and(|target| {
            parse::fd_target(target.as_os_str().as_encoded_bytes())
                == parse::FdTarget::Socket(inode)
        })
    }

    fn open_root(&self) -> Result<OwnedFd, ProcError> {
        rustix::fs::open(
            &self.path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.error(&self.path, e.into()))
    }

    fn error(&self, path: &Path, source: io::Error) -> ProcError {
        ProcError {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The PIDs of every thread-group leader (readdir of /proc lists only
    /// those; threads are reachable by path but not listed).
    pub fn pids(&self) -> Result<Vec<u32>, ProcError> {
        let root = self.open_root()?;
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 32 * 1024];
        let mut dir = RawDir::new(&root, &mut buf);
        let mut pids = Vec::with_capacity(1024);
        while let Some(entry) = dir.next() {
            let entry = entry.map_err(|e| self.error(&self.path, e.into()))?;
            if let Some(pid) = read::parse_u32(entry.file_name().to_bytes()) {
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        Ok(pids)
    }
}

/// The network namespace of the calling thread.
pub fn own_netns() -> io::Result<NetnsId> {
    let st = rustix::fs::stat("/proc/thread-self/ns/net")?;
    Ok(NetnsId(st.st_ino))
}
