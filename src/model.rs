//! The data model: what one scan saw, in the kernel's own terms.
//!
//! Collectors fill a [`Snapshot`]; analysis reads it and never touches the kernel.
//! Identities follow the kernel's, not convenience: a process is `(pid,
//! start_time)` and a socket is `(netns, cookie)`, so that a reused PID or inode
//! can never look like the same leak.

pub mod access;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

/// A network namespace, named by the inode of its `/proc/PID/ns/net` link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NetnsId(pub u64);

impl fmt::Display for NetnsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// TCP states as `include/net/tcp_states.h` numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    /// A request socket (TCP_NEW_SYN_RECV); `ss` shows it as SYN-RECV.
    NewSynRecv,
    /// Bound but neither listening nor connected (Linux ≥ 6.10, dumped on request).
    BoundInactive,
    /// A state number this build does not know.
    Other(u8),
}

impl TcpState {
    /// The states with a name of their own, in kernel order: the label values of
    /// `closewatch_tcp_sockets` and the keys of the JSON `tcp_states` object.
    pub const NAMED: [TcpState; 11] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
    ];

    pub fn from_kernel(n: u8) -> TcpState {
        match n {
            1 => TcpState::Established,
            2 => TcpState::SynSent,
            3 => TcpState::SynRecv,
            4 => TcpState::FinWait1,
            5 => TcpState::FinWait2,
            6 => TcpState::TimeWait,
            7 => TcpState::Close,
            8 => TcpState::CloseWait,
            9 => TcpState::LastAck,
            10 => TcpState::Listen,
            11 => TcpState::Closing,
            12 => TcpState::NewSynRecv,
            13 => TcpState::BoundInactive,
            n => TcpState::Other(n),
        }
    }

    pub fn kernel_number(self) -> u8 {
        match self {
            TcpState::Established => 1,
            TcpState::SynSent => 2,
            TcpState::SynRecv => 3,
            TcpState::FinWait1 => 4,
            TcpState::FinWait2 => 5,
            TcpState::TimeWait => 6,
            TcpState::Close => 7,
            TcpState::CloseWait => 8,
            TcpState::LastAck => 9,
            TcpState::Listen => 10,
            TcpState::Closing => 11,
            TcpState::NewSynRecv => 12,
            TcpState::BoundInactive => 13,
            TcpState::Other(n) => n,
        }
    }

    /// The name as node_exporter spells it (`close_wait`, `fin_wait2`, ...).
    /// A request socket counts as `syn_recv`, as `ss` shows it.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Established => "established",
            TcpState::SynSent => "syn_sent",
            TcpState::SynRecv | TcpState::NewSynRecv => "syn_recv",
            TcpState::FinWait1 => "fin_wait1",
            TcpState::FinWait2 => "fin_wait2",
            TcpState::TimeWait => "time_wait",
            TcpState::Close => "close",
            TcpState::CloseWait => "close_wait",
            TcpState::LastAck => "last_ack",
            TcpState::Listen => "listen",
            TcpState::Closing => "closing",
            TcpState::BoundInactive => "bound_inactive",
            TcpState::Other(_) => "unknown",
        }
    }

    /// The kernel's `idiag_states` bit for this state.
    pub fn mask(self) -> u32 {
        1u32.checked_shl(u32::from(self.kernel_number()))
            .unwrap_or(0)
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Socket counts by state, indexed by the kernel's state number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts(pub [u64; 16]);

impl StateCounts {
    pub fn add(&mut self, state: TcpState) {
        let i = usize::from(state.kernel_number()).min(15);
        self.0[i] += 1;
    }

    /// The count under a named state (request sockets fold into `syn_recv`).
    pub fn get(&self, state: TcpState) -> u64 {
        match state {
            TcpState::SynRecv => self.0[3] + self.0[12],
            s => self.0[usize::from(s.kernel_number()).min(15)],
        }
    }

    /// Takes the counts of the states in `mask` (bit N: kernel state N)
    /// from `other`, e.g. from a dump that counted only those.
    pub fn replace(&mut self, other: &StateCounts, mask: u32) {
        for (i, (a, b)) in self.0.iter_mut().zip(other.0.iter()).enumerate() {
            if mask & (1 << i) != 0 {
                *a = *b;
            }
        }
    }

    pub fn merge(&mut self, other: &StateCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(name, count)` for every named state, zeros included, in kernel order.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        TcpState::NAMED
            .iter()
            .map(move |s| (s.name(), self.get(*s)))
    }
}

/// The few `tcp_info` fields closewatch uses, in milliseconds as the kernel keeps
/// them (u32: they wrap after ~49.7 days).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    pub state: u8,
    pub last_data_sent_ms: u32,
    pub last_data_recv_ms: u32,
    /// Reset by every ACK received, the peer's FIN included: for a leaked
    /// CLOSE_WAIT socket this is the time since the peer closed.
    pub last_ack_recv_ms: u32,
}

/// One TCP socket from a sock_diag dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSocket {
    pub netns: NetnsId,
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The kernel's socket cookie: unique for the life of the host.
    pub cookie: u64,
    /// 0 when no file refers to the socket (accept queue, orphan).
    pub inode: u64,
    pub uid: u32,
    pub recv_q: u32,
    pub send_q: u32,
    pub info: Option<TcpInfo>,
    /// `idiag_timer`: the timer armed on the socket (see [`Timer`]).
    pub timer: u8,
    /// The other end, when it is on this host and the scan looked for it.
    pub peer: Option<LocalPeer>,
}

/// The timer armed on a socket, as inet_diag reports it (`idiag_timer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    None,
    Retransmit,
    KeepAlive,
    TimeWait,
    ZeroWindowProbe,
    Other(u8),
}

impl Timer {
    pub fn from_kernel(n: u8) -> Timer {
        match n {
            0 => Timer::None,
            1 => Timer::Retransmit,
            2 => Timer::KeepAlive,
            3 => Timer::TimeWait,
            4 => Timer::ZeroWindowProbe,
            n => Timer::Other(n),
        }
    }
}

/// The other end of a connection whose remote address is on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalPeer {
    /// The socket with the reverse addresses, in the same namespace.
    Socket { state: TcpState, inode: u64 },
    /// No socket has the reverse addresses: the peer is gone (it closed, or
    /// vanished without FIN or RST).
    Gone,
}

/// TCP_ESTABLISHED: the `udiag_state` of a connected UNIX socket (and of a
/// datagram socket after connect()).
pub const UNIX_ESTABLISHED: u8 = 1;
/// RCV_SHUTDOWN | SEND_SHUTDOWN: neither end can send any more.
pub const SHUTDOWN_MASK: u8 = 3;

/// `udiag_type`: the socket type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnixKind {
    /// SOCK_STREAM (1).
    Stream,
    /// SOCK_DGRAM (2).
    Dgram,
    /// SOCK_SEQPACKET (5).
    SeqPacket,
    /// Any other value, kept as sent.
    Other(u8),
}

