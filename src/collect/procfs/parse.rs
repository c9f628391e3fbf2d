//! Pure parsers for the /proc files closewatch reads. They take bytes, never a
//! path, so every one is tested with captured text.

use std::str::FromStr;

use procfs::process::LimitValue;
use procfs::FromBufRead;

use crate::model::access::{CapSet, Credentials};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed {what}: {detail}")]
pub struct ParseError {
    pub what: &'static str,
    pub detail: String,
}

fn malformed(what: &'static str, detail: impl Into<String>) -> ParseError {
    ParseError {
        what,
        detail: detail.into(),
    }
}

/// The fields of /proc/PID/stat closewatch needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    pub comm: String,
    pub state: char,
    /// Field 22: clock ticks after boot. With the pid, the process's identity.
    pub start_time: u64,
    /// PF_KTHREAD in field 9 (flags): a kernel thread, which has no fd table.
    pub kernel_thread: bool,
}

/// PF_KTHREAD of include/linux/sched.h, a flag of /proc/PID/stat field 9.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Parses /proc/PID/stat. `comm` may hold spaces and parentheses, so it runs
/// from the first '(' to the *last* ')'.
pub fn stat(bytes: &[u8]) -> Result<Stat, ParseError> {
    let open = bytes
        .iter()
        .position(|&b| b == b'(')
        .ok_or_else(|| malformed("stat", "no '('"))?;
    let close = bytes
        .iter()
        .rposition(|&b| b == b')')
        .filter(|&c| c > open)
        .ok_or_else(|| malformed("stat", "no ')' after '('"))?;
    let pid = std::str::from_utf8(&bytes[..open])
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .ok_or_else(|| malformed("stat", "bad pid"))?;
    let comm = String::from_utf8_lossy(&bytes[open + 1..close]).into_owned();
    let rest = std::str::from_utf8(&bytes[close + 1..])
        .map_err(|_| malformed("stat", "not UTF-8 after comm"))?;
    // After comm: state is field 3, flags field 9, starttime field 22.
    let mut fields = rest.split_ascii_whitespace();
    let state = fields
        .next()
        .and_then(|s| s.chars().next())
        .ok_or_else(|| malformed("stat", "no state"))?;
    let flags = fields
        .nth(9 - 4)
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| malformed("stat", "no flags"))?;
    let start_time = fields
        .nth(22 - 10)
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| malformed("stat", "no starttime"))?;
    Ok(Stat {
        pid,
        comm,
        state,
        start_time,
        kernel_thread: flags & PF_KTHREAD != 0,
    })
}

/// The soft "Max open files" of /proc/PID/limits; `None` means unlimited.
pub fn max_open_files(text: &[u8]) -> Result<Option<u64>, ParseError> {
    let text = std::str::from_utf8(text).map_err(|_| malformed("limits", "not UTF-8"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .ok_or_else(|| malformed("limits", "no \"Max open files\" line"))?;
    let soft = line["Max open files".len()..]
        .split_ascii_whitespace()
        .next()
        .ok_or_else(|| malformed("limits", "no soft limit"))?;
    match LimitValue::from_str(soft) {
        Ok(LimitValue::Unlimited) => Ok(None),
        Ok(LimitValue::Value(v)) => Ok(Some(v)),
        Err(e) => Err(malformed("limits", format!("soft limit {soft:?}: {e}"))),
    }
}

/// /proc/sys/fs/file-nr: allocated handles, free handles, maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileNr {
    pub allocated: u64,
    pub free: u64,
    pub max: u64,
}

impl FileNr {
    /// Handles in use: allocated minus free (free is 0 on every kernel since 2.6).
    pub fn open(&self) -> u64 {
        self.allocated.saturating_sub(self.free)
    }
}

pub fn file_nr(text: &[u8]) -> Result<FileNr, ParseError> {
    let text = std::str::from_utf8(text).map_err(|_| malformed("file-nr", "not UTF-8"))?;
    let mut n = text.split_ascii_whitespace().map(str::parse::<u64>);
    let mut next = |name: &str| match n.next() {
        Some(Ok(v)) => Ok(v),
        _ => Err(malformed("file-nr", format!("no {name}"))),
    };
    Ok(FileNr {
        allocated: next("allocated")?,
        free: next("free")?,
        max: next("max")?,
    })
}

/// The listen-queue counters of /proc/net/netstat (`TcpExt:`), since the
/// namespace was created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenCounters {
    /// ListenOverflows: SYNs (first ones and retransmissions alike) and
    /// handshake ACKs a listener dropped because its accept queue was full.
    pub overflows: u64,
    /// ListenDrops: every drop at a listener, the overflows included.
    pub drops: u64,
}

