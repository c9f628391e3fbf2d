//! TCP sockets from sock_diag (inet_diag) netlink dumps.
//!
//! Per namespace, one dump that asks for `tcp_info` (the age of each
//! socket): when the per-state counts are due ([`dump_tables`]'s `counts`),
//! of every state (the counts, the flagged sockets, the listeners, every
//! inode, the ports); otherwise filtered in the kernel to CLOSE_WAIT,
//! FIN_WAIT_2 and LISTEN. Whatever the states asked, a dump walks the whole
//! TCP hash table, which every namespace shares, so one dump instead of
//! two halves the walks. Each dump is one legacy TCPDIAG_GETSOCK
//! request, which covers IPv4 and IPv6 in one walk of the kernel's TCP hash
//! table (measured: 10 ms instead of 25 ms for the flagged dump of 100k
//! sockets, 64 instead of 90 for the count dump); a kernel that refuses it
//! gets one SOCK_DIAG_BY_FAMILY request per family. The receive loop
//! handles multipart replies, NLMSG_ERROR, NLMSG_DONE carrying an errno,
//! truncated datagrams and NLM_F_DUMP_INTR (the table changed under the
//! dump: it is redone, a bounded number of times).
//!
//! The socket itself sits behind [`Transport`] so that the loop can be driven
//! by captured datagrams in tests. The same loop dumps UNIX sockets
//! ([`unix`]): a request is anything that is a [`DumpRequest`].

pub mod lookup;
pub mod parse;
pub mod ports;
pub mod replay;
pub mod tcp_info;
pub mod unix;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;

use rustc_hash::FxHashSet;

use crate::model::{Listener, NetnsId, PortRange, StateCounts, TcpSocket, TcpState};

pub use parse::ParseError;

/// An address family to dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
    /// Both at once (AF_UNSPEC), with the legacy TCPDIAG_GETSOCK request.
    Both,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    fn af(self) -> u8 {
        match self {
            Family::V4 => AF_INET,
            Family::V6 => AF_INET6,
            Family::Both => 0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
            Family::Both => "IPv4+IPv6",
        }
    }
}

/// Every state `ss -a` asks for: bits 1..=12 (TCP_ESTABLISHED through
/// TCP_NEW_SYN_RECV). TCP_BOUND_INACTIVE is left out, as `ss` does.
pub const ALL_STATES: u32 = 0x1ffe;
/// The states closewatch inspects one by one.
pub const FLAGGED_STATES: u32 = 1 << 8 | 1 << 5; // CLOSE_WAIT | FIN_WAIT2
/// TCP_LISTEN: a dump of it walks only the listening hash.
pub const LISTEN_STATE: u32 = 1 << 10;
/// What a scan without the all-states dump still counts (and lists).
pub const EVERY_SCAN_STATES: u32 = FLAGGED_STATES | LISTEN_STATE;

/// One dump request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub family: Family,
    /// `idiag_states`: a bit per TCP state.
    pub states: u32,
    /// Ask for INET_DIAG_INFO (`struct tcp_info`).
    pub tcp_info: bool,
}

/// The byte offset of `idiag_states` in the request: after the netlink header
/// and family, protocol, ext and pad.
const STATES_OFFSET: usize = parse::NETLINK_HEADER_LEN + 4;

/// The legacy request type: `struct inet_diag_req`, TCP implied. With
/// family AF_UNSPEC the kernel dumps both families in one table walk, and
/// its records carry this type instead of SOCK_DIAG_BY_FAMILY.
pub const TCPDIAG_GETSOCK: u16 = 18;
/// `struct inet_diag_req`: family, src_len, dst_len, ext, the 48-byte
/// socket id, states, dbs.
const LEGACY_REQUEST_LEN: usize = 4 + 48 + 4 + 4;