impl UnixKind {
    pub fn from_kernel(n: u8) -> UnixKind {
        match n {
            1 => UnixKind::Stream,
            2 => UnixKind::Dgram,
            5 => UnixKind::SeqPacket,
            n => UnixKind::Other(n),
        }
    }

    pub fn kernel_number(self) -> u8 {
        match self {
            UnixKind::Stream => 1,
            UnixKind::Dgram => 2,
            UnixKind::SeqPacket => 5,
            UnixKind::Other(n) => n,
        }
    }

    /// Stream and seqpacket sockets are connections: one peer, for life.
    pub fn is_connection(self) -> bool {
        matches!(self, UnixKind::Stream | UnixKind::SeqPacket)
    }
}

/// A UNIX socket as one UNIX_DIAG record describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixSocket {
    pub netns: NetnsId,
    /// The socket's inode: `socket:[INODE]` in /proc/PID/fd.
    pub inode: u64,
    /// The kernel's socket cookie: unique for the life of the host.
    pub cookie: u64,
    pub kind: UnixKind,
    /// `udiag_state`: 1 connected, 10 listening, 7 unconnected.
    pub state: u8,
    /// UNIX_DIAG_PEER: the peer's inode, `Some(0)` when the peer has none
    /// (it was released, or still waits in a listener's accept queue);
    /// `None` when the kernel sent no peer (not connected, or not asked).
    pub peer: Option<u64>,
    /// UNIX_DIAG_SHUTDOWN: `sk_shutdown`, 1 RCV_SHUTDOWN, 2 SEND_SHUTDOWN.
    pub shutdown: Option<u8>,
    /// UNIX_DIAG_RQLEN's `udiag_rqueue`: bytes (stream) or messages not yet
    /// read; for a listener, the connections not yet accepted.
    pub recv_q: Option<u32>,
    /// UNIX_DIAG_NAME: the bound address as the kernel holds it. A path ends
    /// in its NUL terminator; an abstract name starts with a NUL and is kept
    /// byte for byte. Only bound sockets (and those accepted from a bound
    /// listener) have one.
    pub name: Option<Vec<u8>>,
}

