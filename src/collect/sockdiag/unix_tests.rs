//! The UNIX_DIAG request encodes byte for byte as the kernel accepted it;
//! replies captured from Linux 6.18 (tests/fixtures/sockdiag/unix, made by
//! its capture_unix.py) decode field by field; a connection is called
//! peer-closed exactly when its shutdown byte says so; truncated records
//! are errors; the receive loop delivers a dump into a [`UnixTable`] and
//! reads a kernel without UNIX_DIAG as an empty, unavailable table; and, on
//! the running kernel, the survivors of closed socketpairs are found.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use netlink_packet_core::NLM_F_DUMP_INTR;

use super::*;
use crate::collect::sockdiag::parse::{messages, Control, RawMessage, SOCK_DIAG_BY_FAMILY};
use crate::collect::sockdiag::replay::{rewrite_headers, Replay};
use crate::collect::sockdiag::NetlinkTransport;

/// The request closewatch sent (seq 1) and the kernel answered.
const REQUEST: &[u8] = include_bytes!("../../../tests/fixtures/sockdiag/unix/request.bin");
/// The 12 connected sockets of the capture, in one datagram.
pub(super) const DATAGRAM: &[u8] = include_bytes!("../../../tests/fixtures/sockdiag/unix/000.bin");
/// NLMSG_DONE, no error.
pub(super) const DONE: &[u8] = include_bytes!("../../../tests/fixtures/sockdiag/unix/001.bin");
/// A family without a sock_diag handler: NLMSG_ERROR -ENOENT (seq 7).
pub(super) const NO_FAMILY_HANDLER: &[u8] =
    include_bytes!("../../../tests/fixtures/sockdiag/errors/no-family-handler.bin");
/// An inet_diag protocol without a handler: NLMSG_DONE -ENOENT (seq 7).
const NO_HANDLER: &[u8] = include_bytes!("../../../tests/fixtures/sockdiag/errors/no-handler.bin");

/// The capture's sockets (inodes printed by capture_unix.py).
const HEALTHY: [u64; 2] = [2296769, 2296770];
const CLOSED_STREAM: u64 = 2296771;
const CLOSED_SEQPACKET: u64 = 2296773;
const CLOSED_DGRAM: u64 = 2296775;
const SHUT_WR_PEER: u64 = 2296777;
const SHUT_WR: u64 = 2296778;
const CLOSED_ABSTRACT_SERVER: u64 = 2296781;
const CLOSED_BY_SERVER_CLIENT: u64 = 2296783;
const PATH_CLIENT: u64 = 2296785;
const PATH_SERVER: u64 = 2296786;
const PENDING_CLIENT: u64 = 2296787;

/// The survivor of a stream socketpair whose peer wrote "hello" and closed.
#[rustfmt::skip]
const PEER_CLOSED_RECORD: [u8; 60] = [
    0x3c, 0x00, 0x00, 0x00, // nlmsg_len: 60
    0x14, 0x00, // nlmsg_type: 20 (SOCK_DIAG_BY_FAMILY)
    0x02, 0x00, // nlmsg_flags: 0x2 (NLM_F_MULTIPART)
    0x01, 0x00, 0x00, 0x00, // nlmsg_seq: 1
    0xa4, 0x12, 0x00, 0x00, // nlmsg_pid: 4772
    0x01, // udiag_family: 1 (AF_UNIX)
    0x01, // udiag_type: 1 (SOCK_STREAM)
    0x01, // udiag_state: 1 (TCP_ESTABLISHED: connected)
    0x00, // pad
    0xc3, 0x0b, 0x23, 0x00, // udiag_ino: 2296771
    0x53, 0xa1, 0x07, 0x00, // udiag_cookie[0]: 0x7a153
    0x00, 0x00, 0x00, 0x00, // udiag_cookie[1]: 0x0
    0x08, 0x00, 0x02, 0x00, // nla_len: 8, nla_type: 2 (UNIX_DIAG_PEER)
    0x00, 0x00, 0x00, 0x00, // peer inode: 0 (the peer is gone)
    0x0c, 0x00, 0x04, 0x00, // nla_len: 12, nla_type: 4 (UNIX_DIAG_RQLEN)
    0x05, 0x00, 0x00, 0x00, // udiag_rqueue: 5 ("hello", unread)
    0x00, 0x00, 0x00, 0x00, // udiag_wqueue: 0
    0x05, 0x00, 0x06, 0x00, // nla_len: 5, nla_type: 6 (UNIX_DIAG_SHUTDOWN)
    0x03, 0x00, 0x00, 0x00, // sk_shutdown: 3 (SHUTDOWN_MASK: set on the survivor when its peer was released) + padding
];

