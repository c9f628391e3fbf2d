//! The iterators' records as bytes: `struct task_rec`, `struct fd_rec` and
//! `struct tcp_rec` of bpf/attribution.bpf.c, in the host's byte order.
//! Change both files together.
//!
//! A read of an iterator may end inside a record: [`Decoder`] keeps the
//! partial one for the next read.

use crate::collect::sockdiag::lookup::Exact;
use crate::model::PortRange;

/// `sizeof(struct task_rec)`.
pub const TASK_RECORD: usize = 48;
/// `sizeof(struct fd_rec)`.
pub const FD_RECORD: usize = 32;

/// `sizeof(struct tcp_rec)`.
pub const TCP_RECORD: usize = 72;

/// `RLIM_INFINITY`.
const UNLIMITED: u64 = u64::MAX;

/// One thread-group leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRecord {
    pub tgid: u32,
    pub kernel_thread: bool,
    /// Nanoseconds after boot (/proc/PID/stat's starttime is this in clock ticks).
    pub start_boottime_ns: u64,
    /// The soft RLIMIT_NOFILE; `None` when unlimited.
    pub nofile: Option<u64>,
    pub euid: u32,
    /// The inode of its network namespace (0: none, it is exiting).
    pub netns: u32,
    pub comm: String,
}

/// What an fd is, as /proc/PID/fd's link would say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdKind {
    Socket,
    Pipe,
    AnonInode,
    File,
    /// A file whose inode has no link left (its size is in `FdRecord::ino`).
    Deleted,
    Other,
}

/// One open fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdRecord {
    pub tgid: u32,
    /// The task whose table holds it: not `tgid` for a thread with its own
    /// fd table.
    pub tid: u32,
    pub fd: u32,
    pub kind: FdKind,
    /// Sockets: `AF_*` and `sk_state`; in state CLOSE (7) also `SOCK_*`,
    /// `IPPROTO_*` and the inode of the socket's network namespace (0
    /// otherwise: the program reads them only where [`is_dead_tcp`] needs
    /// them).
    ///
    /// [`is_dead_tcp`]: FdRecord::is_dead_tcp
    pub family: u8,
    pub state: u8,
    pub sock_type: u8,
    pub protocol: u16,
    pub netns: u32,
    /// Sockets: the inode; deleted files: the size in bytes.
    pub ino: u64,
}

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const SOCK_STREAM: u8 = 1;
const IPPROTO_TCP: u16 = 6;
const TCP_CLOSE: u8 = 7;

impl FdRecord {
    /// A TCP socket in no TCP table: closed by a reset, or never connected
    /// (a socket leaves the tables only in state CLOSE).
    pub fn is_dead_tcp(&self) -> bool {
        self.kind == FdKind::Socket
            && matches!(self.family, AF_INET | AF_INET6)
            && self.sock_type == SOCK_STREAM
            && self.protocol == IPPROTO_TCP
            && self.state == TCP_CLOSE
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("unknown fd kind {0}")]
    Kind(u8),
    #[error("the iterator's output ended inside a record ({0} bytes left over)")]
    Truncated(usize),
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut x = [0u8; 2];
    x.copy_from_slice(&b[at..at + 2]);
    u16::from_ne_bytes(x)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_ne_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(x)
}

/// The pid a record of either kind is of (both begin with it).
pub fn tgid(record: &[u8]) -> u32 {
    record.get(..4).map_or(0, |b| u32_at(b, 0))
}

/// One `struct task_rec`.
pub fn task(b: &[u8; TASK_RECORD]) -> TaskRecord {
    let comm = &b[32..48];
    let end = comm.iter().position(|&c| c == 0).unwrap_or(comm.len());
    let nofile = u64_at(b, 16);
    TaskRecord {
        tgid: u32_at(b, 0),
        kernel_thread: u32_at(b, 4) & 1 != 0,
        start_boottime_ns: u64_at(b, 8),
        nofile: (nofile != UNLIMITED).then_some(nofile),
        euid: u32_at(b, 24),
        netns: u32_at(b, 28),
        comm: String::from_utf8_lossy(&comm[..end]).into_owned(),
    }
}

/// One `struct fd_rec`.
pub fn fd(b: &[u8; FD_RECORD]) -> Result<FdRecord, RecordError> {
    let kind = match b[12] {
        1 => FdKind::Socket,
        2 => FdKind::Pipe,
        3 => FdKind::AnonInode,
        4 => FdKind::File,
        5 => FdKind::Deleted,
        6 => FdKind::Other,
        k => return Err(RecordError::Kind(k)),
    };
    Ok(FdRecord {
        tgid: u32_at(b, 0),
        tid: u32_at(b, 4),
        fd: u32_at(b, 8),
        kind,
        family: b[13],
        state: b[14],
        sock_type: b[15],
        ino: u64_at(b, 16),
        netns: u32_at(b, 24),
        protocol: u16_at(b, 28),
    })
}

/// One fd of a TCP socket in a TCP table: the namespace it is in, and what
/// a sock_diag lookup of it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpRecord {
    /// The inode of the socket's network namespace.
    pub netns: u32,
    pub socket: Exact,
    /// The namespace's ephemeral port range (ip_local_port_range), if the
    /// kernel keeps it as the program reads it (one u32, as 6.18 does).
    pub port_range: Option<PortRange>,
}

/// `tcp_rec.port_range`: low | high << 16, 0 when not read.
fn port_range(v: u32) -> Option<PortRange> {
    let (low, high) = ((v & 0xffff) as u16, (v >> 16) as u16);
    (v != 0 && low <= high).then_some(PortRange { low, high })
}

/// One `struct tcp_rec`.
pub fn tcp(b: &[u8; TCP_RECORD]) -> TcpRecord {
    let mut saddr = [0u8; 16];
    let mut daddr = [0u8; 16];
    saddr.copy_from_slice(&b[32..48]);
    daddr.copy_from_slice(&b[48..64]);
    TcpRecord {
        netns: u32_at(b, 0),
        socket: Exact {
            family: b[4],
            state: b[5],
            sport: u16_at(b, 6),
            inode: u64_at(b, 8),
            cookie: u64_at(b, 16),
            dport: u16_at(b, 24),
            requests: u32_at(b, 28),
            saddr,
            daddr,
        },
        port_range: port_range(u32_at(b, 64)),
    }
}

/// Cuts a stream of reads into records of `N` bytes.
pub struct Decoder<const N: usize> {
    partial: [u8; N],
    len: usize,
}

impl<const N: usize> Default for Decoder<N> {
    fn default() -> Self {
        Decoder {
            partial: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> Decoder<N> {
    /// Hands every whole record of `chunk` (after what the last chunk left)
    /// to `each`.
    pub fn feed(&mut self, mut chunk: &[u8], mut each: impl FnMut(&[u8; N])) {
        if self.len > 0 {
            let take = (N - self.len).min(chunk.len());
            self.partial[self.len..self.len + take].copy_from_slice(&chunk[..take]);
            self.len += take;
            chunk = &chunk[take..];
            if self.len < N {
                return;
            }
            each(&self.partial);
            self.len = 0;
        }
        let mut records = chunk.chunks_exact(N);
        for r in &mut records {
            if let Ok(r) = <&[u8; N]>::try_from(r) {
                each(r);
            }
        }
        let rest = records.remainder();
        self.partial[..rest.len()].copy_from_slice(rest);
        self.len = rest.len();
    }

    /// The end of the stream: an error if it ended inside a record.
    pub fn finish(&self) -> Result<(), RecordError> {
        match self.len {
            0 => Ok(()),
            n => Err(RecordError::Truncated(n)),
        }
    }
}
