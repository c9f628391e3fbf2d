//! The /proc walk: every thread-group leader, its fd table, its fd limit.
//!
//! Each process is opened once as a directory fd and everything else is read
//! relative to it (`openat`, `readlinkat`), so a PID that is reused mid-walk
//! cannot mix two processes: reads through the old directory fail with ESRCH.
//! The walk runs on several threads that take PIDs from a shared counter.
//! A process that exits is *vanished* and one we may not read is *permission
//! denied*: both are counted, neither fails the scan.

pub mod parse;

use std::ffi::{CStr, CString};
use std::io::{self, Read};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rustc_hash::FxHashSet;
use rustix::fs::{AtFlags, Mode, OFlags, RawDir};
use rustix::io::Errno;

use crate::model::{
    FdStats, HeldSocket, HostInfo, NetnsId, ProcessDetails, ProcessInfo, ProcessKey, Skipped,
};

use parse::FdTarget;

/// statfs magic of procfs: only there does `st_size` of /proc/PID/fd count fds.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;
/// Command lines longer than this are cut (some carry megabytes of JSON).
const CMDLINE_MAX: usize = 4096;

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

/// What a walk found.
#[derive(Debug, Default)]
pub struct Walk {
    pub processes: Vec<ProcessInfo>,
    pub skipped: Skipped,
    /// Processes that failed for an unexpected reason, with the reason.
    pub failed: Vec<(u32, String)>,
}

