//! UNIX sockets from sock_diag (UNIX_DIAG) dumps: the connected stream and
//! seqpacket sockets whose connection is over, held open by a program that
//! has not noticed — the UNIX counterpart of a CLOSE_WAIT.
//!
//! One request per network namespace asks for the connected sockets
//! (`udiag_states` = 1 << TCP_ESTABLISHED: a connected UNIX socket reports
//! state 1, and keeps it after its peer is gone) with their name, peer inode
//! and receive queue. Replies are parsed from the raw bytes, as
//! [`super::parse`] does for inet, so that no input can make the parser
//! panic; they come through the receive loop [`super::dump`] (retries,
//! NLM_F_DUMP_INTR, kernel errors).
//!
//! Measured on Linux 6.18: the surviving end of a connection whose peer was
//! closed (by close(), by the death of the process holding it, by the
//! garbage collection of an fd in flight) reports peer inode 0 and
//! `sk_shutdown` 3 (SHUTDOWN_MASK), and stays in state 1. When the peer only
//! shut down its sending side, the other end shows shutdown 1
//! (RCV_SHUTDOWN) and the peer's inode. A connection still waiting in a
//! listener's accept queue also reports peer inode 0 (the embryonic peer
//! has no inode yet), but shutdown 0: the shutdown byte, not the peer
//! inode, tells a closed peer apart. A dump of 20,000 connected sockets
//! takes ~14 ms, nearly all of it in the kernel.

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NlaBuffer, NlasIterator, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::unix::{ShowFlags, StateFlags, UnixRequest as WireRequest};
use netlink_packet_sock_diag::SockDiagMessage;

use crate::model::NetnsId;
pub use crate::model::{UnixKind, UnixSocket, SHUTDOWN_MASK, UNIX_ESTABLISHED};

use super::parse::{ParseError, NETLINK_HEADER_LEN};
use super::{dump, DumpError, DumpRequest, Sink, Transport};

/// AF_UNIX, the `sdiag_family` of the request and `udiag_family` of replies.
pub const AF_UNIX: u8 = 1;
/// TCP_LISTEN: a listening UNIX socket.
pub const UNIX_LISTEN: u8 = 10;
/// The `udiag_states` of a dump of the connected sockets.
pub const CONNECTED_STATES: u32 = 1 << UNIX_ESTABLISHED;

/// `udiag_show` flags (include/uapi/linux/unix_diag.h): which attributes
/// the kernel adds to each record.
pub const UDIAG_SHOW_NAME: u32 = 0x01;
pub const UDIAG_SHOW_PEER: u32 = 0x04;
pub const UDIAG_SHOW_RQLEN: u32 = 0x10;
/// What closewatch asks for (`ss -x` asks for the same three).
pub const SHOW: u32 = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN;

/// Attribute types of a reply (the enum of unix_diag.h, checked against the
/// kernel's replies: asked for everything, 6.18 sends 0..=7 in this order).
pub const UNIX_DIAG_NAME: u16 = 0;
pub const UNIX_DIAG_PEER: u16 = 2;
pub const UNIX_DIAG_RQLEN: u16 = 4;
/// Sent with every record, asked for or not.
pub const UNIX_DIAG_SHUTDOWN: u16 = 6;

/// `struct unix_diag_msg`: family, type, state, pad, inode, cookie[2].
pub const UNIX_DIAG_MSG_LEN: usize = 16;
/// `struct unix_diag_req`: family, protocol, pad, states, ino, show, cookie[2].
pub const UNIX_DIAG_REQ_LEN: usize = 24;

/// One UNIX_DIAG dump request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnixRequest {
    /// `udiag_states`: a bit per state (1 << 1 connected, 1 << 10 listening).
    pub states: u32,
    /// `udiag_show`: the `UDIAG_SHOW_*` flags.
    pub show: u32,
}

impl UnixRequest {
    /// The connected sockets, with name, peer and queue lengths.
    pub const CONNECTED: UnixRequest = UnixRequest {
        states: CONNECTED_STATES,
        show: SHOW,
    };
}

/// Offsets in the encoded request: after the netlink header, the family,
/// protocol and pad (4), then states; ino (4), then show.
const STATES_OFFSET: usize = NETLINK_HEADER_LEN + 4;
const SHOW_OFFSET: usize = NETLINK_HEADER_LEN + 12;

/// Encodes a UNIX_DIAG dump request (SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST |
/// NLM_F_DUMP) as the kernel expects it.
pub fn encode_request(req: &UnixRequest, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let payload = SockDiagMessage::UnixRequest(WireRequest {
        state_flags: StateFlags::from_bits_truncate(req.states),
        inode: 0,
        show_flags: ShowFlags::from_bits_truncate(req.show),
        // Ignored by a dump.
        cookie: [0; 8],
    });
    let mut msg = NetlinkMessage::new(header, payload.into());
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    // The crate's flags know only ESTABLISHED and LISTEN, and no
    // UDIAG_SHOW_UID: write both masks as given.
    for (at, value) in [(STATES_OFFSET, req.states), (SHOW_OFFSET, req.show)] {
        if let Some(field) = buf.get_mut(at..at + 4) {
            field.copy_from_slice(&value.to_ne_bytes());
        }
    }
    buf
}

impl DumpRequest for UnixRequest {
    fn encode(&self, seq: u32) -> Vec<u8> {
        encode_request(self, seq)
    }

    fn name(&self) -> &'static str {
        "UNIX"
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let f: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_ne_bytes(f))
}