/// One end of a healthy stream socketpair.
#[rustfmt::skip]
const HEALTHY_A: [u8; 60] = [
    0x3c, 0x00, 0x00, 0x00, // nlmsg_len: 60
    0x14, 0x00, // nlmsg_type: 20 (SOCK_DIAG_BY_FAMILY)
    0x02, 0x00, // nlmsg_flags: 0x2 (NLM_F_MULTIPART)
    0x01, 0x00, 0x00, 0x00, // nlmsg_seq: 1
    0xa4, 0x12, 0x00, 0x00, // nlmsg_pid: 4772
    0x01, // udiag_family: 1 (AF_UNIX)
    0x01, // udiag_type: 1 (SOCK_STREAM)
    0x01, // udiag_state: 1 (TCP_ESTABLISHED: connected)
    0x00, // pad
    0xc1, 0x0b, 0x23, 0x00, // udiag_ino: 2296769
    0x51, 0xa1, 0x07, 0x00, // udiag_cookie[0]: 0x7a151
    0x00, 0x00, 0x00, 0x00, // udiag_cookie[1]: 0x0
    0x08, 0x00, 0x02, 0x00, // nla_len: 8, nla_type: 2 (UNIX_DIAG_PEER)
    0xc2, 0x0b, 0x23, 0x00, // peer inode: 2296770 (the other end, HEALTHY_B)
    0x0c, 0x00, 0x04, 0x00, // nla_len: 12, nla_type: 4 (UNIX_DIAG_RQLEN)
    0x00, 0x00, 0x00, 0x00, // udiag_rqueue: 0
    0x00, 0x00, 0x00, 0x00, // udiag_wqueue: 0
    0x05, 0x00, 0x06, 0x00, // nla_len: 5, nla_type: 6 (UNIX_DIAG_SHUTDOWN)
    0x00, 0x00, 0x00, 0x00, // sk_shutdown: 0 (none) + padding
];

/// The other end.
#[rustfmt::skip]
const HEALTHY_B: [u8; 60] = [
    0x3c, 0x00, 0x00, 0x00, // nlmsg_len: 60
    0x14, 0x00, // nlmsg_type: 20 (SOCK_DIAG_BY_FAMILY)
    0x02, 0x00, // nlmsg_flags: 0x2 (NLM_F_MULTIPART)
    0x01, 0x00, 0x00, 0x00, // nlmsg_seq: 1
    0xa4, 0x12, 0x00, 0x00, // nlmsg_pid: 4772
    0x01, // udiag_family: 1 (AF_UNIX)
    0x01, // udiag_type: 1 (SOCK_STREAM)
    0x01, // udiag_state: 1 (TCP_ESTABLISHED: connected)
    0x00, // pad
    0xc2, 0x0b, 0x23, 0x00, // udiag_ino: 2296770
    0x4e, 0xa1, 0x07, 0x00, // udiag_cookie[0]: 0x7a14e
    0x00, 0x00, 0x00, 0x00, // udiag_cookie[1]: 0x0
    0x08, 0x00, 0x02, 0x00, // nla_len: 8, nla_type: 2 (UNIX_DIAG_PEER)
    0xc1, 0x0b, 0x23, 0x00, // peer inode: 2296769 (HEALTHY_A)
    0x0c, 0x00, 0x04, 0x00, // nla_len: 12, nla_type: 4 (UNIX_DIAG_RQLEN)
    0x00, 0x00, 0x00, 0x00, // udiag_rqueue: 0
    0x00, 0x00, 0x00, 0x00, // udiag_wqueue: 0
    0x05, 0x00, 0x06, 0x00, // nla_len: 5, nla_type: 6 (UNIX_DIAG_SHUTDOWN)
    0x00, 0x00, 0x00, 0x00, // sk_shutdown: 0 (none) + padding
];