const TCP_EXT: &[u8] = b"TcpExt:";

/// Parses /proc/net/netstat, which is per network namespace (read it as
/// /proc/thread-self/net/netstat from a thread inside the namespace). The
/// file is pairs of lines, a line of names and a line of values, each
/// starting with the same prefix (`TcpExt:`, `IpExt:`, `MPTcpExt:`). Newer
/// kernels add columns, so the two counters are found by name in the first
/// `TcpExt:` pair; the two lines must have as many fields as each other.
pub fn listen_counters(text: &[u8]) -> Result<ListenCounters, ParseError> {
    let mut lines = text.split(|&b| b == b'\n');
    let names = lines
        .by_ref()
        .find_map(|l| l.strip_prefix(TCP_EXT))
        .ok_or_else(|| malformed("netstat", "no TcpExt: line"))?;
    let values = lines
        .next()
        .and_then(|l| l.strip_prefix(TCP_EXT))
        .ok_or_else(|| malformed("netstat", "no TcpExt: values after the names"))?;
    let (names, values) = (words(names), words(values));
    if names.len() != values.len() {
        return Err(malformed(
            "netstat",
            format!("TcpExt: {} names but {} values", names.len(), values.len()),
        ));
    }
    let counter = |name: &str| {
        let at = names
            .iter()
            .position(|n| *n == name.as_bytes())
            .ok_or_else(|| malformed("netstat", format!("no {name} in TcpExt:")))?;
        decimal(values[at]).ok_or_else(|| {
            malformed(
                "netstat",
                format!("{name} is {:?}", String::from_utf8_lossy(values[at])),
            )
        })
    };
    Ok(ListenCounters {
        overflows: counter("ListenOverflows")?,
        drops: counter("ListenDrops")?,
    })
}

/// The TCP counters of /proc/net/sockstat and sockstat6 (per network
/// namespace, read from a thread inside it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSockstat {
    /// IPv4 sockets in the namespace's TCP tables (`TCP: inuse`): every
    /// state but TIME_WAIT and the connection requests.
    pub inuse: u64,
    /// TIME_WAIT sockets of both families (`TCP: tw`).
    pub tw: u64,
    /// IPv6 sockets in the tables (`TCP6: inuse`; 0 without sockstat6).
    pub inuse6: u64,
}

/// The value after `key` on the line that starts with `prefix`: the
/// kernel prints `PREFIX: key value key value ...`.
fn sockstat_field(text: &[u8], prefix: &[u8], key: &str) -> Result<u64, ParseError> {
    let line = text
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(prefix))
        .ok_or_else(|| {
            malformed(
                "sockstat",
                format!("no {} line", String::from_utf8_lossy(prefix)),
            )
        })?;
    let words = words(line);
    let at = words
        .iter()
        .step_by(2)
        .position(|w| *w == key.as_bytes())
        .ok_or_else(|| malformed("sockstat", format!("no {key}")))?;
    words
        .get(at * 2 + 1)
        .and_then(|v| decimal(v))
        .ok_or_else(|| malformed("sockstat", format!("{key} has no number")))
}