/// Encodes a dump request as the kernel expects it.
pub fn encode_request(req: &Request, seq: u32) -> Vec<u8> {
    if req.family == Family::Both {
        return encode_legacy_request(req, seq);
    }
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let socket_id = match req.family {
        Family::V4 | Family::Both => SocketId::new_v4(),
        Family::V6 => SocketId::new_v6(),
    };
    let extensions = if req.tcp_info {
        ExtensionFlags::INFO
    } else {
        ExtensionFlags::empty()
    };
    let payload = SockDiagMessage::InetRequest(InetRequest {
        family: req.family.af(),
        protocol: IPPROTO_TCP,
        extensions,
        states: StateFlags::from_bits_truncate(req.states),
        socket_id,
    });
    let mut msg = NetlinkMessage::new(header, payload.into());
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    // The crate's StateFlags stop at TCP_CLOSING; the kernel also knows
    // TCP_NEW_SYN_RECV (12). Write the mask as given.
    if let Some(field) = buf.get_mut(STATES_OFFSET..STATES_OFFSET + 4) {
        field.copy_from_slice(&req.states.to_ne_bytes());
    }
    buf
}

/// The crate has no type for the legacy request: the bytes are written here.
fn encode_legacy_request(req: &Request, seq: u32) -> Vec<u8> {
    let len = parse::NETLINK_HEADER_LEN + LEGACY_REQUEST_LEN;
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    let ext = if req.tcp_info {
        ExtensionFlags::INFO.bits()
    } else {
        0
    };
    buf.extend_from_slice(&[req.family.af(), 0, 0, ext]);
    buf.extend_from_slice(&[0u8; 48]); // any socket
    buf.extend_from_slice(&req.states.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // idiag_dbs: unused
    buf
}

/// What [`dump`] sends: a request it can encode with any sequence number
/// (each attempt has its own), and a name for its log lines.
pub trait DumpRequest {
    fn encode(&self, seq: u32) -> Vec<u8>;
    fn name(&self) -> &'static str;
}

impl DumpRequest for Request {
    fn encode(&self, seq: u32) -> Vec<u8> {
        encode_request(self, seq)
    }

    fn name(&self) -> &'static str {
        self.family.name()
    }
}

/// A netlink socket, or a recording of one.
pub trait Transport {
    fn send(&mut self, request: &[u8]) -> io::Result<()>;
    /// Receives one datagram into `buf` (cleared first, filled up to its
    /// capacity) and returns the datagram's true length, which exceeds
    /// `buf.len()` when it did not fit.
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize>;
}

/// The real thing: a NETLINK_SOCK_DIAG socket in the calling thread's network
/// namespace.
pub struct NetlinkTransport {
    socket: netlink_sys::Socket,
}

/// A dump that stalls this long is abandoned (the kernel answers in
/// milliseconds; this only guards the agent against a wedged socket).
const RECV_TIMEOUT: Duration = Duration::from_secs(10);

impl NetlinkTransport {
    pub fn open() -> io::Result<Self> {
        let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_SOCK_DIAG)?;
        socket.bind_auto()?;
        rustix::net::sockopt::set_socket_timeout(
            &socket,
            rustix::net::sockopt::Timeout::Recv,
            Some(RECV_TIMEOUT),
        )?;
        Ok(NetlinkTransport { socket })
    }
}

impl Transport for NetlinkTransport {
    fn send(&mut self, request: &[u8]) -> io::Result<()> {
        let sent = self.socket.send(request, 0)?;
        if sent != request.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", request.len()),
            ));
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        buf.clear();
        self.socket.recv(buf, libc_msg_trunc())
    }
}

fn libc_msg_trunc() -> i32 {
    // MSG_TRUNC: return the real length of a datagram longer than the buffer.
    0x20
}

