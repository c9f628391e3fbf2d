//! Network namespaces: which exist on the host, and running a dump inside
//! each one.
//!
//! A sock_diag socket reports the namespace it was created in, so a dump of
//! another namespace runs on a short-lived thread that has `setns`-ed into it
//! (setns on a thread moves only that thread). Namespaces are found from
//! every process's /proc/PID/ns/net (stat follows the link to the nsfs
//! inode, the namespace's identity) and from /run/netns (namespaces made with
//! `ip netns add` that may hold no process yet).

use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::thread::LinkNameSpaceType;

use super::procfs::{own_netns, ProcRoot};
use crate::model::NetnsId;

/// Where `ip netns add` keeps its namespaces.
pub const RUN_NETNS: &str = "/run/netns";

/// A namespace, and the paths through which it can be entered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub id: NetnsId,
    /// /proc/PID/ns/net of its processes (a few) and /run/netns entries.
    pub handles: Vec<PathBuf>,
    /// Processes seen in it.
    pub processes: u64,
}

/// The namespaces found, and how many processes' namespaces could not be
/// read (without CAP_SYS_PTRACE, those of other users).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovery {
    pub namespaces: Vec<Namespace>,
    pub unreadable_processes: u64,
}

/// Handles kept per namespace: enough to survive a few of its processes
/// exiting between discovery and the dump.
const HANDLES: usize = 4;

/// Finds the distinct network namespaces of `pids` and of /run/netns.
pub fn discover(root: &ProcRoot, pids: &[u32], run_netns: Option<&Path>) -> Discovery {
    let mut by_id: BTreeMap<u64, Namespace> = BTreeMap::new();
    let mut unreadable = 0;
    let mut add = |id: u64, handle: PathBuf, process: bool| {
        let ns = by_id.entry(id).or_insert_with(|| Namespace {
            id: NetnsId(id),
            handles: Vec::new(),
            processes: 0,
        });
        if ns.handles.len() < HANDLES {
            ns.handles.push(handle);
        }
        ns.processes += u64::from(process);
    };
    for pid in pids {
        let path = root.path().join(pid.to_string()).join("ns/net");
        match rustix::fs::stat(&path) {
            Ok(st) => add(st.st_ino, path, true),
            Err(Errno::ACCESS | Errno::PERM) => unreadable += 1,
            Err(_) => {} // exited, or a kernel thread without a namespace link
        }
    }
    if let Some(dir) = run_netns {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if let Ok(st) = rustix::fs::stat(e.path()) {
                    add(st.st_ino, e.path(), false);
                }
            }
        }
    }
    Discovery {
        namespaces: by_id.into_values().collect(),
        unreadable_processes: unreadable,
    }
}

/// Why a namespace was not scanned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unscanned {
    /// Opening its handle was refused (other users' /proc/PID/ns/net need
    /// CAP_SYS_PTRACE).
    OpenDenied,
    /// setns was refused (needs CAP_SYS_ADMIN).
    SetnsDenied,
    /// Every process in it exited and no /run/netns entry holds it.
    Vanished,
    Failed(String),
}

impl Unscanned {
    /// The `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            Unscanned::OpenDenied => "open_denied",
            Unscanned::SetnsDenied => "setns_denied",
            Unscanned::Vanished => "vanished",
            Unscanned::Failed(_) => "failed",
        }
    }
}

impl fmt::Display for Unscanned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unscanned::OpenDenied => {
                f.write_str("cannot open its /proc/PID/ns/net (needs CAP_SYS_PTRACE)")
            }
            Unscanned::SetnsDenied => f.write_str("setns refused (needs CAP_SYS_ADMIN)"),
            Unscanned::Vanished => f.write_str("gone before it could be scanned"),
            Unscanned::Failed(e) => write!(f, "{e}"),
        }
    }
}

fn open_handle(ns: &Namespace) -> Result<OwnedFd, Unscanned> {
    let mut denied = false;
    for h in &ns.handles {
        match rustix::fs::open(h, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => {
                // The path may now name another namespace (PID reused).
                match rustix::fs::fstat(&fd) {
                    Ok(st) if st.st_ino == ns.id.0 => return Ok(fd),
                    _ => continue,
                }
            }
            Err(Errno::ACCESS | Errno::PERM) => denied = true,
            Err(_) => {}
        }
    }
    Err(if denied {
        Unscanned::OpenDenied
    } else {
        Unscanned::Vanished
    })
}

/// Runs `f` on a thread inside namespace `ns`; the thread ends with `f`, so
/// no other code ever runs in the wrong namespace.
pub fn run_in<T: Send>(ns: &Namespace, f: impl FnOnce() -> T + Send) -> Result<T, Unscanned> {
    let fd = open_handle(ns)?;
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            match rustix::thread::move_into_link_name_space(
                fd.as_fd(),
                Some(LinkNameSpaceType::Network),
            ) {
                Ok(()) => {}
                Err(Errno::PERM | Errno::ACCESS) => return Err(Unscanned::SetnsDenied),
                Err(e) => return Err(Unscanned::Failed(format!("setns: {e}"))),
            }
            match own_netns() {
                Ok(id) if id == ns.id => Ok(f()),
                Ok(id) => Err(Unscanned::Failed(format!(
                    "setns landed in {id}, not {}",
                    ns.id
                ))),
                Err(e) => Err(Unscanned::Failed(format!("after setns: {e}"))),
            }
        });
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
