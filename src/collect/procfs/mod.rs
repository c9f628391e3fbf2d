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
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};
use rustix::fs::{AtFlags, Mode, OFlags, RawDir};
use rustix::io::Errno;

use crate::model::{
    FdStats, HeldSocket, HostInfo, NetnsId, ProcessDetails, ProcessInfo, ProcessKey, Skipped,
    WalkStats,
};

use parse::FdTarget;

/// statfs magic of procfs: only there does `st_size` of /proc/PID/fd count fds.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;
/// Command lines longer than this are cut (some carry megabytes of JSON);
/// no more than this (and the two bytes that tell a cut) is read.
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
    /// What the walk cost, and how much a [`WalkCache`] saved.
    pub stats: WalkStats,
    /// What the cache keeps of each process read (parallel to `processes`
    /// until merged).
    updates: Vec<(ProcessKey, Update)>,
}

/// How often a cached walk still reads every fd table, whatever the cache
/// holds: it bounds how stale the fd breakdown and the deleted files of a
/// process that swapped fds without changing their count can be.
pub const FULL_WALK_EVERY: Duration = Duration::from_secs(300);

/// What a walk remembers of each process's fd table for the next one.
///
/// A process whose fd count (`st_size` of /proc/PID/fd, one `fstat`) has not
/// changed is not walked again: its breakdown and socket fds are taken from
/// here. Every cached socket the scan wants (flagged, or a listener) is
/// verified with one `readlinkat` of its cached fd at every scan, so no
/// socket is blamed on a process that no longer holds it, even one it handed
/// to a child before swapping the fd. Deleted files are re-`fstatat`ed (their size
/// changes). If a verification fails the process is walked again. A flagged
/// socket whose owner the cache cannot place in two scans running (an fd
/// swapped under an unchanged count) makes the whole walk start from
/// scratch. Every [`FULL_WALK_EVERY`] the walk is cold regardless.
#[derive(Debug, Default)]
pub struct WalkCache {
    root: Option<PathBuf>,
    entries: FxHashMap<ProcessKey, CachedFds>,
    /// Wanted inodes that the last full walk found no owner for.
    accepted: FxHashSet<u64>,
    /// Wanted inodes the last cached walk found no owner for (and a full
    /// walk had not missed either): if still missing, a full walk follows.
    pending: FxHashSet<u64>,
    last_full: Option<Instant>,
}

impl WalkCache {
    /// Processes remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One process's fd table as last walked.
#[derive(Debug, Clone, Default)]
struct CachedFds {
    /// `st_size` of /proc/PID/fd when walked.
    size: i64,
    /// The breakdown (open and limit are read every scan).
    stats: FdStats,
    /// Every socket fd: (inode, fd), in fd order.
    sockets: Vec<(u64, u32)>,
    /// Deleted files: fd and path.
    deleted: Vec<(u32, String)>,
}

#[derive(Debug)]
enum Update {
    /// Nothing to remember (fds unreadable, or not procfs).
    None,
    /// The cached table still holds (its wanted sockets verified).
    Reused,
    Fresh(CachedFds),
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
        self.walk_with(pids, wanted, threads, None, false)
    }