impl UnixSocket {
    /// A connected stream or seqpacket socket whose connection is over in
    /// both directions: `sk_shutdown` is SHUTDOWN_MASK, which the kernel sets
    /// on the survivor when its peer is released (and which a peer's
    /// shutdown(SHUT_RDWR) sets too: nothing can pass either way). Without
    /// the shutdown attribute (kernels before 3.10), a peer inode of 0 is
    /// taken instead — which a connection not yet accepted also shows.
    pub fn peer_closed(&self) -> bool {
        if !self.kind.is_connection() || self.state != UNIX_ESTABLISHED {
            return false;
        }
        match self.shutdown {
            Some(s) => s & SHUTDOWN_MASK == SHUTDOWN_MASK,
            None => self.peer == Some(0),
        }
    }
}

/// Identity of a socket across scans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketKey {
    pub netns: NetnsId,
    pub cookie: u64,
}

impl TcpSocket {
    pub fn key(&self) -> SocketKey {
        SocketKey {
            netns: self.netns,
            cookie: self.cookie,
        }
    }
}

/// A listening socket: needed to name the owner of connections that wait,
/// never accepted, in its queue, and to see that queue fill up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    pub netns: NetnsId,
    pub local: SocketAddr,
    pub inode: u64,
    /// Connections waiting to be accepted (a listener's Recv-Q).
    pub queue: u32,
    /// The backlog it listens with (a listener's Send-Q); the kernel drops
    /// new connections once `queue` exceeds it.
    pub backlog: u32,
}

/// Identity of a process: a PID alone is reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessKey {
    pub pid: u32,
    /// Field 22 of /proc/PID/stat: clock ticks after boot.
    pub start_time: u64,
}

/// A socket inode that a process holds open, and the fd it holds it under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldSocket {
    pub inode: u64,
    pub fd: u32,
}

/// What a process's fd table looks like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdStats {
    pub open: u64,
    /// Soft RLIMIT_NOFILE; `None` when unlimited or unreadable.
    pub limit: Option<u64>,
    pub sockets: u64,
    pub pipes: u64,
    /// Paths: regular files, devices, directories (deleted ones included).
    pub files: u64,
    /// anon_inode: eventfd, eventpoll, timerfd, signalfd, ...
    pub anon_inodes: u64,
    /// Files deleted but still open (link count 0), as `lsof +L1` shows them.
    pub deleted_files: u64,
    pub deleted_bytes: u64,
}

impl FdStats {
    pub fn utilization(&self) -> Option<f64> {
        match self.limit {
            Some(limit) if limit > 0 => Some(self.open as f64 / limit as f64),
            _ => None,
        }
    }
}

/// One process (thread-group leader) as the /proc walk saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub key: ProcessKey,
    pub comm: String,
    pub uid: Option<u32>,
    pub fds: FdStats,
    /// Whether the fd table was read (false: permission denied, counts only).
    pub fds_walked: bool,
    /// The sockets of interest (CLOSE_WAIT, FIN_WAIT_2, listeners) it holds.
    pub sockets: Vec<HeldSocket>,
    /// The largest deleted-but-open file: path (without " (deleted)") and bytes.
    pub largest_deleted: Option<(String, u64)>,
    /// TCP sockets it holds that are in no TCP table (reset, or never
    /// connected), when the scan looked for them (see `Snapshot::dead`).
    pub dead: Vec<HeldSocket>,
}

