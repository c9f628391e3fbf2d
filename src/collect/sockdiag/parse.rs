//! Pure parsing of sock_diag replies: datagrams → netlink messages → sockets.
//!
//! Nothing here does I/O, so every path (multipart, errors, truncation) is
//! tested with captured bytes. Netlink headers are read through
//! netlink-packet-core's bounds-checked `NetlinkBuffer`; the inet_diag header
//! through netlink-packet-sock-diag's `InetResponseHeader`; attributes through
//! `NlasIterator`. No per-socket heap allocation.

use std::net::SocketAddr;

use netlink_packet_core::{NetlinkBuffer, NlaBuffer, NlasIterator, Parseable};
use netlink_packet_sock_diag::inet::InetResponseHeader;

use crate::model::{Listener, NetnsId, TcpSocket, TcpState};

use super::tcp_info;

/// Netlink message types (include/uapi/linux/netlink.h).
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;
/// `struct nlmsghdr` is 16 bytes.
pub const NETLINK_HEADER_LEN: usize = 16;
/// SOCK_DIAG_BY_FAMILY: the type of every socket record in a dump.
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// `struct inet_diag_msg` is 72 bytes: family, state, timer, retrans (4),
/// `inet_diag_sockid` (48), expires, rqueue, wqueue, uid, inode (20).
pub const INET_DIAG_MSG_LEN: usize = 72;
/// Attribute carrying `struct tcp_info`.
pub const INET_DIAG_INFO: u16 = 2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("{what} truncated: {have} bytes, need {need}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
}

/// One netlink message, borrowed from the datagram it came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawMessage<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// What a message means to a dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// A socket record (SOCK_DIAG_BY_FAMILY, or TCPDIAG_GETSOCK for the
    /// legacy request).
    Record,
    /// NLMSG_DONE; `error` is 0 or a negative errno (e.g. -ENOENT when the
    /// kernel has no handler for the family).
    Done { error: i32 },
    /// NLMSG_ERROR with a negative errno (0 would be an ACK).
    Error { error: i32 },
    /// NOOP, OVERRUN or anything unknown: skipped.
    Ignore,
}

fn errno_at(payload: &[u8]) -> Option<i32> {
    let b = payload.get(..4)?;
    Some(i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

impl RawMessage<'_> {
    pub fn control(&self) -> Result<Control, ParseError> {
        match self.kind {
            // Records answer a request with its own type.
            SOCK_DIAG_BY_FAMILY | super::TCPDIAG_GETSOCK => Ok(Control::Record),
            // Old kernels send DONE with no payload; that means success.
            NLMSG_DONE => Ok(Control::Done {
                error: errno_at(self.payload).unwrap_or(0),
            }),
            NLMSG_ERROR => match errno_at(self.payload) {
                Some(error) => Ok(Control::Error { error }),
                None => Err(ParseError::Truncated {
                    what: "NLMSG_ERROR",
                    need: 4,
                    have: self.payload.len(),
                }),
            },
            NLMSG_NOOP | NLMSG_OVERRUN => Ok(Control::Ignore),
            _ => Ok(Control::Ignore),
        }
    }
}

/// Iterates over the netlink messages of one datagram.
pub struct Messages<'a> {
    rest: &'a [u8],
}

/// Splits a datagram into its messages. A malformed header ends the iteration
/// with an error: nothing after it can be trusted.
pub fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages { rest: datagram }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<RawMessage<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let buf = match NetlinkBuffer::new_checked(self.rest) {
            Ok(buf) => buf,
            Err(e) => {
                let have = self.rest.len();
                self.rest = &[];
                return Some(Err(ParseError::Malformed {
                    what: "netlink header",
                    detail: format!("{e} ({have} bytes left)"),
                }));
            }
        };
        let len = buf.length() as usize;
        if len < NETLINK_HEADER_LEN {
            self.rest = &[];
            return Some(Err(ParseError::Malformed {
                what: "netlink header",
                detail: format!("nlmsg_len {len} is shorter than the header"),
            }));
        }
        let msg = RawMessage {
            kind: buf.message_type(),
            flags: buf.flags(),
            seq: buf.sequence_number(),
            payload: &self.rest[NETLINK_HEADER_LEN..len],
        };
        // Messages are 4-byte aligned; the last one may omit its padding.
        let advance = len.saturating_add(3) & !3;
        self.rest = self.rest.get(advance..).unwrap_or(&[]);
        Some(Ok(msg))
    }
}