/// Receives the records of one dump.
pub trait Sink {
    /// Forgets what an interrupted attempt delivered.
    fn reset(&mut self);
    fn record(&mut self, payload: &[u8]) -> Result<(), ParseError>;
}

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("netlink: {0}")]
    Io(#[from] io::Error),
    #[error("kernel answered error {errno}: {}", io::Error::from_raw_os_error(-errno))]
    Kernel { errno: i32 },
    #[error("no sock_diag handler for this family (ENOENT): protocol not available")]
    FamilyUnsupported,
    #[error("dump interrupted (NLM_F_DUMP_INTR) {attempts} times in a row")]
    Interrupted { attempts: u32 },
    #[error("datagram of {len} bytes did not fit in {cap}")]
    Truncated { len: usize, cap: usize },
    #[error("netlink socket closed before NLMSG_DONE")]
    Eof,
    /// A lookup found a socket gone or changed since it was read.
    #[error("{0}")]
    Changed(String),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

impl DumpError {
    /// Errors worth another attempt on a fresh socket.
    fn retryable(&self) -> bool {
        // A parse error is not retried: the same kernel sends the same bytes.
        matches!(self, DumpError::Truncated { .. } | DumpError::Eof)
            || matches!(self, DumpError::Io(e) if e.kind() == io::ErrorKind::Interrupted)
    }
}

/// How many times a dump is attempted before its failure is reported.
pub const MAX_ATTEMPTS: u32 = 4;
/// The first receive buffer: twice the ~32 KiB datagrams the kernel sends.
pub const RECV_BUFFER: usize = 64 * 1024;
const MAX_RECV_BUFFER: usize = 4 * 1024 * 1024;
const ENOENT: i32 = 2;

/// What one attempt ended with.
enum Attempt {
    Complete,
    Interrupted,
}

fn dump_once<T: Transport, S: Sink, R: DumpRequest + ?Sized>(
    transport: &mut T,
    req: &R,
    seq: u32,
    sink: &mut S,
    buf: &mut Vec<u8>,
) -> Result<Attempt, DumpError> {
    transport.send(&req.encode(seq))?;
    let mut interrupted = false;
    loop {
        let len = transport.recv(buf)?;
        if len == 0 {
            return Err(DumpError::Eof);
        }
        if len > buf.len() {
            return Err(DumpError::Truncated {
                len,
                cap: buf.capacity(),
            });
        }
        for msg in parse::messages(&buf[..len]) {
            let msg = msg?;
            if msg.seq != seq {
                continue; // a leftover of an earlier request
            }
            if msg.flags & NLM_F_DUMP_INTR != 0 {
                interrupted = true;
            }
            match msg.control()? {
                parse::Control::Record => sink.record(msg.payload)?,
                parse::Control::Done { error: 0 } => {
                    return Ok(if interrupted {
                        Attempt::Interrupted
                    } else {
                        Attempt::Complete
                    });
                }
                parse::Control::Done { error } if error == -ENOENT => {
                    return Err(DumpError::FamilyUnsupported)
                }
                parse::Control::Done { error } => return Err(DumpError::Kernel { errno: error }),
                parse::Control::Error { error: 0 } | parse::Control::Ignore => {}
                parse::Control::Error { error } => return Err(DumpError::Kernel { errno: error }),
            }
        }
    }
}

/// Runs a dump to completion: a fresh socket per attempt, the sink reset
/// before each, NLM_F_DUMP_INTR and truncation retried up to [`MAX_ATTEMPTS`].
pub fn dump<T: Transport, S: Sink, R: DumpRequest + ?Sized>(
    mut connect: impl FnMut() -> io::Result<T>,
    req: &R,
    sink: &mut S,
) -> Result<(), DumpError> {
    let mut buf = Vec::with_capacity(RECV_BUFFER);
    let mut last_error = None;
    for attempt in 1..=MAX_ATTEMPTS {
        sink.reset();
        let mut transport = connect()?;
        match dump_once(&mut transport, req, attempt, sink, &mut buf) {
            Ok(Attempt::Complete) => return Ok(()),
            Ok(Attempt::Interrupted) => {
                log::debug!(
                    "{} dump interrupted (attempt {attempt}), retrying",
                    req.name()
                );
                last_error = Some(DumpError::Interrupted { attempts: attempt });
            }
            Err(DumpError::Truncated { len, cap }) => {
                log::debug!("netlink datagram of {len} bytes exceeded buffer of {cap}, retrying");
                buf = Vec::with_capacity(len.max(cap * 2).min(MAX_RECV_BUFFER));
                last_error = Some(DumpError::Truncated { len, cap });
            }
            Err(e) if e.retryable() => {
                log::debug!(
                    "{} dump failed (attempt {attempt}): {e}, retrying",
                    req.name()
                );
                last_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or(DumpError::Interrupted {
        attempts: MAX_ATTEMPTS,
    }))
}

/// Keeps every socket of the dump.
#[derive(Debug, Default)]
pub struct SocketSink {
    pub netns: NetnsId,
    pub sockets: Vec<TcpSocket>,
}

impl Sink for SocketSink {
    fn reset(&mut self) {
        self.sockets.clear();
    }

    fn record(&mut self, payload: &[u8]) -> Result<(), ParseError> {
        self.sockets.push(parse::socket(payload, self.netns)?);
        Ok(())
    }
}

/// Which sockets other than listeners a [`TableSink`] keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Keep {
    /// None: it counts them.
    #[default]
    Listeners,
    /// Those in a state of [`FLAGGED_STATES`].
    Flagged,
    /// Every one the dump gives.
    Every,
}

/// Counts a dump's sockets by state and keeps its listeners, and the other
/// sockets `keep` says; if `keep_inodes`, the inode of every socket a file
/// refers to.
#[derive(Debug, Default)]
pub struct TableSink {
    pub netns: NetnsId,
    pub keep: Keep,
    pub keep_inodes: bool,
    pub states: StateCounts,
    pub sockets: Vec<TcpSocket>,
    pub listeners: Vec<Listener>,
    pub inodes: Vec<u64>,
    /// When given, the ephemeral ports every socket holds.
    pub ports: Option<ports::PortTally>,
}

impl Sink for TableSink {
    fn reset(&mut self) {
        self.states = StateCounts::default();
        self.sockets.clear();
        self.listeners.clear();
        self.inodes.clear();
        if let Some(p) = &mut self.ports {
            p.clear();
        }
    }

    fn record(&mut self, payload: &[u8]) -> Result<(), ParseError> {
        let state = parse::peek_state(payload)?;
        self.states.add(state);
        if self.keep_inodes || self.ports.is_some() {
            let inode = parse::peek_inode(payload)?;
            if self.keep_inodes && inode != 0 {
                self.inodes.push(inode);
            }
            if let Some(ports) = &mut self.ports {
                let (local, remote) = parse::endpoints(payload)?;
                ports.add(state, local, remote, inode);
            }
        }
        let kept = match self.keep {
            Keep::Listeners => false,
            Keep::Flagged => state.mask() & FLAGGED_STATES != 0,
            Keep::Every => true,
        };
        if state == TcpState::Listen {
            self.listeners.push(parse::listener(payload, self.netns)?);
        } else if kept {
            self.sockets.push(parse::socket(payload, self.netns)?);
        }
        Ok(())
    }
}

/// The TCP tables of one network namespace.
#[derive(Debug, Default)]
pub struct TcpTables {
    /// Sockets by state: every state if `counted`, else only those of
    /// [`EVERY_SCAN_STATES`].
    pub states: StateCounts,
    pub flagged: Vec<TcpSocket>,
    pub listeners: Vec<Listener>,
    /// The inode of every socket of every state (when `counted`): a socket
    /// a process holds that is in none of these is in no TCP table.
    pub inodes: Vec<u64>,
    /// Ephemeral ports in use (when `counted` and the range is known).
    pub ports: Option<ports::PortTally>,
    /// Why the namespace's port range could not be read, if it could not.
    pub port_range_error: Option<String>,
    /// ESTABLISHED sockets idle and without a timer, when asked for.
    pub idle: Option<Idle>,
    /// The namespace's connected UNIX sockets (a source fills it in).
    pub unix: unix::UnixTable,
    /// Why the UNIX dump failed, if it did.
    pub unix_error: Option<DumpError>,
    /// The namespace's listen overflow and drop counters (a source fills
    /// them in), or why they could not be read.
    pub listen: Option<Result<crate::collect::procfs::parse::ListenCounters, String>>,
    /// Whether the all-states count dump ran, and every dump succeeded.
    pub counted: bool,
    /// Whether the tables came from lookups (see [`lookup`]), not dumps.
    pub looked_up: bool,
}

/// What one namespace's dumps are asked for, beyond the flagged sockets
/// and the listeners.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wants {
    /// Every state counted (the all-states dump), with every socket's
    /// inode, and the ephemeral ports in use when the `range` is known.
    pub counts: bool,
    /// The namespace's ephemeral port range, when the caller knows it (the
    /// BPF TCP pass reads it); without it a source reads /proc/sys.
    pub range: Option<PortRange>,
    /// ESTABLISHED sockets that have received nothing for at least this
    /// long with no timer armed (the ESTABLISHED dump, with tcp_info).
    pub idle: Option<std::time::Duration>,
    /// The namespace's listen overflow and drop counters, which a source
    /// reads from /proc (no dump has them). Only the metrics export them.
    pub listen: bool,
}

/// What the ESTABLISHED dump found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Idle {
    /// Idle for at least the floor asked for, no keepalive or other timer.
    pub candidates: Vec<TcpSocket>,
    /// (local, remote, inode) of every ESTABLISHED connection between two
    /// addresses of this host (loopback, or a socket's own address): where
    /// a local peer is looked for.
    pub local: Vec<(SocketAddr, SocketAddr, u64)>,
}