/// The accepted end of a connection to an abstract listener, whose client closed.
#[rustfmt::skip]
const ABSTRACT_RECORD: [u8; 76] = [
    0x4c, 0x00, 0x00, 0x00, // nlmsg_len: 76
    0x14, 0x00, // nlmsg_type: 20 (SOCK_DIAG_BY_FAMILY)
    0x02, 0x00, // nlmsg_flags: 0x2 (NLM_F_MULTIPART)
    0x01, 0x00, 0x00, 0x00, // nlmsg_seq: 1
    0xa4, 0x12, 0x00, 0x00, // nlmsg_pid: 4772
    0x01, // udiag_family: 1 (AF_UNIX)
    0x01, // udiag_type: 1 (SOCK_STREAM)
    0x01, // udiag_state: 1 (TCP_ESTABLISHED: connected)
    0x00, // pad
    0xcd, 0x0b, 0x23, 0x00, // udiag_ino: 2296781
    0x52, 0xa1, 0x07, 0x00, // udiag_cookie[0]: 0x7a152
    0x00, 0x00, 0x00, 0x00, // udiag_cookie[1]: 0x0
    0x0f, 0x00, 0x00, 0x00, // nla_len: 15, nla_type: 0 (UNIX_DIAG_NAME)
    0x00, 0x63, 0x6c, 0x6f, 0x73, 0x65, 0x77, 0x61, 0x74, 0x63, 0x68, 0x00, // "\0closewatch": an abstract name, 11 bytes, then 1 byte of padding
    0x08, 0x00, 0x02, 0x00, // nla_len: 8, nla_type: 2 (UNIX_DIAG_PEER)
    0x00, 0x00, 0x00, 0x00, // peer inode: 0 (the client is gone)
    0x0c, 0x00, 0x04, 0x00, // nla_len: 12, nla_type: 4 (UNIX_DIAG_RQLEN)
    0x00, 0x00, 0x00, 0x00, // udiag_rqueue: 0
    0x00, 0x00, 0x00, 0x00, // udiag_wqueue: 0
    0x05, 0x00, 0x06, 0x00, // nla_len: 5, nla_type: 6 (UNIX_DIAG_SHUTDOWN)
    0x03, 0x00, 0x00, 0x00, // sk_shutdown: 3 (SHUTDOWN_MASK) + padding
];

/// The accepted end of a connection to a path-bound listener.
#[rustfmt::skip]
const PATH_RECORD: [u8; 88] = [
    0x58, 0x00, 0x00, 0x00, // nlmsg_len: 88
    0x14, 0x00, // nlmsg_type: 20 (SOCK_DIAG_BY_FAMILY)
    0x02, 0x00, // nlmsg_flags: 0x2 (NLM_F_MULTIPART)
    0x01, 0x00, 0x00, 0x00, // nlmsg_seq: 1
    0xa4, 0x12, 0x00, 0x00, // nlmsg_pid: 4772
    0x01, // udiag_family: 1 (AF_UNIX)
    0x01, // udiag_type: 1 (SOCK_STREAM)
    0x01, // udiag_state: 1 (TCP_ESTABLISHED: connected)
    0x00, // pad
    0xd2, 0x0b, 0x23, 0x00, // udiag_ino: 2296786
    0x54, 0xa1, 0x07, 0x00, // udiag_cookie[0]: 0x7a154
    0x00, 0x00, 0x00, 0x00, // udiag_cookie[1]: 0x0
    0x1c, 0x00, 0x00, 0x00, // nla_len: 28, nla_type: 0 (UNIX_DIAG_NAME)
    0x2f, 0x74, 0x6d, 0x70, 0x2f, 0x63, 0x77, 0x2d, 0x63, 0x61, 0x70, 0x74, 0x75, 0x72, 0x65, 0x2f, 0x63, 0x77, 0x2e, 0x73, 0x6f, 0x63, 0x6b, 0x00, // "/tmp/cw-capture/cw.sock\0": the path and its NUL, 24 bytes
    0x08, 0x00, 0x02, 0x00, // nla_len: 8, nla_type: 2 (UNIX_DIAG_PEER)
    0xd1, 0x0b, 0x23, 0x00, // peer inode: 2296785 (the client)
    0x0c, 0x00, 0x04, 0x00, // nla_len: 12, nla_type: 4 (UNIX_DIAG_RQLEN)
    0x00, 0x00, 0x00, 0x00, // udiag_rqueue: 0
    0x00, 0x00, 0x00, 0x00, // udiag_wqueue: 0
    0x05, 0x00, 0x06, 0x00, // nla_len: 5, nla_type: 6 (UNIX_DIAG_SHUTDOWN)
    0x00, 0x00, 0x00, 0x00, // sk_shutdown: 0 (none) + padding
];

