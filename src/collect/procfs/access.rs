//! Why the processes a scan could not read were refused: each refused read
//! is tried again for its errno, and what the kernel's access rules compare
//! is read beside it (the process's credentials from /proc/PID/status,
//! which anyone may read; who owns /proc/PID; whether it is in our user
//! namespace), with our own credentials. Only `--report` does this, for
//! the few processes it concerns; `analyse::access` judges the result.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use rustix::fs::{AtFlags, RawDir};
use rustix::io::Errno;

use super::read::{open_fd_dir, open_pid, parse_u32, read_at, Read};
use super::{parse, ProcRoot};
use crate::model::access::{Read as Refused, Refusal, Unreadable, UnreadableProcesses, UserNs};

/// The inode of the initial user namespace's /proc/PID/ns/user
/// (PROC_USER_INIT_INO, fixed by the kernel since Linux 3.8).
const INITIAL_USER_NS: u64 = 0xEFFF_FFFD;

/// uid_map is at most 340 lines of 3 numbers (Linux ≥ 4.15).
const UID_MAP_MAX: usize = 64 * 1024;

/// This process as the kernel compares it with another.
struct Us {
    user_ns: Option<u64>,
    uid_map: Option<Vec<u8>>,
}

impl ProcRoot {
    /// Examines the processes whose fd table (`fds`) or network namespace
    /// (`netns`) the scan could not read (both sorted by pid).
    pub fn examine_unreadable(&self, fds: &[u32], netns: &[u32]) -> UnreadableProcesses {
        let mut scratch = Vec::with_capacity(4096);
        let me = self.path.join("self");
        let ours = std::fs::read(me.join("status"))
            .map_err(|e| format!("{}: {e}", me.join("status").display()))
            .and_then(|text| parse::credentials(&text).map_err(|e| e.to_string()));
        let us = Us {
            user_ns: rustix::fs::stat(me.join("ns/user")).ok().map(|s| s.st_ino),
            uid_map: std::fs::read(me.join("uid_map")).ok(),
        };
        let mut wanted: BTreeMap<u32, (bool, bool)> = BTreeMap::new();
        for &pid in fds {
            wanted.entry(pid).or_default().0 = true;
        }
        for &pid in netns {
            wanted.entry(pid).or_default().1 = true;
        }
        let mut processes = Vec::with_capacity(wanted.len());
        let mut vanished = 0;
        if let Ok(root) = self.open_root() {
            for (pid, (fds, netns)) in wanted {
                match examine(&root, pid, fds, netns, &us, &mut scratch) {
                    Some(u) => processes.push(u),
                    None => vanished += 1,
                }
            }
        } else {
            vanished = fds.len().max(netns.len()) as u64;
        }
        UnreadableProcesses {
            ours,
            initial_user_ns: us.user_ns.map(|ino| ino == INITIAL_USER_NS),
            processes,
            vanished,
        }
    }
}

/// One process, or `None` if it is gone. (A pid reused since the scan is
/// examined as it is now: most likely readable, which the report says.)
fn examine(
    root: &OwnedFd,
    pid: u32,
    fds: bool,
    netns: bool,
    us: &Us,
    scratch: &mut Vec<u8>,
) -> Option<Unreadable> {
    let dir = open_pid(root, pid).ok()?;
    let stat = parse::stat(read_at(&dir, c"stat", scratch, Read::SeqFile).ok()?).ok()?;
    let owner_uid = rustix::fs::fstat(&dir).ok().map(|s| s.st_uid);
    let target = match read_at(&dir, c"status", scratch, Read::SeqFile) {
        Ok(text) => parse::credentials(text).map_err(|e| e.to_string()),
        Err(Errno::SRCH | Errno::NOENT) => return None,
        Err(e) => Err(format!("/proc/{pid}/status: {e}")),
    };
    let mut refused = Vec::new();
    if fds {
        refused.extend(fd_refusal(&dir)?);
    }
    if netns {
        match rustix::fs::statat(&dir, c"ns/net", AtFlags::empty()) {
            Ok(_) => {}
            Err(Errno::SRCH | Errno::NOENT) => return None,
            Err(e) => refused.push(Refusal {
                read: Refused::Netns,
                errno: e.raw_os_error(),
            }),
        }
    }
    let user_ns = user_ns(&dir, us, scratch);
    Some(Unreadable {
        pid,
        comm: stat.comm,
        kernel_thread: stat.kernel_thread,
        fds,
        netns,
        refused,
        target,
        owner_uid,
        user_ns,
    })
}

/// Opens /proc/PID/fd and reads its first link, as the walk does: the
/// refusal, if one; `None` if the process is gone.
fn fd_refusal(dir: &OwnedFd) -> Option<Option<Refusal>> {
    let refusal = |read, e: Errno| {
        Some(Some(Refusal {
            read,
            errno: e.raw_os_error(),
        }))
    };
    let fd_dir = match open_fd_dir(dir) {
        Ok(fd_dir) => fd_dir,
        Err(Errno::SRCH | Errno::NOENT) => return None,
        Err(e) => return refusal(Refused::FdDirectory, e),
    };
    let mut dirents = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut entries = RawDir::new(&fd_dir, &mut dirents);
    let mut link = [0u8; 256];
    while let Some(entry) = entries.next() {
        let Ok(entry) = entry else { return None };
        if parse_u32(entry.file_name().to_bytes()).is_none() {
            continue;
        }
        return match rustix::fs::readlinkat_raw(&fd_dir, entry.file_name(), &mut link[..]) {
            Ok(_) => Some(None),
            // That fd closed since: try the next.
            Err(Errno::NOENT) => continue,
            Err(Errno::SRCH) => None,
            Err(e) => refusal(Refused::FdLinks, e),
        };
    }
    // No fd left to try: nothing refused now.
    Some(None)
}

/// Whether the process is in our user namespace: its ns/user inode when it
/// may be read (the ptrace check guards it as it guards ns/net), else its
/// uid_map, which anyone may read and which differs from ours in another
/// namespace (equal maps prove nothing: two namespaces may map alike).
fn user_ns(dir: &OwnedFd, us: &Us, scratch: &mut Vec<u8>) -> UserNs {
    if let (Ok(st), Some(ours)) = (
        rustix::fs::statat(dir, c"ns/user", AtFlags::empty()),
        us.user_ns,
    ) {
        return if st.st_ino == ours {
            UserNs::Same
        } else {
            UserNs::Other
        };
    }
    match (
        read_at(dir, c"uid_map", scratch, Read::UpTo(UID_MAP_MAX)),
        &us.uid_map,
    ) {
        (Ok(theirs), Some(ours)) if theirs != ours.as_slice() => UserNs::Other,
        _ => UserNs::Unknown,
    }
}