    /// [`walk`](Self::walk), reading only what changed since the walk that
    /// filled `cache` (see [`WalkCache`]). The result is the same as a cold
    /// walk's but for what the cache's rules accept as stale.
    pub fn walk_cached(
        &self,
        pids: &[u32],
        wanted: &FxHashSet<u64>,
        threads: usize,
        cache: &mut WalkCache,
    ) -> Result<Walk, ProcError> {
        let now = Instant::now();
        if cache.root.as_deref() != Some(self.path.as_path()) {
            *cache = WalkCache {
                root: Some(self.path.clone()),
                ..WalkCache::default()
            };
        }
        let full_due = cache
            .last_full
            .is_none_or(|t| super::due(now.duration_since(t), FULL_WALK_EVERY));
        let mut prev = std::mem::take(&mut cache.entries);
        let mut walk = if full_due {
            self.walk_with(pids, wanted, threads, None, true)?
        } else {
            let walk = self.walk_with(pids, wanted, threads, Some(&prev), true)?;
            let unfound = unfound(wanted, &walk.processes);
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
                let mut again = self.walk_with(pids, wanted, threads, None, true)?;
                again.stats.links_read += links;
                again
            } else {
                cache.pending = missing;
                walk
            }
        };
        if walk.stats.full {
            cache.last_full = Some(now);
            cache.accepted = unfound(wanted, &walk.processes);
            cache.pending.clear();
        }
        let mut entries = FxHashMap::default();
        entries.reserve(walk.updates.len());
        for (key, update) in std::mem::take(&mut walk.updates) {
            match update {
                Update::None => {}
                Update::Reused => {
                    if let Some(c) = prev.remove(&key) {
                        entries.insert(key, c);
                    }
                }
                Update::Fresh(c) => {
                    entries.insert(key, c);
                }
            }
        }
        cache.entries = entries;
        Ok(walk)
    }

    fn walk_with(
        &self,
        pids: &[u32],
        wanted: &FxHashSet<u64>,
        threads: usize,
        prev: Option<&FxHashMap<ProcessKey, CachedFds>>,
        record: bool,
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
            // Without st_size there is no cheap sign of change.
            prev: prev.filter(|_| fd_count_from_size),
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
        let mut walk = Walk {
            stats: WalkStats {
                full: ctx.prev.is_none(),
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
            walk.stats.links_read += part.stats.links_read;
            walk.stats.processes_reused += part.stats.processes_reused;
        }
        walk.processes.sort_unstable_by_key(|p| p.key.pid);
        walk.failed.sort();
        Ok(walk)
    }

    /// What a report shows of one process, read only for those it lists. The
    /// start time is checked first: a PID reused since the walk is `Vanished`.
    pub fn describe(&self, key: ProcessKey) -> Result<ProcessDetails, Skip> {
        self.details(key, true)
    }

    /// The one detail the agent's labels use, the systemd unit (`None`:
    /// none found): the agent never reads a command line or an executable
    /// path, so neither can end up in a label or a log line.
    pub fn describe_unit(&self, key: ProcessKey) -> Result<Option<String>, Skip> {
        Ok(self.details(key, false)?.unit)
    }

    fn details(&self, key: ProcessKey, all: bool) -> Result<ProcessDetails, Skip> {
        let root = self.open_root().map_err(|_| Skip::Vanished)?;
        let dir = open_pid(&root, key.pid).map_err(skip)?;
        let mut buf = Vec::with_capacity(4096);
        let stat = parse::stat(read_at(&dir, c"stat", &mut buf, Read::SeqFile).map_err(skip)?)
            .map_err(|e| Skip::Failed(e.to_string()))?;
        if stat.start_time != key.start_time {
            return Err(Skip::Vanished);
        }
        let exe = all
            .then(|| rustix::fs::readlinkat(&dir, c"exe", Vec::new()).ok())
            .flatten()
            .map(|c| String::from_utf8_lossy(c.as_bytes()).into_owned());
        let cmdline =
            match all.then(|| read_at(&dir, c"cmdline", &mut buf, Read::UpTo(CMDLINE_MAX + 2))) {
                Some(Ok(b)) => parse::cmdline(b, CMDLINE_MAX),
                _ => String::new(),
            };
        let unit = match read_at(&dir, c"cgroup", &mut buf, Read::UpTo(usize::MAX)) {
            Ok(b) => parse::unit_from_cgroup(b).unwrap_or_else(|e| {
                log::debug!("pid {}: {e}", key.pid);
                None
            }),
            Err(_) => None,
        };
        let netns = all
            .then(|| rustix::fs::readlinkat(&dir, c"ns/net", Vec::new()).ok())
            .flatten()
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
        self.host_with(None)
    }

    /// [`host`](Self::host), with the host name and kernel release taken
    /// from `names` when given (they seldom change; file-nr is read anyway).
    pub fn host_with(&self, names: Option<(&str, &str)>) -> (HostInfo, Vec<ProcError>) {
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
        let (hostname, kernel) = match names {
            Some((hostname, kernel)) => (hostname.to_string(), kernel.to_string()),
            None => (
                text(read("sys/kernel/hostname")),
                text(read("sys/kernel/osrelease")),
            ),
        };
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

struct WalkContext<'a> {
    root: &'a OwnedFd,
    wanted: &'a FxHashSet<u64>,
    fd_count_from_size: bool,
    /// The last walk's tables, for processes whose fd count is unchanged.
    prev: Option<&'a FxHashMap<ProcessKey, CachedFds>>,
    /// Whether to keep what the cache needs of each table read.
    record: bool,
}

/// One fd table as read from /proc or from the cache.
#[derive(Default)]
struct Table {
    fds: FdStats,
    sockets: Vec<HeldSocket>,
    largest_deleted: Option<(String, u64)>,
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
            match self.process(pid, &mut scratch, &mut walk.stats) {
                Ok((p, update)) => {
                    if !p.fds_walked {
                        walk.skipped.permission_denied += 1;
                    }
                    if self.record {
                        walk.updates.push((p.key, update));
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

    fn process(
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
        if stat.kernel_thread {
            // No fd table to walk or count, and no use for its limits.
            return Ok((
                ProcessInfo {
                    key,
                    comm: stat.comm,
                    uid,
                    fds: FdStats::default(),
                    fds_walked: true,
                    sockets: Vec::new(),
                    largest_deleted: None,
                },
                Update::None,
            ));
        }
        let mut update = Update::None;
        let (mut table, fds_walked) = match rustix::fs::openat(
            &dir,
            c"fd",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd_dir) => {
                let size = rustix::fs::fstat(&fd_dir).map(|s| s.st_size).unwrap_or(0);
                let cached = self
                    .prev
                    .and_then(|prev| prev.get(&key))
                    .filter(|c| size > 0 && c.size == size);
                let reused = match cached {
                    Some(c) => self.reuse(c, &fd_dir, stats),
                    None => None,
                };
                let mut table = match reused {
                    Some(table) => {
                        stats.processes_reused += 1;
                        update = Update::Reused;
                        table
                    }
                    None => {
                        let mut record = self.record.then(|| CachedFds {
                            size,
                            ..CachedFds::default()
                        });
                        let (table, walked) = self.fds(&fd_dir, scratch, record.as_mut())?;
                        stats.links_read += walked;
                        if let Some(mut c) = record {
                            c.stats = table.fds;
                            update = Update::Fresh(c);
                        }
                        let mut table = table;
                        table.fds.open = walked;
                        table
                    }
                };
                if self.fd_count_from_size && size > 0 {
                    table.fds.open = size as u64;
                }
                (table, true)
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
                let mut table = Table::default();
                table.fds.open = size as u64;
                (table, false)
            }
            Err(e) => return Err(skip(e)),
        };
        let fds = &mut table.fds;
        fds.limit = match read_at(&dir, c"limits", &mut scratch.file, Read::SeqFile) {
            // The kernel writes nothing once the task has been released
            // (reaped: lock_task_sighand fails), for an instant before its
            // pid goes: it has exited, not failed.
            Ok([]) => return Err(Skip::Vanished),
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
        Ok((
            ProcessInfo {
                key,
                comm: stat.comm,
                uid,
                fds: table.fds,
                fds_walked,
                sockets: table.sockets,
                largest_deleted: table.largest_deleted,
            },
            update,
        ))
    }

    /// The table of an unchanged process from the cache, after checking
    /// what may have moved: deleted files (re-`fstatat`ed for their size)
    /// and wanted sockets (one `readlinkat` each).
    /// `None` if anything does not match: the process is walked again.
    fn reuse(&self, c: &CachedFds, fd_dir: &OwnedFd, stats: &mut WalkStats) -> Option<Table> {
        let mut table = Table {
            fds: c.stats,
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
            let bytes = st.st_size.max(0) as u64;
            table.fds.deleted_files += 1;
            table.fds.deleted_bytes += bytes;
            if table
                .largest_deleted
                .as_ref()
                .is_none_or(|(_, b)| bytes > *b)
            {
                table.largest_deleted = Some((path.clone(), bytes));
            }
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
        Some(table)
    }

    /// Reads the links of one fd directory: the table, and how many fds it
    /// saw. `record` gets every socket and deleted file, for the cache.
    fn fds(
        &self,
        fd_dir: &OwnedFd,
        scratch: &mut Scratch,
        mut record: Option<&mut CachedFds>,
    ) -> Result<(Table, u64), Skip> {
        let mut table = Table::default();
        let fds = &mut table.fds;
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
                        table.sockets.push(HeldSocket { inode, fd });
                    }
                    if let Some(r) = record.as_deref_mut() {
                        r.sockets.push((inode, fd));
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
                            let path = || {
                                String::from_utf8_lossy(parse::deleted_path(&scratch.link[..len]))
                                    .into_owned()
                            };
                            if table
                                .largest_deleted
                                .as_ref()
                                .is_none_or(|(_, b)| bytes > *b)
                            {
                                table.largest_deleted = Some((path(), bytes));
                            }
                            if let Some(r) = record.as_deref_mut() {
                                r.deleted.push((fd, path()));
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
        Ok((table, count))
    }
}

/// An fd number as a name in /proc/PID/fd.
fn fd_name(fd: u32) -> CString {
    // Digits only: no interior NUL.
    CString::new(fd.to_string()).unwrap_or_default()
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

/// How a file relative to a directory fd is read by [`read_at`].
#[derive(Clone, Copy)]
enum Read {
    /// Until end of file, at most this many bytes.
    UpTo(usize),
    /// A seq_file (/proc/PID/stat, limits): the kernel fills each read as
    /// far as the buffer allows, so a read that leaves room has reached the
    /// end, and the read that would return 0 is saved.
    SeqFile,
}

/// Reads a (small) file relative to a directory fd into `buf`. Plain
/// `read`s: `std`'s `read_to_end` first `fstat`s and `lseek`s to size its
/// buffer, which for procfs files (size 0) buys nothing and costs two
/// syscalls per file.
fn read_at<'b>(
    dir: &impl AsFd,
    name: &CStr,
    buf: &'b mut Vec<u8>,
    how: Read,
) -> Result<&'b [u8], Errno> {
    let fd = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let max = match how {
        Read::UpTo(max) => max,
        Read::SeqFile => usize::MAX,
    };
    buf.clear();
    while buf.len() < max {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(buf.capacity().max(4096));
        }
        let room = buf.capacity() - buf.len();
        match rustix::io::read(&fd, rustix::buffer::spare_capacity(buf)) {
            Ok(0) => break,
            Ok(n) if n < room && matches!(how, Read::SeqFile) => break,
            Ok(_) => {}
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(max);
    Ok(&buf[..])
}

fn parse_u32(name: &[u8]) -> Option<u32> {
    if name.is_empty() || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}