/// A client whose connection waits in the listener's accept queue.
#[rustfmt::skip]
const PENDING_RECORD: [u8; 60] = [
    0x3c, 0x00, 0x00, 0x00, // nlmsg_len: 60
    0x14, 0x00, // nlmsg_type: 20 (SOCK_DIAG_BY_FAMILY)
    0x02, 0x00, // nlmsg_flags: 0x2 (NLM_F_MULTIPART)
    0x01, 0x00, 0x00, 0x00, // nlmsg_seq: 1
    0xa4, 0x12, 0x00, 0x00, // nlmsg_pid: 4772
    0x01, // udiag_family: 1 (AF_UNIX)
    0x01, // udiag_type: 1 (SOCK_STREAM)
    0x01, // udiag_state: 1 (TCP_ESTABLISHED: connected)
    0x00, // pad
    0xd3, 0x0b, 0x23, 0x00, // udiag_ino: 2296787
    0x59, 0xa1, 0x07, 0x00, // udiag_cookie[0]: 0x7a159
    0x00, 0x00, 0x00, 0x00, // udiag_cookie[1]: 0x0
    0x08, 0x00, 0x02, 0x00, // nla_len: 8, nla_type: 2 (UNIX_DIAG_PEER)
    0x00, 0x00, 0x00, 0x00, // peer inode: 0 (the embryonic server end has no inode yet)
    0x0c, 0x00, 0x04, 0x00, // nla_len: 12, nla_type: 4 (UNIX_DIAG_RQLEN)
    0x00, 0x00, 0x00, 0x00, // udiag_rqueue: 0
    0x00, 0x00, 0x00, 0x00, // udiag_wqueue: 0
    0x05, 0x00, 0x06, 0x00, // nla_len: 5, nla_type: 6 (UNIX_DIAG_SHUTDOWN)
    0x00, 0x00, 0x00, 0x00, // sk_shutdown: 0 (none: the peer is not closed) + padding
];

pub(super) const RECORDS: [&[u8]; 6] = [
    &PEER_CLOSED_RECORD,
    &HEALTHY_A,
    &HEALTHY_B,
    &ABSTRACT_RECORD,
    &PATH_RECORD,
    &PENDING_RECORD,
];

const NETNS: NetnsId = NetnsId(42);

fn only(datagram: &[u8]) -> RawMessage<'_> {
    let msgs: Vec<_> = messages(datagram)
        .collect::<Result<_, _>>()
        .expect("well-formed");
    assert_eq!(msgs.len(), 1);
    msgs[0]
}

fn parsed(record: &[u8]) -> UnixSocket {
    let msg = only(record);
    assert_eq!(msg.kind, SOCK_DIAG_BY_FAMILY);
    assert_eq!(msg.control(), Ok(Control::Record));
    socket(msg.payload, NETNS).expect("parses")
}

/// Every socket of the captured dump.
fn captured() -> Vec<UnixSocket> {
    messages(DATAGRAM)
        .map(|m| socket(m.expect("well-formed").payload, NETNS).expect("parses"))
        .collect()
}

#[test]
fn the_commented_records_are_the_captured_bytes() {
    for r in RECORDS {
        assert!(
            DATAGRAM.windows(r.len()).any(|w| w == r),
            "record of inode {} not in 000.bin",
            parsed(r).inode
        );
    }
}

#[test]
fn the_request_encodes_exactly_as_captured() {
    let req = encode_request(&UnixRequest::CONNECTED, 1);
    assert_eq!(req, REQUEST);
    assert_eq!(req.len(), NETLINK_HEADER_LEN + UNIX_DIAG_REQ_LEN);
    #[rustfmt::skip]
    let expected: [u8; 40] = [
        0x28, 0x00, 0x00, 0x00, // nlmsg_len: 40
        0x14, 0x00, // nlmsg_type: 20 (SOCK_DIAG_BY_FAMILY)
        0x01, 0x03, // nlmsg_flags: 0x301 (NLM_F_REQUEST | NLM_F_DUMP)
        0x01, 0x00, 0x00, 0x00, // nlmsg_seq: 1
        0x00, 0x00, 0x00, 0x00, // nlmsg_pid: 0 (the kernel)
        0x01, // sdiag_family: 1 (AF_UNIX)
        0x00, // sdiag_protocol: 0
        0x00, 0x00, // pad
        0x02, 0x00, 0x00, 0x00, // udiag_states: 1 << 1 (TCP_ESTABLISHED: connected)
        0x00, 0x00, 0x00, 0x00, // udiag_ino: 0 (a dump)
        0x15, 0x00, 0x00, 0x00, // udiag_show: 0x15 (NAME | PEER | RQLEN)
        0x00, 0x00, 0x00, 0x00, // udiag_cookie[0]: 0 (ignored by a dump)
        0x00, 0x00, 0x00, 0x00, // udiag_cookie[1]: 0
    ];
    assert_eq!(req, expected);
}

#[test]
fn masks_the_crate_does_not_know_are_written_as_given() {
    // 1 << 7 (TCP_CLOSE: unconnected datagram sockets), 0x40 (UDIAG_SHOW_UID).
    let req = encode_request(
        &UnixRequest {
            states: 1 << 7 | 1 << 1,
            show: 0x40 | SHOW,
        },
        9,
    );
    assert_eq!(&req[20..24], &(1u32 << 7 | 1 << 1).to_ne_bytes());
    assert_eq!(&req[28..32], &0x55u32.to_ne_bytes());
    assert_eq!(&req[8..12], &9u32.to_ne_bytes());
}