#[cfg(test)]
impl ProcessInfo {
    /// A walked process holding `inodes` on fds 3, 4, …, with nothing else
    /// of note (the unit tests' builder).
    pub fn synthetic(
        pid: u32,
        comm: &str,
        open: u64,
        limit: Option<u64>,
        inodes: &[u64],
    ) -> ProcessInfo {
        ProcessInfo {
            key: ProcessKey {
                pid,
                start_time: u64::from(pid) * 10,
            },
            comm: comm.into(),
            uid: Some(0),
            fds: FdStats {
                open,
                limit,
                sockets: inodes.len() as u64,
                ..FdStats::default()
            },
            fds_walked: true,
            sockets: inodes
                .iter()
                .zip(3..)
                .map(|(&inode, fd)| HeldSocket { inode, fd })
                .collect(),
            largest_deleted: None,
            dead: Vec::new(),
        }
    }
}

/// What is read only for the processes a report or the metrics show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessDetails {
    pub exe: Option<String>,
    pub cmdline: String,
    /// `None`: no unit, or (see `unit_error`) unknown.
    pub unit: Option<String>,
    /// Why /proc/PID/cgroup could not be read or parsed, if it could not.
    pub unit_error: Option<String>,
    pub netns: Option<NetnsId>,
}

/// Host-wide figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostInfo {
    pub hostname: String,
    pub kernel: String,
    /// Allocated file handles minus free ones (/proc/sys/fs/file-nr).
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// Per-namespace dump results.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetnsScan {
    pub id: NetnsId,
    pub states: StateCounts,
    /// Processes seen in it (0 for a namespace known only from /run/netns).
    pub processes: u64,
    /// Local ports of its ephemeral range in use, by destination, when this
    /// scan counted every socket (the all-states dump) and read the range.
    pub ports: Option<PortUse>,
    /// Its ListenOverflows and ListenDrops (/proc/net/netstat), if read.
    pub listen_overflows: Option<u64>,
    pub listen_drops: Option<u64>,
}

/// `net.ipv4.ip_local_port_range` of a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl PortRange {
    /// Ports in the range (0 if it is inverted).
    pub fn size(self) -> u64 {
        u64::from(self.high.saturating_sub(self.low)) + u64::from(self.high >= self.low)
    }

    pub fn contains(self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }
}

/// The sockets from one local address to one remote `ip:port` whose local
/// port is in the ephemeral range: each needs a port of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub local_ip: IpAddr,
    pub remote: SocketAddr,
    /// Sockets in every state, TIME_WAIT included.
    pub in_use: u64,
    pub time_wait: u64,
    /// The inodes of those a file refers to (to name their owners).
    pub inodes: Vec<u64>,
}

/// A namespace's ephemeral ports in use: its range and its busiest
/// destinations, most ports first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortUse {
    pub range: PortRange,
    pub destinations: Vec<Destination>,
}

/// A namespace that exists but could not be dumped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnscannedNetns {
    pub id: NetnsId,
    /// Short and stable: the metric's `reason` label.
    pub reason: &'static str,
    /// For people: what was refused and what would allow it.
    pub message: String,
    pub processes: u64,
}

/// Processes the walk could not read. Neither is a scan error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Exited between listing /proc and reading it.
    pub vanished: u64,
    /// EACCES: fds (and owners) of these processes are unknown.
    pub permission_denied: u64,
    /// Failed for another reason (logged with the reason).
    pub failed: u64,
}

/// Which processes a scan could not read for lack of permission, by pid
/// (sorted): their fd tables, their network namespaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Denied {
    pub fds: Vec<u32>,
    pub netns: Vec<u32>,
}