/// The state byte of an inet_diag record, without parsing the rest: all a
/// per-state count needs.
pub fn peek_state(payload: &[u8]) -> Result<TcpState, ParseError> {
    if payload.len() < INET_DIAG_MSG_LEN {
        return Err(ParseError::Truncated {
            what: "inet_diag_msg",
            need: INET_DIAG_MSG_LEN,
            have: payload.len(),
        });
    }
    Ok(TcpState::from_kernel(payload[1]))
}

/// The inode of an inet_diag record (0: no file refers to the socket),
/// without parsing the rest.
pub fn peek_inode(payload: &[u8]) -> Result<u64, ParseError> {
    // family, state, timer, retrans, the 48-byte id, expires, rqueue,
    // wqueue, uid: the inode follows at byte 68.
    const AT: usize = 68;
    match payload.get(AT..AT + 4) {
        Some(b) => Ok(u64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))),
        None => Err(ParseError::Truncated {
            what: "inet_diag_msg",
            need: INET_DIAG_MSG_LEN,
            have: payload.len(),
        }),
    }
}

fn header(payload: &[u8]) -> Result<InetResponseHeader, ParseError> {
    if payload.len() < INET_DIAG_MSG_LEN {
        return Err(ParseError::Truncated {
            what: "inet_diag_msg",
            need: INET_DIAG_MSG_LEN,
            have: payload.len(),
        });
    }
    InetResponseHeader::parse(&payload[..INET_DIAG_MSG_LEN]).map_err(|e| ParseError::Malformed {
        what: "inet_diag_msg",
        detail: e.to_string(),
    })
}

fn cookie(raw: [u8; 8]) -> u64 {
    // Two native-endian u32 halves, low first: the `sk:` value of `ss -e`.
    let lo = u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let hi = u32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]);
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Parses an inet_diag record into a socket, reading `tcp_info` when the
/// INET_DIAG_INFO attribute is present.
pub fn socket(payload: &[u8], netns: NetnsId) -> Result<TcpSocket, ParseError> {
    let h = header(payload)?;
    let id = &h.socket_id;
    let mut info = None;
    for nla in NlasIterator::new(&payload[INET_DIAG_MSG_LEN..]) {
        let nla: NlaBuffer<&[u8]> = nla.map_err(|e| ParseError::Malformed {
            what: "inet_diag attribute",
            detail: e.to_string(),
        })?;
        if nla.kind() == INET_DIAG_INFO {
            info = Some(tcp_info::parse(nla.value())?);
        }
    }
    Ok(TcpSocket {
        netns,
        state: TcpState::from_kernel(h.state),
        local: SocketAddr::new(id.source_address, id.source_port),
        remote: SocketAddr::new(id.destination_address, id.destination_port),
        cookie: cookie(id.cookie),
        inode: u64::from(h.inode),
        uid: h.uid,
        recv_q: h.recv_queue,
        send_q: h.send_queue,
        info,
        // idiag_timer, the byte after idiag_state (header() checked the length).
        timer: payload.get(2).copied().unwrap_or(0),
        peer: None,
    })
}

/// The local and remote address of an inet_diag record.
pub fn endpoints(payload: &[u8]) -> Result<(SocketAddr, SocketAddr), ParseError> {
    let id = header(payload)?.socket_id;
    Ok((
        SocketAddr::new(id.source_address, id.source_port),
        SocketAddr::new(id.destination_address, id.destination_port),
    ))
}

/// Parses a LISTEN record into what is needed to match its accept queue.
pub fn listener(payload: &[u8], netns: NetnsId) -> Result<Listener, ParseError> {
    let h = header(payload)?;
    Ok(Listener {
        netns,
        local: SocketAddr::new(h.socket_id.source_address, h.socket_id.source_port),
        inode: u64::from(h.inode),
        // For a listener the kernel reports its accept queue as rqueue and
        // its backlog as wqueue (inet_diag: sk_ack_backlog, sk_max_ack_backlog).
        queue: h.recv_queue,
        backlog: h.send_queue,
    })
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