#[test]
fn a_survivor_whose_peer_closed_field_by_field() {
    let s = parsed(&PEER_CLOSED_RECORD);
    assert_eq!(
        s,
        UnixSocket {
            netns: NETNS,
            inode: CLOSED_STREAM,
            cookie: 0x7a153,
            kind: UnixKind::Stream,
            state: UNIX_ESTABLISHED,
            peer: Some(0),
            shutdown: Some(SHUTDOWN_MASK),
            recv_q: Some(5),
            name: None,
        }
    );
    assert!(s.peer_closed());
}

#[test]
fn a_healthy_pair_points_at_each_other_and_is_not_closed() {
    let a = parsed(&HEALTHY_A);
    let b = parsed(&HEALTHY_B);
    assert_eq!((a.inode, a.peer), (HEALTHY[0], Some(HEALTHY[1])));
    assert_eq!((b.inode, b.peer), (HEALTHY[1], Some(HEALTHY[0])));
    for s in [&a, &b] {
        assert_eq!(s.kind, UnixKind::Stream);
        assert_eq!(s.shutdown, Some(0));
        assert_eq!(s.recv_q, Some(0));
        assert_eq!(s.name, None, "a socketpair is not bound");
        assert!(!s.peer_closed());
    }
    assert_ne!(a.cookie, b.cookie);
}

#[test]
fn an_abstract_name_keeps_its_leading_nul() {
    let s = parsed(&ABSTRACT_RECORD);
    assert_eq!(s.inode, CLOSED_ABSTRACT_SERVER);
    assert_eq!(s.name.as_deref(), Some(&b"\0closewatch"[..]));
    assert_eq!((s.peer, s.shutdown), (Some(0), Some(3)));
    assert!(s.peer_closed());
}

#[test]
fn a_path_name_ends_in_its_nul() {
    let s = parsed(&PATH_RECORD);
    assert_eq!(s.inode, PATH_SERVER);
    assert_eq!(s.name.as_deref(), Some(&b"/tmp/cw-capture/cw.sock\0"[..]));
    assert_eq!(s.peer, Some(PATH_CLIENT));
    assert!(!s.peer_closed());
}

#[test]
fn a_connection_waiting_to_be_accepted_has_peer_0_but_is_not_closed() {
    let s = parsed(&PENDING_RECORD);
    assert_eq!(s.inode, PENDING_CLIENT);
    assert_eq!((s.peer, s.shutdown), (Some(0), Some(0)));
    assert!(!s.peer_closed());
}

#[test]
fn the_captured_dump_flags_the_four_closed_connections_only() {
    let sockets = captured();
    assert_eq!(sockets.len(), 12);
    assert!(sockets.iter().all(|s| s.state == UNIX_ESTABLISHED));
    let mut closed: Vec<u64> = sockets
        .iter()
        .filter(|s| s.peer_closed())
        .map(|s| s.inode)
        .collect();
    closed.sort_unstable();
    assert_eq!(
        closed,
        [
            CLOSED_STREAM,
            CLOSED_SEQPACKET,
            CLOSED_ABSTRACT_SERVER,
            CLOSED_BY_SERVER_CLIENT
        ]
    );
    let by_inode = |inode| {
        sockets
            .iter()
            .find(|s| s.inode == inode)
            .expect("in the capture")
    };
    // A datagram survivor: peer 0, no shutdown, not a connection.
    let dgram = by_inode(CLOSED_DGRAM);
    assert_eq!(
        (dgram.kind, dgram.peer, dgram.shutdown),
        (UnixKind::Dgram, Some(0), Some(0))
    );
    // shutdown(SHUT_WR) by one end: RCV_SHUTDOWN on the other, both alive.
    let peer = by_inode(SHUT_WR_PEER);
    let shut = by_inode(SHUT_WR);
    assert_eq!((peer.peer, peer.shutdown), (Some(SHUT_WR), Some(1)));
    assert_eq!((shut.peer, shut.shutdown), (Some(SHUT_WR_PEER), Some(2)));
    let seqpacket = by_inode(CLOSED_SEQPACKET);
    assert_eq!(seqpacket.kind, UnixKind::SeqPacket);
    // The client of an accepted connection the server closed: unbound.
    assert_eq!(by_inode(CLOSED_BY_SERVER_CLIENT).name, None);
}

fn sample(kind: UnixKind, state: u8, peer: Option<u64>, shutdown: Option<u8>) -> UnixSocket {
    UnixSocket {
        netns: NETNS,
        inode: 1,
        cookie: 1,
        kind,
        state,
        peer,
        shutdown,
        recv_q: None,
        name: None,
    }
}

