//! Why a process could not be read: the credentials the kernel compares
//! when another process opens its /proc/PID/fd or /proc/PID/ns entries (the
//! ptrace access check, PTRACE_MODE_READ_FSCREDS), and which read was
//! refused with which errno. Collected for the report only
//! (`Collector::examine_unreadable`); judged by `analyse::access`.

use std::fmt;

/// A capability, numbered as `linux/capability.h` numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capability(pub u8);

/// The names of `linux/capability.h`, by number (CAP_LAST_CAP is 40 in
/// Linux 5.9 to 6.18).
const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

impl Capability {
    pub const DAC_OVERRIDE: Capability = Capability(1);
    pub const DAC_READ_SEARCH: Capability = Capability(2);
    pub const SYS_PTRACE: Capability = Capability(19);

    /// `CAP_SYS_PTRACE`; a bit this build has no name for is `CAP_41` etc.
    pub fn name(self) -> String {
        NAMES
            .get(usize::from(self.0))
            .map_or_else(|| format!("CAP_{}", self.0), |n| (*n).to_string())
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A capability set as /proc/PID/status shows it (`CapEff:
/// 000001ffffffffff`): bit N is capability N.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CapSet(pub u64);

impl CapSet {
    pub const EMPTY: CapSet = CapSet(0);

    pub fn of(caps: &[Capability]) -> CapSet {
        CapSet(
            caps.iter()
                .filter(|c| c.0 < 64)
                .fold(0, |bits, c| bits | 1 << c.0),
        )
    }

    pub fn has(self, cap: Capability) -> bool {
        cap.0 < 64 && self.0 & (1 << cap.0) != 0
    }

    /// The capabilities in `self` and not in `other`.
    pub fn minus(self, other: CapSet) -> CapSet {
        CapSet(self.0 & !other.0)
    }

    pub fn union(self, other: CapSet) -> CapSet {
        CapSet(self.0 | other.0)
    }

    pub fn is_subset_of(self, other: CapSet) -> bool {
        self.minus(other).is_empty()
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// Each capability of the set, lowest number first.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        (0..64u8)
            .filter(move |&n| self.0 & (1 << n) != 0)
            .map(Capability)
    }

    /// `CAP_SYS_ADMIN, CAP_SYS_RESOURCE`: every name.
    pub fn names(self) -> Vec<String> {
        self.iter().map(Capability::name).collect()
    }
}

impl fmt::Display for CapSet {
    /// As /proc/PID/status writes it: 16 hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The credentials /proc/PID/status shows (`Uid:`, `Gid:`, `Cap*:`), as
/// they are mapped into the reader's user namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Real, effective, saved and filesystem uid.
    pub uid: [u32; 4],
    /// Real, effective, saved and filesystem gid.
    pub gid: [u32; 4],
    pub permitted: CapSet,
    pub effective: CapSet,
    /// The bounding set: what an exec can ever gain (`None`: not shown).
    pub bounding: Option<CapSet>,
}

impl Credentials {
    pub fn euid(&self) -> u32 {
        self.uid[1]
    }

    pub fn fsuid(&self) -> u32 {
        self.uid[3]
    }

    pub fn fsgid(&self) -> u32 {
        self.gid[3]
    }
}

/// Which read of a process was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Read {
    /// Opening /proc/PID/fd: file permissions (mode 0500, owned by the
    /// process's euid, or root when it is not dumpable).
    FdDirectory,
    /// Reading the links of /proc/PID/fd: the ptrace access check.
    FdLinks,
    /// /proc/PID/ns/net: the ptrace access check.
    Netns,
}

impl Read {
    pub fn name(self) -> &'static str {
        match self {
            Read::FdDirectory => "fd_directory",
            Read::FdLinks => "fd_links",
            Read::Netns => "netns",
        }
    }
}

/// A refused read and its errno (procfs answers EACCES for every refusal
/// of the ptrace check, whichever rule or security module refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub read: Read,
    pub errno: i32,
}

/// Whether a process is in this process's user namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserNs {
    /// The same namespace (equal /proc/PID/ns/user inodes).
    Same,
    /// Another one (different inodes, or a different uid_map).
    Other,
    /// Not known: its ns/user link is refused like the rest, and its
    /// uid_map reads the same as ours.
    Unknown,
}

/// A process the scan could not read, as examined after the scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    pub pid: u32,
    pub comm: String,
    /// A kernel thread (its namespace is the initial one; it has no fds).
    pub kernel_thread: bool,
    /// The fd table could not be read (counted in `skipped.permission_denied`).
    pub fds: bool,
    /// The network namespace could not be read (`netns_unknown_processes`).
    pub netns: bool,
    /// Each read tried again, refused, with its errno.
    pub refused: Vec<Refusal>,
    /// Its credentials, or why /proc/PID/status could not be read.
    pub target: Result<Credentials, String>,
    /// The owner of /proc/PID: the process's euid while it is dumpable,
    /// root (0) when it is not.
    pub owner_uid: Option<u32>,
    pub user_ns: UserNs,
}

/// What the report examined of the processes a scan could not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreadableProcesses {
    /// This process's credentials, or why they could not be read.
    pub ours: Result<Credentials, String>,
    /// Whether this process runs in the initial user namespace (ancestor of
    /// every other): a capability held there holds in every namespace.
    pub initial_user_ns: Option<bool>,
    /// By pid.
    pub processes: Vec<Unreadable>,
    /// Unreadable processes that exited before they could be examined.
    pub vanished: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_follow_the_kernel_numbering() {
        assert_eq!(Capability(0).name(), "CAP_CHOWN");
        assert_eq!(Capability::SYS_PTRACE.name(), "CAP_SYS_PTRACE");
        assert_eq!(Capability(21).name(), "CAP_SYS_ADMIN");
        assert_eq!(Capability(24).name(), "CAP_SYS_RESOURCE");
        assert_eq!(Capability(40).name(), "CAP_CHECKPOINT_RESTORE");
        assert_eq!(Capability(41).name(), "CAP_41");
    }

    #[test]
    fn a_set_decodes_to_its_names_and_prints_as_proc_does() {
        // CapPrm of pid 1 here minus ours (000001fffeffffff).
        let missing = CapSet(0x0000_01ff_ffff_ffff).minus(CapSet(0x0000_01ff_feff_ffff));
        assert_eq!(missing.names(), ["CAP_SYS_RESOURCE"]);
        assert_eq!(missing.to_string(), "0000000001000000");
        assert_eq!(CapSet(0x0000_01ff_ffff_ffff).len(), 41);
        assert!(CapSet::of(&[Capability::SYS_PTRACE]).has(Capability::SYS_PTRACE));
        assert!(!CapSet::EMPTY.has(Capability::SYS_PTRACE));
        assert!(CapSet::EMPTY.is_subset_of(CapSet(1)));
    }
}