/// What one /proc walk read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkStats {
    /// fd links read (`readlinkat`) and deleted files re-checked (`fstatat`).
    pub links_read: u64,
    /// Processes whose fd table came from the cache (unchanged fd count).
    pub processes_reused: u64,
    /// Whether every fd table was read (cold scan, periodic refresh, or a
    /// socket the cache could not place).
    pub full: bool,
    /// Links ending in " (deleted)" whose file could not be stat-ed.
    pub fd_stat_failed: u64,
}

/// Whether a scan looked for something it looks for only now and then:
/// dead sockets (it needs every namespace's every socket, which the
/// all-states dump gives: every report, once a minute in the agent) and
/// idle connections (the ESTABLISHED dump: every report, every 5 minutes
/// in the agent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Freshness {
    /// Looked for by this scan.
    Fresh,
    /// Not looked for by this scan: what the last look found stands (dead
    /// sockets: those a process still holds).
    Carried,
    /// Not looked for yet, or could not be (dead sockets: a namespace could
    /// not be dumped, and its sockets would look dead).
    #[default]
    Unknown,
}

/// How a scan mapped sockets to the processes that hold them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attribution {
    /// The /proc walk: each process's fd links, matched by socket inode
    /// against the dumps.
    Procfs,
    /// BPF iterators over every task's fd table, in the kernel.
    Bpf,
}

impl Attribution {
    pub const ALL: [Attribution; 2] = [Attribution::Bpf, Attribution::Procfs];

    /// As the JSON report's `attribution` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Attribution::Procfs => "procfs",
            Attribution::Bpf => "bpf",
        }
    }
}

/// Reads that failed without failing the scan. Each leaves one figure
/// unknown, and is counted and shown as such, never taken for "nothing
/// there".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unread {
    /// Why /run/netns could not be read: namespaces made with `ip netns add`
    /// that hold no process may be missing.
    pub run_netns: Option<String>,
    /// fds whose link ends in " (deleted)" that could not be stat-ed: whether
    /// the file is deleted, and its size, are unknown.
    pub fd_stat: u64,
    /// Namespaces whose `ip_local_port_range` could not be read: their
    /// ephemeral ports are not judged.
    pub port_range: u64,
    /// Namespaces whose /proc/net/netstat could not be read: their listen
    /// overflow counters are unknown.
    pub netstat: u64,
}

/// Which part of a scan failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    Sockdiag,
    Procfs,
    Host,
    Pid,
    /// `--attribution bpf`, and the iterators could not be used.
    Bpf,
}

impl Stage {
    /// The stages of a scan (a report adds `Pid`): the `stage` label values
    /// of `closewatch_scan_errors_total`.
    pub const SCAN: [Stage; 4] = [Stage::Sockdiag, Stage::Procfs, Stage::Host, Stage::Bpf];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Sockdiag => "sockdiag",
            Stage::Procfs => "procfs",
            Stage::Host => "host",
            Stage::Pid => "pid",
            Stage::Bpf => "bpf",
        }
    }
}

/// An error that left the scan incomplete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanError {
    pub stage: Stage,
    pub message: String,
}

/// Everything one scan saw.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// When the scan started (wall clock).
    pub scanned_at: SystemTime,
    pub duration: Duration,
    pub host: HostInfo,
    pub namespaces: Vec<NetnsScan>,
    /// CLOSE_WAIT and FIN_WAIT_2 sockets, with tcp_info.
    pub sockets: Vec<TcpSocket>,
    pub listeners: Vec<Listener>,
    pub processes: Vec<ProcessInfo>,
    pub skipped: Skipped,
    pub errors: Vec<ScanError>,
    /// Namespaces that exist but were not dumped, and why.
    pub unscanned_netns: Vec<UnscannedNetns>,
    /// Processes whose namespace could not be read (permission denied):
    /// sockets in namespaces only they are in cannot even be known to exist.
    pub netns_unknown_processes: u64,
    /// The pids behind `skipped.permission_denied` and
    /// `netns_unknown_processes`.
    pub denied: Denied,
    /// Why they could not be read, when the report examined them
    /// (`Collector::examine_unreadable`; the agent does not).
    pub unreadable: Option<access::UnreadableProcesses>,
    /// What the /proc walk read (and what it took from its cache).
    pub walk: WalkStats,
    /// Reads that failed without failing the scan.
    pub unread: Unread,
    /// Whether `ProcessInfo::dead` was looked for.
    pub dead: Freshness,
    /// ESTABLISHED sockets that received nothing for at least the idle age
    /// with no timer armed (no keepalive), with their local peer when there
    /// is one; looked for now and then (`idle_check`).
    pub idle: Vec<TcpSocket>,
    pub idle_check: Freshness,
    /// Connected UNIX stream and seqpacket sockets whose peer closed, of
    /// every namespace; and how many connected UNIX sockets there are.
    pub unix: Vec<UnixSocket>,
    pub unix_connected: u64,
    /// Fresh when every namespace's UNIX sockets were dumped.
    pub unix_check: Freshness,
    /// How the owners of the sockets were found.
    pub attribution: Attribution,
}