impl Idle {
    fn append(&mut self, mut other: Idle) {
        self.candidates.append(&mut other.candidates);
        self.local.append(&mut other.local);
    }
}

/// Whether `remote` is an address of this host, as far as one socket tells:
/// loopback, or its own local address.
pub fn remote_is_local(local: SocketAddr, remote: SocketAddr) -> bool {
    let canonical = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(std::net::IpAddr::V4)
            .unwrap_or(std::net::IpAddr::V6(v6)),
        v4 => v4,
    };
    let r = canonical(remote.ip());
    r.is_loopback() || r == canonical(local.ip())
}

/// Keeps, of the ESTABLISHED dump, the idle sockets and the local tuples.
#[derive(Debug, Default)]
struct IdleSink {
    netns: NetnsId,
    floor_ms: u64,
    idle: Idle,
}

impl IdleSink {
    fn new(netns: NetnsId, floor: Duration) -> IdleSink {
        IdleSink {
            netns,
            floor_ms: floor.as_millis().try_into().unwrap_or(u64::MAX),
            idle: Idle::default(),
        }
    }
}

impl Sink for IdleSink {
    fn reset(&mut self) {
        self.idle = Idle::default();
    }

    fn record(&mut self, payload: &[u8]) -> Result<(), ParseError> {
        let s = parse::socket(payload, self.netns)?;
        if s.state != TcpState::Established {
            return Ok(());
        }
        if remote_is_local(s.local, s.remote) {
            self.idle.local.push((s.local, s.remote, s.inode));
        }
        let idle = s
            .info
            .is_some_and(|i| u64::from(i.last_data_recv_ms) >= self.floor_ms);
        if idle && s.timer == 0 {
            self.idle.candidates.push(s);
        }
        Ok(())
    }
}

