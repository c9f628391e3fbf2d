//! A walk from the iterators' records: the same [`Walk`] the /proc walk
//! makes, so everything after attribution is the same for both backends.

use rustc_hash::{FxHashMap, FxHashSet};

use super::records::{FdKind, FdRecord, TaskRecord};
use crate::collect::procfs::{parse, ProcRoot, Walk};
use crate::model::{FdStats, HeldSocket, ProcessInfo, ProcessKey, WalkStats};

/// /proc/PID/stat's starttime: `nsec_to_clock_t` of the start time.
pub fn ticks(start_boottime_ns: u64, ticks_per_second: u64) -> u64 {
    start_boottime_ns / (1_000_000_000 / ticks_per_second.max(1))
}

/// Builds a walk from the task records, then the fd records one by one.
pub struct Builder<'a> {
    wanted: &'a FxHashSet<u64>,
    index: FxHashMap<u32, usize>,
    processes: Vec<ProcessInfo>,
    /// The largest deleted file of each process: (fd, bytes).
    largest: Vec<Option<(u32, u64)>>,
    /// fds of tasks the task pass did not see (started between the passes).
    unplaced: u64,
    /// The last record's pid and its process (records come task by task).
    last: Option<(u32, usize)>,
}

impl<'a> Builder<'a> {
    /// Every process of `tasks`, with no fd yet; `wanted` are the sockets
    /// whose holders are named.
    pub fn new(tasks: &[TaskRecord], wanted: &'a FxHashSet<u64>, ticks_per_second: u64) -> Self {
        let mut index = FxHashMap::default();
        index.reserve(tasks.len());
        let mut processes = Vec::with_capacity(tasks.len());
        for t in tasks {
            index.insert(t.tgid, processes.len());
            processes.push(ProcessInfo {
                key: ProcessKey {
                    pid: t.tgid,
                    start_time: ticks(t.start_boottime_ns, ticks_per_second),
                },
                comm: t.comm.clone(),
                uid: Some(t.euid),
                fds: FdStats {
                    limit: if t.kernel_thread { None } else { t.nofile },
                    ..FdStats::default()
                },
                fds_walked: true,
                sockets: Vec::new(),
                largest_deleted: None,
                dead: Vec::new(),
            });
        }
        Builder {
            wanted,
            index,
            largest: vec![None; processes.len()],
            processes,
            unplaced: 0,
            last: None,
        }
    }

    /// One fd. The counts are of the leader's table, as /proc/PID/fd shows
    /// it; the sockets are of every table of the process (a thread that
    /// unshared its table holds its own), each socket once.
    pub fn fd(&mut self, r: &FdRecord) {
        let i = match self.last {
            Some((tgid, i)) if tgid == r.tgid => i,
            _ => {
                let Some(&i) = self.index.get(&r.tgid) else {
                    self.unplaced += 1;
                    return;
                };
                self.last = Some((r.tgid, i));
                i
            }
        };
        let p = &mut self.processes[i];
        let leader = r.tid == r.tgid;
        if leader {
            p.fds.open += 1;
            match r.kind {
                FdKind::Socket => p.fds.sockets += 1,
                FdKind::Pipe => p.fds.pipes += 1,
                FdKind::AnonInode => p.fds.anon_inodes += 1,
                FdKind::File => p.fds.files += 1,
                FdKind::Deleted => {
                    p.fds.files += 1;
                    p.fds.deleted_files += 1;
                    p.fds.deleted_bytes += r.ino;
                    if self.largest[i].is_none_or(|(_, b)| r.ino > b) {
                        self.largest[i] = Some((r.fd, r.ino));
                    }
                }
                FdKind::Other => {}
            }
        }
        if r.kind != FdKind::Socket {
            return;
        }
        let held = HeldSocket {
            inode: r.ino,
            fd: r.fd,
        };
        let list = if self.wanted.contains(&r.ino) {
            &mut p.sockets
        } else if r.is_dead_tcp() {
            &mut p.dead
        } else {
            return;
        };
        if leader || !list.iter().any(|s| s.inode == r.ino) {
            list.push(held);
        }
    }

    /// The walk; the path of each process's largest deleted file is read
    /// from its fd link under `root` (the iterator does not spell paths).
    pub fn finish(self, root: &ProcRoot) -> Walk {
        let mut links_read = 0;
        let mut processes = self.processes;
        for (p, largest) in processes.iter_mut().zip(self.largest) {
            if let Some((fd, bytes)) = largest {
                links_read += 1;
                let link = root.path().join(format!("{}/fd/{fd}", p.key.pid));
                let path = std::fs::read_link(link).map_or_else(
                    |_| format!("(fd {fd})"),
                    |l| {
                        String::from_utf8_lossy(parse::deleted_path(
                            l.as_os_str().as_encoded_bytes(),
                        ))
                        .into_owned()
                    },
                );
                p.largest_deleted = Some((path, bytes));
            }
        }
        processes.sort_unstable_by_key(|p| p.key.pid);
        if self.unplaced > 0 {
            log::debug!(
                "{} fds of processes newer than the task pass",
                self.unplaced
            );
        }
        let mut walk = Walk::default();
        walk.processes = processes;
        walk.stats = WalkStats {
            links_read,
            full: true,
            ..WalkStats::default()
        };
        walk
    }
}