impl Default for Snapshot {
    /// A snapshot of nothing, taken at the epoch (for builders and tests).
    fn default() -> Self {
        Snapshot::new(SystemTime::UNIX_EPOCH)
    }
}

impl Snapshot {
    /// Whether this scan named no owner at all: the /proc walk failed, or
    /// `--attribution bpf` could not use the iterators.
    pub fn owners_unknown(&self) -> bool {
        self.errors
            .iter()
            .any(|e| matches!(e.stage, Stage::Bpf | Stage::Procfs))
            && self.processes.is_empty()
    }

    /// A snapshot of nothing yet, of a scan that started at `scanned_at`.
    pub fn new(scanned_at: SystemTime) -> Snapshot {
        Snapshot {
            scanned_at,
            duration: Duration::ZERO,
            host: HostInfo::default(),
            namespaces: Vec::new(),
            sockets: Vec::new(),
            listeners: Vec::new(),
            processes: Vec::new(),
            skipped: Skipped::default(),
            errors: Vec::new(),
            unscanned_netns: Vec::new(),
            netns_unknown_processes: 0,
            denied: Denied::default(),
            unreadable: None,
            walk: WalkStats::default(),
            unread: Unread::default(),
            dead: Freshness::Unknown,
            idle: Vec::new(),
            idle_check: Freshness::Unknown,
            unix: Vec::new(),
            unix_connected: 0,
            unix_check: Freshness::Unknown,
            // The collector's only way to name owners: its /proc walk.
            attribution: Attribution::Procfs,
        }
    }

    /// Socket counts by state over every namespace.
    pub fn state_counts(&self) -> StateCounts {
        let mut total = StateCounts::default();
        for ns in &self.namespaces {
            total.merge(&ns.states);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_takes_only_the_masked_states() {
        let mut all = StateCounts::default();
        let mut some = StateCounts::default();
        for _ in 0..5 {
            all.add(TcpState::Established);
            all.add(TcpState::CloseWait);
        }
        some.add(TcpState::CloseWait);
        some.add(TcpState::Listen);
        let mask = 1 << TcpState::CloseWait.kernel_number() | 1 << TcpState::Listen.kernel_number();
        all.replace(&some, mask);
        assert_eq!(all.get(TcpState::Established), 5);
        assert_eq!(all.get(TcpState::CloseWait), 1);
        assert_eq!(all.get(TcpState::Listen), 1);
    }

    #[test]
    fn state_numbers_round_trip() {
        for n in 0..=20u8 {
            assert_eq!(TcpState::from_kernel(n).kernel_number(), n);
        }
    }

    #[test]
    fn request_sockets_count_as_syn_recv() {
        let mut c = StateCounts::default();
        c.add(TcpState::SynRecv);
        c.add(TcpState::NewSynRecv);
        c.add(TcpState::Other(200));
        assert_eq!(c.get(TcpState::SynRecv), 2);
        assert_eq!(c.total(), 3);
        assert_eq!(c.named().count(), 11);
    }

    #[test]
    fn masks_match_kernel_bits() {
        assert_eq!(TcpState::CloseWait.mask(), 1 << 8);
        assert_eq!(TcpState::FinWait2.mask(), 1 << 5);
        assert_eq!(TcpState::Other(40).mask(), 0);
    }
}