/// Parses /proc/net/sockstat and, if IPv6 is there, /proc/net/sockstat6.
pub fn tcp_sockstat(sockstat: &[u8], sockstat6: Option<&[u8]>) -> Result<TcpSockstat, ParseError> {
    Ok(TcpSockstat {
        inuse: sockstat_field(sockstat, b"TCP:", "inuse")?,
        tw: sockstat_field(sockstat, b"TCP:", "tw")?,
        inuse6: match sockstat6 {
            Some(text) => sockstat_field(text, b"TCP6:", "inuse")?,
            None => 0,
        },
    })
}

fn words(line: &[u8]) -> Vec<&[u8]> {
    line.split(u8::is_ascii_whitespace)
        .filter(|w| !w.is_empty())
        .collect()
}

/// A decimal u64 of ASCII digits only (no sign, no spaces), as the kernel
/// prints counters.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .flatten()
    })
}

/// What an fd link (readlink of /proc/PID/fd/N) points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdTarget {
    Socket(u64),
    Pipe,
    AnonInode,
    /// A path ending in " (deleted)": the file may be unlinked (confirm with
    /// the link count; a live file can have that name).
    MaybeDeleted,
    /// Any other path.
    File,
    Other,
}

const DELETED_SUFFIX: &[u8] = b" (deleted)";

pub fn fd_target(link: &[u8]) -> FdTarget {
    if let Some(inode) = bracketed(link, b"socket:[") {
        return FdTarget::Socket(inode);
    }
    if link.first() == Some(&b'/') {
        if link.ends_with(DELETED_SUFFIX) {
            return FdTarget::MaybeDeleted;
        }
        return FdTarget::File;
    }
    if link.starts_with(b"pipe:[") {
        return FdTarget::Pipe;
    }
    if link.starts_with(b"anon_inode:") {
        return FdTarget::AnonInode;
    }
    FdTarget::Other
}

/// The path of a deleted file's link, without the " (deleted)" mark.
pub fn deleted_path(link: &[u8]) -> &[u8] {
    link.strip_suffix(DELETED_SUFFIX).unwrap_or(link)
}

/// The number in `prefix[NNN]`, e.g. `socket:[123]` or `net:[4026531840]`.
fn bracketed(link: &[u8], prefix: &[u8]) -> Option<u64> {
    let digits = link.strip_prefix(prefix)?.strip_suffix(b"]")?;
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(n)
}

/// The namespace inode of a /proc/PID/ns/net link (`net:[4026531840]`).
pub fn netns_link(link: &[u8]) -> Option<u64> {
    bracketed(link, b"net:[")
}