#[test]
fn peer_closed_is_decided_by_the_shutdown_byte_of_a_connected_stream_or_seqpacket() {
    use UnixKind::*;
    let cases = [
        // (kind, state, peer, shutdown) → peer_closed
        ((Stream, 1, Some(0), Some(3)), true),
        ((SeqPacket, 1, Some(0), Some(3)), true),
        // Both ends shut down, both still open: nothing can pass either.
        ((Stream, 1, Some(7), Some(3)), true),
        // Bits the kernel does not define do not hide SHUTDOWN_MASK.
        ((Stream, 1, Some(0), Some(0xff)), true),
        // Waiting in an accept queue; half-closed; healthy.
        ((Stream, 1, Some(0), Some(0)), false),
        ((Stream, 1, Some(7), Some(1)), false),
        ((Stream, 1, Some(7), Some(2)), false),
        ((Stream, 1, Some(7), Some(0)), false),
        // Not a connection, or not connected.
        ((Dgram, 1, Some(0), Some(3)), false),
        ((Other(3), 1, Some(0), Some(3)), false),
        ((Stream, 10, Some(0), Some(3)), false),
        ((Stream, 7, None, Some(3)), false),
        // Without the shutdown attribute (before Linux 3.10): the peer inode.
        ((Stream, 1, Some(0), None), true),
        ((SeqPacket, 1, Some(0), None), true),
        ((Stream, 1, Some(7), None), false),
        ((Stream, 1, None, None), false),
    ];
    for ((kind, state, peer, shutdown), closed) in cases {
        let s = sample(kind, state, peer, shutdown);
        assert_eq!(s.peer_closed(), closed, "{s:?}");
    }
}

#[test]
fn socket_types_keep_unknown_values() {
    for n in 0..=u8::MAX {
        assert_eq!(UnixKind::from_kernel(n).kernel_number(), n);
    }
    assert_eq!(UnixKind::from_kernel(3), UnixKind::Other(3));
    let mut raw = HEALTHY_A;
    raw[17] = 3; // udiag_type: 3 (SOCK_RAW)
    assert_eq!(parsed(&raw).kind, UnixKind::Other(3));
}

#[test]
fn a_truncated_record_is_an_error() {
    let payload = &PEER_CLOSED_RECORD[NETLINK_HEADER_LEN..];
    for len in 0..UNIX_DIAG_MSG_LEN {
        assert_eq!(
            socket(&payload[..len], NETNS),
            Err(ParseError::Truncated {
                what: "unix_diag_msg",
                need: UNIX_DIAG_MSG_LEN,
                have: len
            })
        );
    }
    // Cut inside an attribute: its length leaves the record.
    for len in UNIX_DIAG_MSG_LEN..payload.len() {
        let r = socket(&payload[..len], NETNS);
        // Where an attribute ends (the last one's padding may go), a
        // shorter record: fewer attributes.
        if [16, 24, 36, 41, 42, 43].contains(&len) {
            assert!(r.is_ok(), "cut at {len}: {r:?}");
        } else {
            assert!(
                matches!(
                    r,
                    Err(ParseError::Malformed {
                        what: "unix_diag attribute",
                        ..
                    })
                ),
                "cut at {len}: {r:?}"
            );
        }
    }
    // The netlink header claims 60 bytes: a shorter datagram is malformed.
    for len in 1..PEER_CLOSED_RECORD.len() {
        assert!(
            messages(&PEER_CLOSED_RECORD[..len]).any(|m| m.is_err()),
            "{len}"
        );
    }
}

/// `record` with the value of its attribute at byte `at` (of the payload)
/// cut to `keep` bytes.
fn short_attribute(record: &[u8], at: usize, keep: u16) -> Vec<u8> {
    let mut p = record[NETLINK_HEADER_LEN..].to_vec();
    let len = u16::from_ne_bytes([p[at], p[at + 1]]);
    p[at..at + 2].copy_from_slice(&(4 + keep).to_ne_bytes());
    let cut = at + 4 + usize::from(keep);
    let rest = (at + usize::from(len) + 3) & !3;
    let aligned = (cut + 3) & !3;
    p.splice(cut..rest, std::iter::repeat_n(0, aligned - cut));
    p
}