impl ProcRoot {
    pub fn new(path: impl Into<PathBuf>) -> ProcRoot {
        ProcRoot { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
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
            if let Some(pid) = parse_u32(entry.file_name().to_bytes()) {
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        Ok(pids)
    }

    /// Reads every process: identity, fd count and limit, and which of the
    /// `wanted` socket inodes it holds (with their fd numbers).
    pub fn walk(
        &self,
        pids: &[u32],
        wanted: &FxHashSet<u64>,
        threads: usize,
    ) -> Result<Walk, ProcError> {
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
            wanted,
            fd_count_from_size,
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
        let mut walk = Walk::default();
        for mut part in parts {
            walk.processes.append(&mut part.processes);
            walk.skipped.vanished += part.skipped.vanished;
            walk.skipped.permission_denied += part.skipped.permission_denied;
            walk.failed.append(&mut part.failed);
        }
        walk.processes.sort_unstable_by_key(|p| p.key.pid);
        walk.failed.sort();
        Ok(walk)
    }

    /// What a report shows of one process, read only for those it lists. The
    /// start time is checked first: a PID reused since the walk is `Vanished`.
    pub fn describe(&self, key: ProcessKey) -> Result<ProcessDetails, Skip> {
        let root = self.open_root().map_err(|_| Skip::Vanished)?;
        let dir = open_pid(&root, key.pid).map_err(skip)?;
        let mut buf = Vec::with_capacity(4096);
        let stat = parse::stat(read_at(&dir, c"stat", &mut buf).map_err(skip)?)
            .map_err(|e| Skip::Failed(e.to_string()))?;
        if stat.start_time != key.start_time {
            return Err(Skip::Vanished);
        }
        let exe = rustix::fs::readlinkat(&dir, c"exe", Vec::new())
            .ok()
            .map(|c| String::from_utf8_lossy(c.as_bytes()).into_owned());
        let cmdline = match read_at(&dir, c"cmdline", &mut buf) {
            Ok(b) => parse::cmdline(b, CMDLINE_MAX),
            Err(_) => String::new(),
        };
        let unit = match read_at(&dir, c"cgroup", &mut buf) {
            Ok(b) => parse::unit_from_cgroup(b).unwrap_or_else(|e| {
                log::debug!("pid {}: {e}", key.pid);
                None
            }),
            Err(_) => None,
        };
        let netns = rustix::fs::readlinkat(&dir, c"ns/net", Vec::new())
            .ok()
            .and_then(|l| parse::netns_link(l.as_bytes()))
            .map(NetnsId);
        Ok(ProcessDetails {
            exe,
            cmdline,
            unit,
            netns,
        })
    }

    /// Host name, kernel release and the host's file-handle figures.
    pub fn host(&self) -> (HostInfo, Vec<ProcError>) {
        let mut errors = Vec::new();
        let mut read = |rel: &str| {
            let path = self.path.join(rel);
            match std::fs::read(&path) {
                Ok(b) => Some(b),
                Err(e) => {
                    errors.push(self.error(&path, e));
                    None
                }
            }
        };
        let text = |b: Option<Vec<u8>>| {
            b.map(|b| String::from_utf8_lossy(&b).trim().to_string())
                .unwrap_or_default()
        };
        let hostname = text(read("sys/kernel/hostname"));
        let kernel = text(read("sys/kernel/osrelease"));
        let file_nr = read("sys/fs/file-nr");
        let mut host = HostInfo {
            hostname,
            kernel,
            open_fds: None,
            max_fds: None,
        };
        if let Some(bytes) = file_nr {
            match parse::file_nr(&bytes) {
                Ok(nr) => {
                    host.open_fds = Some(nr.open());
                    host.max_fds = Some(nr.max);
                }
                Err(e) => errors.push(self.error(
                    &self.path.join("sys/fs/file-nr"),
                    io::Error::new(io::ErrorKind::InvalidData, e),
                )),
            }
        }
        (host, errors)
    }
}

/// The network namespace of the calling thread.
pub fn own_netns() -> io::Result<NetnsId> {
    let st = rustix::fs::stat("/proc/thread-self/ns/net")?;
    Ok(NetnsId(st.st_ino))
}

struct WalkContext<'a> {
    root: &'a OwnedFd,
    wanted: &'a FxHashSet<u64>,
    fd_count_from_size: bool,
}

/// Buffers reused for every process a worker reads.
struct Scratch {
    dirents: Vec<MaybeUninit<u8>>,
    link: Vec<u8>,
    file: Vec<u8>,
}

impl WalkContext<'_> {
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
            match self.process(pid, &mut scratch) {
                Ok(p) => {
                    if !p.fds_walked {
                        walk.skipped.permission_denied += 1;
                    }
                    walk.processes.push(p);
                }
                Err(Skip::Vanished) => walk.skipped.vanished += 1,
                Err(Skip::PermissionDenied) => walk.skipped.permission_denied += 1,
                Err(Skip::Failed(why)) => walk.failed.push((pid, why)),
            }
        }
        walk
    }

    fn process(&self, pid: u32, scratch: &mut Scratch) -> Result<ProcessInfo, Skip> {
        let dir = open_pid(self.root, pid).map_err(skip)?;
        let uid = rustix::fs::fstat(&dir).ok().map(|s| s.st_uid);
        let stat = parse::stat(read_at(&dir, c"stat", &mut scratch.file).map_err(skip)?)
            .map_err(|e| Skip::Failed(e.to_string()))?;
        let key = ProcessKey {
            pid,
            start_time: stat.start_time,
        };
        let mut fds = FdStats::default();
        let mut sockets = Vec::new();
        let mut largest_deleted = None;
        let fds_walked = match rustix::fs::openat(
            &dir,
            c"fd",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd_dir) => {
                let size = rustix::fs::fstat(&fd_dir).map(|s| s.st_size).unwrap_or(0);
                let walked = self.fds(
                    &fd_dir,
                    scratch,
                    &mut fds,
                    &mut sockets,
                    &mut largest_deleted,
                )?;
                fds.open = if self.fd_count_from_size && size > 0 {
                    size as u64
                } else {
                    walked
                };
                true
            }
            Err(Errno::ACCESS | Errno::PERM) => {
                // st_size needs no permission to read (Linux ≥ 6.2); without it
                // the count is unknown and the process is left out, not shown
                // with zero fds.
                let size = rustix::fs::statat(&dir, c"fd", AtFlags::empty())
                    .map(|s| s.st_size)
                    .unwrap_or(0);
                if !(self.fd_count_from_size && size > 0) {
                    return Err(Skip::PermissionDenied);
                }
                fds.open = size as u64;
                false
            }
            Err(e) => return Err(skip(e)),
        };
        fds.limit = match read_at(&dir, c"limits", &mut scratch.file) {
            Ok(text) => parse::max_open_files(text).map_err(|e| Skip::Failed(e.to_string()))?,
            Err(e) => match skip(e) {
                Skip::Vanished => return Err(Skip::Vanished),
                // limits is world-readable; should it not be, the limit is
                // unknown (shown as such), the rest of the process is good.
                other => {
                    log::debug!("pid {pid}: limits unreadable: {other:?}");
                    None
                }
            },
        };
        Ok(ProcessInfo {
            key,
            comm: stat.comm,
            uid,
            fds,
            fds_walked,
            sockets,
            largest_deleted,
        })
    }

    /// Reads the links of one fd directory; returns how many fds it saw.
    fn fds(
        &self,
        fd_dir: &OwnedFd,
        scratch: &mut Scratch,
        fds: &mut FdStats,
        sockets: &mut Vec<HeldSocket>,
        largest_deleted: &mut Option<(String, u64)>,
    ) -> Result<u64, Skip> {
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
            match parse::fd_target(&scratch.link[..len]) {
                FdTarget::Socket(inode) => {
                    fds.sockets += 1;
                    if self.wanted.contains(&inode) {
                        sockets.push(HeldSocket { inode, fd });
                    }
                }
                FdTarget::MaybeDeleted => {
                    fds.files += 1;
                    // Following the magic link reaches the file even when it
                    // has no name left; a link count of 0 confirms deletion.
                    if let Ok(st) = rustix::fs::statat(fd_dir, name, AtFlags::empty()) {
                        if st.st_nlink == 0 {
                            let bytes = st.st_size.max(0) as u64;
                            fds.deleted_files += 1;
                            fds.deleted_bytes += bytes;
                            if largest_deleted.as_ref().is_none_or(|(_, b)| bytes > *b) {
                                let path = parse::deleted_path(&scratch.link[..len]);
                                *largest_deleted =
                                    Some((String::from_utf8_lossy(path).into_owned(), bytes));
                            }
                        }
                    }
                }
                FdTarget::Pipe => fds.pipes += 1,
                FdTarget::AnonInode => fds.anon_inodes += 1,
                FdTarget::File => fds.files += 1,
                FdTarget::Other => {}
            }
        }
        Ok(count)
    }
}

fn open_pid(root: &OwnedFd, pid: u32) -> Result<OwnedFd, Errno> {
    let name = CString::new(pid.to_string()).map_err(|_| Errno::INVAL)?;
    rustix::fs::openat(
        root,
        name.as_c_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Reads a whole (small) file relative to a directory fd into `buf`.
fn read_at<'b>(dir: &impl AsFd, name: &CStr, buf: &'b mut Vec<u8>) -> Result<&'b [u8], Errno> {
    let fd = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    buf.clear();
    let mut file = std::fs::File::from(fd);
    file.read_to_end(buf)
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
    Ok(&buf[..])
}

fn parse_u32(name: &[u8]) -> Option<u32> {
    if name.is_empty() || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}