/// A dump that failed, and for which family.
#[derive(Debug)]
pub struct FamilyError {
    pub family: Family,
    pub error: DumpError,
}

/// Dumps both families of the calling thread's namespace: one combined
/// request per dump, or, if the kernel refuses those, one per family. The
/// flagged dump runs first: the /proc walk that follows should see its
/// sockets still open. A family the kernel has no handler for (IPv6
/// disabled) is skipped, not an error; IPv4 always must answer.
///
/// Without `counts`, the all-states dump is left out and the flagged dump
/// also asks for the listeners (which it walks a small table for): that
/// dump emits every socket of the host, and is most of the cost of a scan
/// whose /proc walk came from the cache.
///
/// With `counts` and a port `range`, the all-states dump also tallies the
/// ephemeral ports in use; with `idle`, the idle connections are found in
/// the all-states dump (asked with tcp_info) when there is one, else in an
/// ESTABLISHED dump (see [`Wants`]).
pub fn dump_tables<T: Transport>(
    netns: NetnsId,
    mut connect: impl FnMut() -> io::Result<T>,
    wants: Wants,
) -> (TcpTables, Vec<FamilyError>) {
    let counts = wants.counts;
    let mut tables = TcpTables {
        counted: counts,
        ..TcpTables::default()
    };
    match dump_family(netns, Family::Both, &mut Dumper(&mut connect), wants) {
        Ok(t) => return (t, Vec::new()),
        Err(e) => log::debug!("combined TCPDIAG_GETSOCK dump failed ({e}): one dump per family"),
    }
    let mut errors = Vec::new();
    for family in Family::ALL {
        match dump_family(netns, family, &mut Dumper(&mut connect), wants) {
            Ok(t) => {
                let TcpTables {
                    states,
                    mut flagged,
                    mut listeners,
                    mut inodes,
                    ports,
                    idle,
                    ..
                } = t;
                tables.idle = match (tables.idle.take(), idle) {
                    (Some(mut mine), Some(i)) => {
                        mine.append(i);
                        Some(mine)
                    }
                    (mine, i) => mine.or(i),
                };
                tables.flagged.append(&mut flagged);
                tables.states.merge(&states);
                tables.listeners.append(&mut listeners);
                tables.inodes.append(&mut inodes);
                tables.ports = match (tables.ports.take(), ports) {
                    (Some(mut mine), Some(p)) => {
                        mine.merge(p);
                        Some(mine)
                    }
                    (mine, p) => mine.or(p),
                };
            }
            Err(DumpError::FamilyUnsupported) if family == Family::V6 => {
                log::debug!("no IPv6 sock_diag handler: IPv6 not scanned");
            }
            Err(error) => errors.push(FamilyError { family, error }),
        }
    }
    // Counts missing a family are not kept as the namespace's counts.
    tables.counted = counts && errors.is_empty();
    (tables, errors)
}