fn truncated(what: &'static str, need: usize, have: usize) -> ParseError {
    ParseError::Truncated { what, need, have }
}

/// Parses a UNIX_DIAG record (the payload of a SOCK_DIAG_BY_FAMILY
/// message): `struct unix_diag_msg`, then its attributes. Unknown
/// attributes are skipped; a known one too short for its value, or an
/// attribute whose length leaves the record, is an error.
pub fn socket(payload: &[u8], netns: NetnsId) -> Result<UnixSocket, ParseError> {
    let h: &[u8; UNIX_DIAG_MSG_LEN] = payload
        .get(..UNIX_DIAG_MSG_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| truncated("unix_diag_msg", UNIX_DIAG_MSG_LEN, payload.len()))?;
    let [family, kind, state, _pad, i0, i1, i2, i3, c0, c1, c2, c3, c4, c5, c6, c7] = *h;
    if family != AF_UNIX {
        return Err(ParseError::Malformed {
            what: "unix_diag_msg",
            detail: format!("udiag_family {family}, not AF_UNIX"),
        });
    }
    // The cookie is two native-endian u32 halves, low first, as for inet.
    let lo = u32::from_ne_bytes([c0, c1, c2, c3]);
    let hi = u32::from_ne_bytes([c4, c5, c6, c7]);
    let mut s = UnixSocket {
        netns,
        inode: u64::from(u32::from_ne_bytes([i0, i1, i2, i3])),
        cookie: (u64::from(hi) << 32) | u64::from(lo),
        kind: UnixKind::from_kernel(kind),
        state,
        peer: None,
        shutdown: None,
        recv_q: None,
        name: None,
    };
    for nla in NlasIterator::new(&payload[UNIX_DIAG_MSG_LEN..]) {
        let nla: NlaBuffer<&[u8]> = nla.map_err(|e| ParseError::Malformed {
            what: "unix_diag attribute",
            detail: e.to_string(),
        })?;
        let value = nla.value();
        match nla.kind() {
            UNIX_DIAG_NAME => s.name = Some(value.to_vec()),
            UNIX_DIAG_PEER => {
                let peer =
                    u32_at(value, 0).ok_or_else(|| truncated("UNIX_DIAG_PEER", 4, value.len()))?;
                s.peer = Some(u64::from(peer));
            }
            UNIX_DIAG_RQLEN => {
                // struct unix_diag_rqlen { rqueue, wqueue }.
                if value.len() < 8 {
                    return Err(truncated("UNIX_DIAG_RQLEN", 8, value.len()));
                }
                s.recv_q = u32_at(value, 0);
            }
            UNIX_DIAG_SHUTDOWN => {
                let b = value
                    .first()
                    .ok_or_else(|| truncated("UNIX_DIAG_SHUTDOWN", 1, 0))?;
                s.shutdown = Some(*b);
            }
            _ => {}
        }
    }
    Ok(s)
}

/// Keeps, of a dump, the connections whose peer is closed
/// ([`UnixSocket::peer_closed`]), and counts every connected socket.
#[derive(Debug, Default)]
pub struct UnixSink {
    pub netns: NetnsId,
    /// Sockets in state 1 (connected), of every type.
    pub connected: u64,
    pub peer_closed: Vec<UnixSocket>,
}

impl Sink for UnixSink {
    fn reset(&mut self) {
        self.connected = 0;
        self.peer_closed.clear();
    }

    fn record(&mut self, payload: &[u8]) -> Result<(), ParseError> {
        let s = socket(payload, self.netns)?;
        if s.state == UNIX_ESTABLISHED {
            self.connected += 1;
        }
        if s.peer_closed() {
            self.peer_closed.push(s);
        }
        Ok(())
    }
}

/// The UNIX sockets of one network namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnixTable {
    /// Connected sockets of every type.
    pub connected: u64,
    /// Stream and seqpacket sockets whose peer is closed.
    pub peer_closed: Vec<UnixSocket>,
    /// False when the kernel has no UNIX_DIAG handler (CONFIG_UNIX_DIAG off,
    /// unix_diag not loadable): the table is empty because nothing could be
    /// seen, not because nothing is there.
    pub diag_available: bool,
}

/// -ENOENT: no sock_diag handler for the family.
const ENOENT: i32 = -2;

/// Dumps the connected UNIX sockets of the calling thread's network
/// namespace, through [`dump`] (a fresh socket per attempt, bounded
/// retries). A kernel without a UNIX_DIAG handler gives an empty table with
/// `diag_available` false, not an error: sock_diag answers such a family
/// with NLMSG_ERROR -ENOENT, and a family's own handler with NLMSG_DONE
/// -ENOENT; both are taken to mean it.
pub fn dump_unix<T: Transport>(
    netns: NetnsId,
    connect: impl FnMut() -> io::Result<T>,
) -> Result<UnixTable, DumpError> {
    let mut sink = UnixSink {
        netns,
        ..UnixSink::default()
    };
    match dump(connect, &UnixRequest::CONNECTED, &mut sink) {
        Ok(()) => Ok(UnixTable {
            connected: sink.connected,
            peer_closed: sink.peer_closed,
            diag_available: true,
        }),
        Err(DumpError::FamilyUnsupported | DumpError::Kernel { errno: ENOENT }) => {
            log::debug!("no UNIX_DIAG handler: UNIX sockets not scanned");
            Ok(UnixTable::default())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[path = "unix_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "unix_prop_tests.rs"]
mod prop_tests;