/// /proc/PID/cmdline: NUL-separated arguments, joined with spaces.
pub fn cmdline(bytes: &[u8], max_len: usize) -> String {
    // Programs that rename themselves (setproctitle: redis-server, nginx
    // workers) leave the rest of their argv area as NUL (or blank) padding.
    let end = bytes
        .iter()
        .rposition(|&b| b != 0 && !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let trimmed = &bytes[..end];
    let cut = &trimmed[..trimmed.len().min(max_len)];
    let mut s = String::with_capacity(cut.len());
    for c in String::from_utf8_lossy(cut).chars() {
        match c {
            '\0' => s.push(' '),
            // A terminal must not act on what a process wrote in its argv.
            c if c.is_control() => s.extend(c.escape_default()),
            c => s.push(c),
        }
    }
    if trimmed.len() > max_len {
        s.push('…');
    }
    s
}

/// Where a process runs, from /proc/PID/cgroup: a container, a pod, or a
/// systemd unit, in that order of precedence, looked for in every hierarchy
/// (on hybrid hosts a cgroupfs-driver container appears only in the v1
/// lines while the v2 line still names the runtime's service).
pub fn unit_from_cgroup(text: &[u8]) -> Result<Option<String>, ParseError> {
    let groups = procfs::ProcessCGroups::from_buf_read(text)
        .map_err(|e| malformed("cgroup", e.to_string()))?;
    // Preference among hierarchies: v2 ("0::/path"), v1's name=systemd, any.
    let mut paths: Vec<&str> = Vec::with_capacity(groups.0.len());
    let v2 = groups
        .0
        .iter()
        .filter(|g| g.hierarchy == 0 && g.controllers.is_empty());
    let systemd = groups
        .0
        .iter()
        .filter(|g| g.controllers.iter().any(|c| c == "name=systemd"));
    for g in v2.chain(systemd).chain(groups.0.iter()) {
        if !paths.contains(&g.pathname.as_str()) {
            paths.push(g.pathname.as_str());
        }
    }
    Ok(paths
        .iter()
        .find_map(|p| container_from_path(p))
        .or_else(|| paths.iter().find_map(|p| pod_from_path(p)))
        .or_else(|| paths.first().and_then(|p| systemd_unit_from_path(p))))
}

fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

/// A container id in a cgroup path, shortened to 12 characters as `docker
/// ps` and `crictl ps` show it, with its runtime.
pub fn container_from_path(path: &str) -> Option<String> {
    let first = components(path).next();
    for component in components(path).rev() {
        // systemd-driver scopes.
        for (prefix, runtime) in [
            ("docker-", "docker"),
            ("cri-containerd-", "containerd"),
            ("crio-", "cri-o"),
            ("libpod-", "podman"),
        ] {
            if let Some(id) = component
                .strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(".scope"))
            {
                if is_container_id(id) {
                    return Some(format!("{runtime}:{}", &id[..12]));
                }
            }
        }
        // cgroupfs-driver directories: /docker/<id>, /kubepods/.../pod<uid>/<id>.
        if is_container_id(component) {
            let runtime = match first {
                Some("docker") => "docker",
                Some("machine.slice") => "podman",
                _ => "container",
            };
            return Some(format!("{runtime}:{}", &component[..12]));
        }
    }
    None
}

/// A Kubernetes pod uid in a cgroup path (`pod<uid>` or
/// `kubepods-<qos>-pod<uid_with_underscores>.slice`).
pub fn pod_from_path(path: &str) -> Option<String> {
    components(path)
        .rev()
        .find_map(pod_uid)
        .map(|uid| format!("pod:{uid}"))
}

/// The innermost systemd unit of a cgroup path.
pub fn systemd_unit_from_path(path: &str) -> Option<String> {
    components(path)
        .rev()
        .find(|c| is_unit(c))
        .map(str::to_string)
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn pod_uid(component: &str) -> Option<String> {
    // "pod<uid>" (cgroupfs) or "kubepods-besteffort-pod<uid_with_underscores>.slice".
    let rest = component.strip_suffix(".slice").unwrap_or(component);
    let uid = rest
        .rsplit_once("-pod")
        .map(|(_, u)| u)
        .or_else(|| rest.strip_prefix("pod"))?;
    let uid = uid.replace('_', "-");
    (uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then_some(uid)
}

fn is_unit(component: &str) -> bool {
    [".service", ".scope", ".socket", ".mount", ".swap"]
        .iter()
        .any(|s| component.ends_with(s) && component.len() > s.len())
}

/// The credentials of /proc/PID/status (uids, gids, permitted, effective
/// and bounding capabilities), through procfs's parser.
pub fn credentials(text: &[u8]) -> Result<Credentials, ParseError> {
    let s = procfs::process::Status::from_buf_read(text)
        .map_err(|e| malformed("status", e.to_string()))?;
    Ok(Credentials {
        uid: [s.ruid, s.euid, s.suid, s.fuid],
        gid: [s.rgid, s.egid, s.sgid, s.fgid],
        permitted: CapSet(s.capprm),
        effective: CapSet(s.capeff),
        bounding: s.capbnd.map(CapSet),
    })
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "prop_tests.rs"]
mod prop_tests;