/// Fills a sink with the sockets a request asks for: by dumping the
/// calling thread's namespace, or by looking up known sockets one by one
/// ([`lookup::Lookups`]). The tables are built the same way from either.
pub trait Fill {
    fn fill<S: Sink>(&mut self, req: &Request, sink: &mut S) -> Result<(), DumpError>;
}

/// Dumps, each on a fresh socket from `connect` ([`dump`]).
struct Dumper<'a, C>(&'a mut C);

impl<T: Transport, C: FnMut() -> io::Result<T>> Fill for Dumper<'_, C> {
    fn fill<S: Sink>(&mut self, req: &Request, sink: &mut S) -> Result<(), DumpError> {
        dump(&mut *self.0, req, sink)
    }
}

/// The tables [`dump_tables`] would give, with `fill` for its dumps:
/// both families at once.
pub fn fill_tables(
    netns: NetnsId,
    fill: &mut impl Fill,
    wants: Wants,
) -> Result<TcpTables, DumpError> {
    dump_family(netns, Family::Both, fill, wants)
}

/// One dump of one family (or both): with `counts`, every state, counted,
/// keeping the flagged sockets, the listeners and every inode; without,
/// the flagged sockets and the listeners alone (and the idle connections
/// in a dump of their own when due).
fn dump_family(
    netns: NetnsId,
    family: Family,
    fill: &mut impl Fill,
    wants: Wants,
) -> Result<TcpTables, DumpError> {
    let Wants {
        counts,
        range,
        idle,
        listen: _,
    } = wants;
    if counts {
        let (all, idle) = dump_all_states(netns, family, fill, range, idle)?;
        return Ok(TcpTables {
            states: all.states,
            flagged: all.sockets,
            listeners: all.listeners,
            inodes: all.inodes,
            ports: all.ports,
            idle,
            counted: true,
            ..TcpTables::default()
        });
    }
    let mut flagged = TableSink {
        netns,
        keep: Keep::Flagged,
        ..TableSink::default()
    };
    let req = Request {
        family,
        states: EVERY_SCAN_STATES,
        tcp_info: true,
    };
    fill.fill(&req, &mut flagged)?;
    let idle = match idle {
        Some(floor) => Some(dump_idle(netns, family, fill, floor)?),
        None => None,
    };
    Ok(TcpTables {
        states: flagged.states,
        flagged: flagged.sockets,
        listeners: flagged.listeners,
        idle,
        counted: false,
        ..TcpTables::default()
    })
}

