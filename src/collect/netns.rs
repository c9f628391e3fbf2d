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
use std::time::Instant;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::thread::LinkNameSpaceType;

use super::cache::PidNamespaces;
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
/// read (permission denied: the ptrace access check refused).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovery {
    pub namespaces: Vec<Namespace>,
    pub unreadable_processes: u64,
    /// Their pids, sorted.
    pub unreadable_pids: Vec<u32>,
    /// Why /run/netns (or an entry of it) could not be read, if it could
    /// not: namespaces made with `ip netns add` may then be missing. (No
    /// /run/netns at all is no error: no such namespace was ever made.)
    pub run_netns_error: Option<String>,
}

/// Handles kept per namespace: enough to survive a few of its processes
/// exiting between discovery and the dump.
const HANDLES: usize = 4;

/// What one process's /proc/PID/ns/net said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PidNetns {
    In(u64),
    Unreadable,
    /// Exited (or no namespace link at all).
    None,
}

/// The namespaces found so far, a few handles each.
#[derive(Default)]
struct Found {
    by_id: BTreeMap<u64, Namespace>,
}

impl Found {
    fn add(&mut self, id: u64, handle: impl FnOnce() -> PathBuf, process: bool) {
        let ns = self.by_id.entry(id).or_insert_with(|| Namespace {
            id: NetnsId(id),
            handles: Vec::new(),
            processes: 0,
        });
        if ns.handles.len() < HANDLES {
            ns.handles.push(handle());
        }
        ns.processes += u64::from(process);
    }

    /// With the namespaces of /run/netns, as a discovery.
    fn finish(mut self, run_netns: Option<&Path>, unreadable: Vec<u32>) -> Discovery {
        let mut run_netns_error = None;
        if let Some(dir) = run_netns {
            let found = named_namespaces(dir, &mut |id, path| self.add(id, || path, false));
            if let Err(e) = found {
                log::debug!("{e}");
                run_netns_error = Some(e);
            }
        }
        Discovery {
            namespaces: self.by_id.into_values().collect(),
            unreadable_processes: unreadable.len() as u64,
            unreadable_pids: unreadable,
            run_netns_error,
        }
    }
}

/// Finds the distinct network namespaces of `pids` and of /run/netns.
/// `pids` must be sorted (as [`ProcRoot::pids`] returns them). With `known`
/// (the agent keeps one across scans), a process's namespace read recently
/// (its rule: [`PidNamespaces`]) is not read again; /run/netns is read
/// every time.
pub fn discover(
    root: &ProcRoot,
    pids: &[u32],
    run_netns: Option<&Path>,
    mut known: Option<&mut PidNamespaces>,
    now: Instant,
) -> Discovery {
    let mut found = Found::default();
    let mut unreadable = Vec::new();
    if let Some(known) = known.as_deref_mut() {
        known.refresh(pids, now);
    }
    for &pid in pids {
        let path = || root.path().join(pid.to_string()).join("ns/net");
        let cached = known.as_deref().and_then(|k| k.get(pid));
        let ns = cached.unwrap_or_else(|| {
            let ns = match rustix::fs::stat(path()) {
                Ok(st) => PidNetns::In(st.st_ino),
                Err(Errno::ACCESS | Errno::PERM) => PidNetns::Unreadable,
                Err(_) => PidNetns::None,
            };
            if let Some(k) = known.as_deref_mut() {
                k.remember(pid, ns, now);
            }
            ns
        });
        match ns {
            PidNetns::In(id) => found.add(id, path, true),
            PidNetns::Unreadable => unreadable.push(pid),
            PidNetns::None => {}
        }
    }
    found.finish(run_netns, unreadable)
}

/// [`discover`] from namespaces already known: `(pid, namespace inode)` of
/// every process (the BPF task iterator reads them in the kernel; 0 for a
/// process that is exiting). Nothing is read per process.
pub fn discover_known(
    root: &ProcRoot,
    netns_of: impl IntoIterator<Item = (u32, u64)>,
    run_netns: Option<&Path>,
) -> Discovery {
    let mut found = Found::default();
    for (pid, id) in netns_of {
        if id != 0 {
            found.add(
                id,
                || root.path().join(pid.to_string()).join("ns/net"),
                true,
            );
        }
    }
    found.finish(run_netns, Vec::new())
}