#[test]
fn known_attributes_too_short_for_their_value_are_errors() {
    // PEER at 16, RQLEN at 24, SHUTDOWN at 36 of the payload.
    let peer = short_attribute(&PEER_CLOSED_RECORD, 16, 2);
    let rqlen = short_attribute(&PEER_CLOSED_RECORD, 24, 4);
    let shutdown = short_attribute(&PEER_CLOSED_RECORD, 36, 0);
    for (p, what, need, have) in [
        (peer, "UNIX_DIAG_PEER", 4, 2),
        (rqlen, "UNIX_DIAG_RQLEN", 8, 4),
        (shutdown, "UNIX_DIAG_SHUTDOWN", 1, 0),
    ] {
        assert_eq!(
            socket(&p, NETNS),
            Err(ParseError::Truncated { what, need, have })
        );
    }
    // Longer values than the kernel sends today are read from their start.
    let mut long = PEER_CLOSED_RECORD[NETLINK_HEADER_LEN..].to_vec();
    long.extend_from_slice(&[0x0c, 0x00, 0x02, 0x00, 9, 0, 0, 0, 1, 2, 3, 4]);
    assert_eq!(socket(&long, NETNS).map(|s| s.peer), Ok(Some(9)));
}

#[test]
fn a_record_of_another_family_is_malformed() {
    let mut inet = PEER_CLOSED_RECORD;
    inet[16] = 2; // udiag_family: 2 (AF_INET)
    let err = socket(&inet[NETLINK_HEADER_LEN..], NETNS).expect_err("not AF_UNIX");
    assert!(
        matches!(
            err,
            ParseError::Malformed {
                what: "unix_diag_msg",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn unknown_attributes_are_skipped() {
    // UNIX_DIAG_MEMINFO (5), UNIX_DIAG_UID (7), a type from the future (40).
    let mut p = HEALTHY_A[NETLINK_HEADER_LEN..].to_vec();
    p.extend_from_slice(&[0x08, 0x00, 0x07, 0x00, 0xe8, 0x03, 0x00, 0x00]);
    p.extend_from_slice(&[0x05, 0x00, 0x28, 0x00, 0xff, 0x00, 0x00, 0x00]);
    let mut s = socket(&p, NETNS).expect("parses");
    s.netns = NETNS;
    assert_eq!(s, parsed(&HEALTHY_A));
}

/// A transport that replays datagrams and records what was sent.
struct Scripted {
    datagrams: VecDeque<Vec<u8>>,
    sent: Rc<RefCell<Vec<Vec<u8>>>>,
}

impl Transport for Scripted {
    fn send(&mut self, request: &[u8]) -> io::Result<()> {
        self.sent.borrow_mut().push(request.to_vec());
        Ok(())
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        buf.clear();
        let Some(d) = self.datagrams.pop_front() else {
            return Ok(0);
        };
        let n = d.len().min(buf.capacity());
        buf.extend_from_slice(&d[..n]);
        Ok(d.len())
    }
}

/// Runs [`dump_unix`] with one script per connection; returns its result,
/// what was sent, and how many connections were made.
fn run(attempts: Vec<Vec<Vec<u8>>>) -> (Result<UnixTable, DumpError>, Vec<Vec<u8>>, usize) {
    let mut attempts: VecDeque<_> = attempts.into();
    let sent = Rc::new(RefCell::new(Vec::new()));
    let mut connects = 0;
    let result = dump_unix(NETNS, || {
        connects += 1;
        Ok(Scripted {
            datagrams: attempts.pop_front().unwrap_or_default().into(),
            sent: sent.clone(),
        })
    });
    let sent = sent.borrow().clone();
    (result, sent, connects)
}

fn rewrite(datagram: &[u8], seq: u32, add_flags: u16) -> Vec<u8> {
    let mut d = datagram.to_vec();
    rewrite_headers(&mut d, Some(seq), add_flags);
    d
}

fn inodes(table: &UnixTable) -> Vec<u64> {
    let mut v: Vec<u64> = table.peer_closed.iter().map(|s| s.inode).collect();
    v.sort_unstable();
    v
}

#[test]
fn a_multipart_dump_over_two_datagrams_fills_the_table() {
    // The capture's 12 records split after the 5th, then NLMSG_DONE.
    let cut = messages(DATAGRAM)
        .take(5)
        .map(|m| (m.expect("message").payload.len() + NETLINK_HEADER_LEN + 3) & !3)
        .sum::<usize>();
    let (table, sent, connects) = run(vec![vec![
        DATAGRAM[..cut].to_vec(),
        DATAGRAM[cut..].to_vec(),
        DONE.to_vec(),
    ]]);
    let table = table.expect("dump");
    assert_eq!(connects, 1);
    assert_eq!(sent, vec![REQUEST.to_vec()]);
    assert!(table.diag_available);
    assert_eq!(table.connected, 12);
    assert_eq!(
        inodes(&table),
        [
            CLOSED_STREAM,
            CLOSED_SEQPACKET,
            CLOSED_ABSTRACT_SERVER,
            CLOSED_BY_SERVER_CLIENT
        ]
    );
    assert!(table.peer_closed.iter().all(|s| s.netns == NETNS));
}

#[test]
fn an_interrupted_dump_is_redone_and_counted_once() {
    let (table, sent, connects) = run(vec![
        vec![rewrite(DATAGRAM, 1, NLM_F_DUMP_INTR), DONE.to_vec()],
        vec![rewrite(DATAGRAM, 2, 0), rewrite(DONE, 2, 0)],
    ]);
    let table = table.expect("dump");
    assert_eq!(connects, 2);
    assert_eq!(
        &sent[1][8..12],
        &2u32.to_ne_bytes(),
        "a new sequence number"
    );
    assert_eq!(table.connected, 12);
    assert_eq!(table.peer_closed.len(), 4);
}

#[test]
fn done_with_enoent_gives_an_empty_table_marked_unavailable() {
    let (table, _, connects) = run(vec![vec![rewrite(NO_HANDLER, 1, 0)]]);
    assert_eq!(table.expect("not an error"), UnixTable::default());
    assert!(!UnixTable::default().diag_available);
    assert_eq!(connects, 1);
}

#[test]
fn nlmsg_error_enoent_for_the_family_gives_an_empty_table_too() {
    let msg = only(NO_FAMILY_HANDLER);
    assert_eq!(msg.control(), Ok(Control::Error { error: -2 }));
    let (table, _, connects) = run(vec![vec![rewrite(NO_FAMILY_HANDLER, 1, 0)]]);
    assert_eq!(table.expect("not an error"), UnixTable::default());
    assert_eq!(connects, 1);
}

#[test]
fn other_kernel_errors_and_bad_records_are_errors() {
    let mut einval = rewrite(NO_FAMILY_HANDLER, 1, 0);
    einval[16..20].copy_from_slice(&(-22i32).to_ne_bytes());
    let (table, _, _) = run(vec![vec![einval]]);
    assert!(
        matches!(table, Err(DumpError::Kernel { errno: -22 })),
        "{table:?}"
    );

    let mut bad = PEER_CLOSED_RECORD;
    bad[16] = 2; // udiag_family: AF_INET in a UNIX dump
    let (table, _, _) = run(vec![vec![bad.to_vec(), DONE.to_vec()]]);
    assert!(matches!(table, Err(DumpError::Parse(_))), "{table:?}");
}

#[test]
fn a_recording_replays_and_a_missing_one_reads_as_unavailable() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sockdiag");
    let table = dump_unix(NETNS, || Ok(Replay::new(dir))).expect("replay");
    assert_eq!(table.connected, 12);
    assert_eq!(table.peer_closed.len(), 4);
    let empty = tempfile::tempdir().expect("tempdir");
    let table = dump_unix(NETNS, || Ok(Replay::new(empty.path()))).expect("replay");
    assert!(!table.diag_available);
}

/// On the running kernel, in a network namespace of its own (UNIX sockets
/// are per namespace; unsharing needs CAP_SYS_ADMIN): three stream
/// socketpairs, two of which lose a peer.
#[test]
fn the_survivors_of_closed_socketpairs_are_found_on_this_kernel() {
    std::thread::spawn(|| {
        // SAFETY: only the network namespace is unshared, not the fd table;
        // and only this thread's, which ends with the test.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
            .expect("unshare(CLONE_NEWNET): run as root");
        let netns = crate::collect::procfs::own_netns().expect("own netns");
        let ino = |s: &UnixStream| rustix::fs::fstat(s.as_fd()).expect("fstat").st_ino;
        let pairs: Vec<(UnixStream, UnixStream)> = (0..3)
            .map(|_| UnixStream::pair().expect("socketpair"))
            .collect();
        let mut survivors = Vec::new();
        let mut kept = Vec::new();
        for (i, (a, b)) in pairs.into_iter().enumerate() {
            if i == 1 {
                kept.push((ino(&a), ino(&b), a, b));
            } else {
                survivors.push((ino(&a), a));
                drop(b);
            }
        }
        let table = dump_unix(netns, NetlinkTransport::open).expect("dump");
        assert!(table.diag_available);
        assert_eq!(table.connected, 4, "one healthy pair and two survivors");
        let mut expected: Vec<u64> = survivors.iter().map(|(i, _)| *i).collect();
        expected.sort_unstable();
        assert_eq!(inodes(&table), expected);
        for s in &table.peer_closed {
            assert_eq!(s.netns, netns);
            assert_eq!((s.peer, s.shutdown), (Some(0), Some(SHUTDOWN_MASK)));
        }
        let (a, b, _, _) = &kept[0];
        assert!(!table
            .peer_closed
            .iter()
            .any(|s| s.inode == *a || s.inode == *b));
    })
    .join()
    .expect("the test thread");
}