/// The all-states dump: every state counted, the flagged sockets, every
/// inode, the listeners, and the ephemeral ports in use when the `range`
/// is known; with an `idle` floor it also judges the ESTABLISHED
/// connections. One walk of the kernel's TCP hash for all of it: a walk
/// costs the same whatever the states asked (the hash is shared by every
/// namespace), and tcp_info, which the flagged sockets' ages need, adds
/// ~10 % to the messages (100k sockets: 133 ms with it, 121 ms without).
fn dump_all_states(
    netns: NetnsId,
    family: Family,
    fill: &mut impl Fill,
    range: Option<PortRange>,
    idle: Option<Duration>,
) -> Result<(TableSink, Option<Idle>), DumpError> {
    let mut all = AllSink {
        table: TableSink {
            netns,
            keep: Keep::Flagged,
            keep_inodes: true,
            ports: range.map(ports::PortTally::new),
            ..TableSink::default()
        },
        idle: idle.map(|floor| IdleSink::new(netns, floor)),
    };
    let req = Request {
        family,
        states: ALL_STATES,
        tcp_info: true,
    };
    fill.fill(&req, &mut all)?;
    Ok((all.table, all.idle.map(|i| i.idle)))
}

/// The all-states dump's sink: the table, and the ESTABLISHED connections
/// judged for idleness when asked.
struct AllSink {
    table: TableSink,
    idle: Option<IdleSink>,
}

impl Sink for AllSink {
    fn reset(&mut self) {
        self.table.reset();
        if let Some(idle) = &mut self.idle {
            idle.reset();
        }
    }

    fn record(&mut self, payload: &[u8]) -> Result<(), ParseError> {
        self.table.record(payload)?;
        match &mut self.idle {
            Some(idle) if parse::peek_state(payload)? == TcpState::Established => {
                idle.record(payload)
            }
            _ => Ok(()),
        }
    }
}

/// The ESTABLISHED dump with tcp_info: the connections idle at least
/// `floor` with no timer armed.
fn dump_idle(
    netns: NetnsId,
    family: Family,
    fill: &mut impl Fill,
    floor: Duration,
) -> Result<Idle, DumpError> {
    let mut sink = IdleSink::new(netns, floor);
    let req = Request {
        family,
        states: TcpState::Established.mask(),
        tcp_info: true,
    };
    fill.fill(&req, &mut sink)?;
    Ok(sink.idle)
}

/// Keeps the inodes of a dump that are among `candidates`.
struct FoundSink<'a> {
    candidates: &'a FxHashSet<u64>,
    found: FxHashSet<u64>,
}

impl Sink for FoundSink<'_> {
    fn reset(&mut self) {
        self.found.clear();
    }

    fn record(&mut self, payload: &[u8]) -> Result<(), ParseError> {
        let inode = parse::peek_inode(payload)?;
        if self.candidates.contains(&inode) {
            self.found.insert(inode);
        }
        Ok(())
    }
}

/// Which of `candidates` are in a TCP table of the calling thread's
/// namespace, in any state: one all-states dump (both families at once, or
/// one per family where the legacy request is refused), keeping nothing
/// else.
pub fn found_among<T: Transport>(
    mut connect: impl FnMut() -> io::Result<T>,
    candidates: &FxHashSet<u64>,
) -> Result<FxHashSet<u64>, DumpError> {
    let mut sink = FoundSink {
        candidates,
        found: FxHashSet::default(),
    };
    let req = |family| Request {
        family,
        states: ALL_STATES,
        tcp_info: false,
    };
    if dump(&mut connect, &req(Family::Both), &mut sink).is_ok() {
        return Ok(sink.found);
    }
    let mut found = FxHashSet::default();
    for family in Family::ALL {
        dump(&mut connect, &req(family), &mut sink)?;
        found.extend(sink.found.drain());
    }
    Ok(found)
}

#[cfg(test)]
#[path = "dump_tests.rs"]
mod tests;

#[cfg(test)]
mod prop_tests;