/// Each namespace of `dir` (/run/netns) with its path; an entry removed
/// while it is read is skipped, any other failure is the error.
fn named_namespaces(dir: &Path, add: &mut dyn FnMut(u64, PathBuf)) -> Result<(), String> {
    let failed = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(failed(dir, e)),
    };
    let mut first_error = None;
    for entry in entries {
        let path = match entry {
            Ok(e) => e.path(),
            Err(e) => {
                first_error.get_or_insert_with(|| failed(dir, e));
                continue;
            }
        };
        match rustix::fs::stat(&path) {
            Ok(st) => add(st.st_ino, path),
            Err(Errno::NOENT) => {}
            Err(e) => {
                first_error.get_or_insert_with(|| failed(&path, e.into()));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Why a namespace was not scanned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unscanned {
    /// Opening its handles was refused. Discovery keeps only the handles
    /// it could read, so this is a process whose credentials changed since
    /// (an exec), or a /run/netns entry's file permissions.
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
            Unscanned::OpenDenied => f.write_str(
                "cannot open its /proc/PID/ns/net or /run/netns handles (permission denied)",
            ),
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

/// Moves the calling thread into namespace `ns`. Only for a thread made
/// for it, which ends without running anything else (see
/// `collect::tables`): the rest of the process stays in its own namespace.
pub fn enter(ns: &Namespace) -> Result<(), Unscanned> {
    let fd = open_handle(ns)?;
    match rustix::thread::move_into_link_name_space(fd.as_fd(), Some(LinkNameSpaceType::Network)) {
        Ok(()) => {}
        Err(Errno::PERM | Errno::ACCESS) => return Err(Unscanned::SetnsDenied),
        Err(e) => return Err(Unscanned::Failed(format!("setns: {e}"))),
    }
    match own_netns() {
        Ok(id) if id == ns.id => Ok(()),
        Ok(id) => Err(Unscanned::Failed(format!(
            "setns landed in {id}, not {}",
            ns.id
        ))),
        Err(e) => Err(Unscanned::Failed(format!("after setns: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A /proc-like tree whose `PID/ns/net` are plain files: their inodes
    /// stand in for namespace identities.
    fn tree(pids: &[u32]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for pid in pids {
            let ns = dir.path().join(pid.to_string()).join("ns");
            std::fs::create_dir_all(&ns).expect("mkdir");
            std::fs::write(ns.join("net"), b"").expect("write");
        }
        dir
    }

    fn ino(dir: &Path, pid: u32) -> u64 {
        std::fs::metadata(dir.join(pid.to_string()).join("ns/net"))
            .expect("stat")
            .ino()
    }

    fn ids(d: &Discovery) -> Vec<u64> {
        d.namespaces.iter().map(|n| n.id.0).collect()
    }

    #[test]
    fn known_processes_are_not_read_again_new_ones_are_and_exited_ones_are_forgotten() {
        let dir = tree(&[10, 20]);
        let root = ProcRoot::new(dir.path());
        let mut known = PidNamespaces::default();
        let t = Instant::now();
        let first = discover(&root, &[10, 20], None, Some(&mut known), t);
        let (a, b) = (ino(dir.path(), 10), ino(dir.path(), 20));
        let mut expected = vec![a, b];
        expected.sort_unstable();
        assert_eq!(ids(&first), expected);

        // Process 10 "moves" (a new inode): within the period the cache
        // still places it where it was; a one-shot discovery sees the move.
        // The old file is kept (renamed), so its inode cannot be reused.
        let net = dir.path().join("10/ns/net");
        std::fs::rename(&net, dir.path().join("10/ns/old")).expect("keep the old inode");
        std::fs::write(&net, b"").expect("write");
        let moved = ino(dir.path(), 10);
        assert_ne!(moved, a);
        let cached = discover(&root, &[10, 20], None, Some(&mut known), t);
        assert_eq!(ids(&cached), expected);
        let fresh = discover(&root, &[10, 20], None, None, t);
        assert!(ids(&fresh).contains(&moved));

        // A new process is read at once.
        std::fs::create_dir_all(dir.path().join("30/ns")).expect("mkdir");
        std::fs::write(dir.path().join("30/ns/net"), b"").expect("write");
        let with_new = discover(&root, &[10, 20, 30], None, Some(&mut known), t);
        assert!(ids(&with_new).contains(&ino(dir.path(), 30)));

        // Process 10 exits: forgotten, so a process reusing its PID is read.
        discover(&root, &[20, 30], None, Some(&mut known), t);
        let reused = discover(&root, &[10, 20, 30], None, Some(&mut known), t);
        assert!(ids(&reused).contains(&moved));
        assert_eq!(
            reused.namespaces.iter().map(|n| n.processes).sum::<u64>(),
            3
        );
    }

    #[test]
    fn an_unreadable_run_netns_is_an_error_and_a_missing_one_is_not() {
        let dir = tree(&[10]);
        let root = ProcRoot::new(dir.path());
        let t = Instant::now();
        let missing = dir.path().join("no-such-dir");
        let d = discover(&root, &[10], Some(&missing), None, t);
        assert_eq!(d.run_netns_error, None);
        assert_eq!(d.namespaces.len(), 1);
        let not_a_dir = dir.path().join("10/ns/net");
        let d = discover(&root, &[10], Some(&not_a_dir), None, t);
        assert!(
            d.run_netns_error
                .as_deref()
                .is_some_and(|e| e.contains("ns/net")),
            "{d:?}"
        );
        assert_eq!(d.namespaces.len(), 1, "the processes' namespaces stand");
    }
}
