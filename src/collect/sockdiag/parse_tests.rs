//! The sock_diag parsers decode bytes captured from Linux 6.18 field by field
//! (tests/fixtures/sockdiag, from a scratch network namespace: a server that
//! never reads, a client that sends "hello" and closes 2 s later, a half-closed
//! pair, the same over IPv6) and reject truncated or impossible input, a short
//! tcp_info included, with an error, never a panic.

use super::*;
use crate::model::TcpInfo;

/// One CLOSE_WAIT record, as captured (the second message of
/// tests/fixtures/sockdiag/v4/000.bin).
#[rustfmt::skip]
const CLOSE_WAIT_RECORD: [u8; 408] = [
        0x98, 0x01, 0x00, 0x00, // nlmsg_len: 408
        0x14, 0x00, // nlmsg_type: 20 (SOCK_DIAG_BY_FAMILY)
        0x02, 0x00, // nlmsg_flags: 0x2 (NLM_F_MULTIPART)
        0x01, 0x00, 0x00, 0x00, // nlmsg_seq: 1
        0xe8, 0x14, 0x00, 0x00, // nlmsg_pid: 5352
        0x02, // idiag_family: 2 (AF_INET)
        0x08, // idiag_state: 8 (TCP_CLOSE_WAIT)
        0x00, // idiag_timer: 0
        0x00, // idiag_retrans: 0
        0x1f, 0x90, // idiag_sport: 8080 (big-endian)
        0x9c, 0x40, // idiag_dport: 40000 (big-endian)
        0x7f, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // idiag_src: 127.0.0.1 (16 bytes, IPv4 in the first 4)
        0x7f, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // idiag_dst: 127.0.0.1
        0x00, 0x00, 0x00, 0x00, // idiag_if: 0
        0x12, 0x00, 0x00, 0x00, // idiag_cookie[0]: 0x12
        0x00, 0x00, 0x00, 0x00, // idiag_cookie[1]: 0x0
        0x00, 0x00, 0x00, 0x00, // idiag_expires: 0 ms
        0x06, 0x00, 0x00, 0x00, // idiag_rqueue: 6 ("hello" + the FIN)
        0x00, 0x00, 0x00, 0x00, // idiag_wqueue: 0
        0x00, 0x00, 0x00, 0x00, // idiag_uid: 0
        0x25, 0x26, 0x00, 0x00, // idiag_inode: 9765
        0x05, 0x00, 0x08, 0x00, // nla_len: 5, nla_type: 8 (INET_DIAG_SHUTDOWN)
        0x01, 0x00, 0x00, 0x00, // shutdown: 1 (RCV_SHUTDOWN: the peer sent FIN) + padding
        0x08, 0x00, 0x0f, 0x00, // nla_len: 8, nla_type: 15 (INET_DIAG_MARK)
        0x00, 0x00, 0x00, 0x00, // attribute value
        0x0c, 0x00, 0x15, 0x00, // nla_len: 12, nla_type: 21 (INET_DIAG_CGROUP_ID)
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // attribute value
        0x06, 0x00, 0x16, 0x00, // nla_len: 6, nla_type: 22 (INET_DIAG_SOCKOPT)
        0x52, 0x00, 0x00, 0x00, // attribute value + padding
        0x1c, 0x01, 0x02, 0x00, // nla_len: 284, nla_type: 2 (INET_DIAG_INFO: struct tcp_info, 280 bytes)
        0x08, 0x00, 0x00, 0x00, 0x00, 0x07, 0xaa, 0x01, // tcpi_state 8 (CLOSE_WAIT), ca_state, retransmits, probes, backoff, options, wscale, flags
        0xe0, 0x1c, 0x03, 0x00, // tcpi_rto: 204000
        0x40, 0x9c, 0x00, 0x00, // tcpi_ato: 40000
        0x00, 0x80, 0x00, 0x00, // tcpi_snd_mss: 32768
        0x18, 0x02, 0x00, 0x00, // tcpi_rcv_mss: 536
        0x00, 0x00, 0x00, 0x00, // tcpi_unacked: 0
        0x00, 0x00, 0x00, 0x00, // tcpi_sacked: 0
        0x00, 0x00, 0x00, 0x00, // tcpi_lost: 0
        0x00, 0x00, 0x00, 0x00, // tcpi_retrans: 0
        0x00, 0x00, 0x00, 0x00, // tcpi_fackets: 0
        0xf8, 0x12, 0x00, 0x00, // tcpi_last_data_sent: 4856 ms
        0x00, 0x00, 0x00, 0x00, // tcpi_last_ack_sent: 0
        0xf8, 0x12, 0x00, 0x00, // tcpi_last_data_recv: 4856 ms (the data)
        0x28, 0x0b, 0x00, 0x00, // tcpi_last_ack_recv: 2856 ms (the FIN, 2 s after the data)
        0xff, 0xff, 0x00, 0x00, // tcpi_pmtu: 65535
        0xcb, 0xff, 0x00, 0x00, 0x60, 0x01, 0x00, 0x00, 0xb0, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0x7f, // tcp_info bytes 64..80 (fields closewatch does not read)
        0x0a, 0x00, 0x00, 0x00, 0xcb, 0xff, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tcp_info bytes 80..96 (fields closewatch does not read)
        0xcb, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x96, 0x71, 0x92, 0x9e, 0x00, 0x00, 0x00, 0x00, // tcp_info bytes 96..112 (fields closewatch does not read)
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tcp_info bytes 112..128 (fields closewatch does not read)
        0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, // tcp_info bytes 128..144 (fields closewatch does not read)
        0x00, 0x00, 0x00, 0x00, 0x60, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tcp_info bytes 144..160 (fields closewatch does not read)
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tcp_info bytes 160..176 (fields closewatch does not read)
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tcp_info bytes 176..192 (fields closewatch does not read)
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tcp_info bytes 192..208 (fields closewatch does not read)
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tcp_info bytes 208..224 (fields closewatch does not read)
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, // tcp_info bytes 224..240 (fields closewatch does not read)
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tcp_info bytes 240..256 (fields closewatch does not read)
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tcp_info bytes 256..272 (fields closewatch does not read)
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tcp_info bytes 272..280 (fields closewatch does not read)
];

const V4_DATAGRAM: &[u8] = include_bytes!("../../../tests/fixtures/sockdiag/v4/000.bin");
const V4_DONE: &[u8] = include_bytes!("../../../tests/fixtures/sockdiag/v4/001.bin");
const V6_DATAGRAM: &[u8] = include_bytes!("../../../tests/fixtures/sockdiag/v6/000.bin");
const V4_ALL_DATAGRAM: &[u8] = include_bytes!("../../../tests/fixtures/sockdiag/v4-all/000.bin");
/// Family 99: NLMSG_ERROR -EINVAL, the request echoed after the errno.
const BAD_FAMILY: &[u8] = include_bytes!("../../../tests/fixtures/sockdiag/errors/bad-family.bin");
/// Protocol 132 (SCTP, no diag module): NLMSG_DONE carrying -ENOENT.
const NO_HANDLER: &[u8] = include_bytes!("../../../tests/fixtures/sockdiag/errors/no-handler.bin");

fn only(datagram: &[u8]) -> RawMessage<'_> {
    let msgs: Vec<_> = messages(datagram)
        .collect::<Result<_, _>>()
        .expect("well-formed");
    assert_eq!(msgs.len(), 1);
    msgs[0]
}

#[test]
fn close_wait_record_field_by_field() {
    let msg = only(&CLOSE_WAIT_RECORD);
    assert_eq!(msg.kind, SOCK_DIAG_BY_FAMILY);
    assert_eq!(msg.flags, 0x2);
    assert_eq!(msg.seq, 1);
    assert_eq!(msg.control(), Ok(Control::Record));
    let s = socket(msg.payload, NetnsId(42)).expect("parses");
    assert_eq!(s.netns, NetnsId(42));
    assert_eq!(s.state, TcpState::CloseWait);
    assert_eq!(s.local, "127.0.0.1:8080".parse().expect("addr"));
    assert_eq!(s.remote, "127.0.0.1:40000".parse().expect("addr"));
    assert_eq!(s.cookie, 0x12);
    assert_eq!(s.inode, 9765);
    assert_eq!(s.uid, 0);
    assert_eq!(s.recv_q, 6);
    assert_eq!(s.send_q, 0);
    assert_eq!(
        s.info,
        Some(TcpInfo {
            state: 8,
            last_data_sent_ms: 4856,
            last_data_recv_ms: 4856,
            last_ack_recv_ms: 2856,
        })
    );
}

#[test]
fn multipart_datagram_holds_every_flagged_socket() {
    let sockets: Vec<TcpSocket> = messages(V4_DATAGRAM)
        .map(|m| {
            let m = m.expect("well-formed");
            assert_eq!(m.control(), Ok(Control::Record));
            socket(m.payload, NetnsId(1)).expect("parses")
        })
        .collect();
    let summary: Vec<(TcpState, u16, u16, u64, bool)> = sockets
        .iter()
        .map(|s| {
            (
                s.state,
                s.local.port(),
                s.remote.port(),
                s.inode,
                s.info.is_some(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            // The server that half-closed: owned FIN_WAIT_2.
            (TcpState::FinWait2, 8080, 40002, 9770, true),
            // The server that never read: CLOSE_WAIT.
            (TcpState::CloseWait, 8080, 40000, 9765, true),
            // The client that closed: an orphan, no inode and no tcp_info.
            (TcpState::FinWait2, 40000, 8080, 0, false),
            // The half-closed pair's client: CLOSE_WAIT, Recv-Q is the FIN.
            (TcpState::CloseWait, 40002, 8080, 9769, true),
        ]
    );
    assert_eq!(sockets[3].recv_q, 1);
}

#[test]
fn done_without_error_ends_the_dump() {
    let msg = only(V4_DONE);
    assert_eq!(msg.control(), Ok(Control::Done { error: 0 }));
}

#[test]
fn ipv6_records_parse() {
    let sockets: Vec<TcpSocket> = messages(V6_DATAGRAM)
        .map(|m| socket(m.expect("well-formed").payload, NetnsId(1)).expect("parses"))
        .collect();
    assert_eq!(sockets.len(), 2);
    assert_eq!(sockets[1].state, TcpState::CloseWait);
    assert_eq!(sockets[1].local, "[::1]:8080".parse().expect("addr"));
    assert_eq!(sockets[1].remote, "[::1]:40001".parse().expect("addr"));
    assert_eq!(sockets[1].inode, 9768);
    assert_eq!(sockets[1].cookie, 0x1002);
    assert_eq!(sockets[0].inode, 0);
}

#[test]
fn listener_and_states_from_the_all_states_dump() {
    let mut states = Vec::new();
    let mut listeners = Vec::new();
    for m in messages(V4_ALL_DATAGRAM) {
        let m = m.expect("well-formed");
        let state = peek_state(m.payload).expect("state");
        states.push(state);
        if state == TcpState::Listen {
            listeners.push(listener(m.payload, NetnsId(3)).expect("listener"));
        }
    }
    assert_eq!(states.len(), 5);
    assert_eq!(listeners.len(), 1);
    assert_eq!(listeners[0].local, "127.0.0.1:8080".parse().expect("addr"));
    assert_eq!(listeners[0].inode, 9763);
}

#[test]
fn nlmsg_error_carries_the_errno() {
    let msg = only(BAD_FAMILY);
    assert_eq!(msg.kind, NLMSG_ERROR);
    assert_eq!(msg.seq, 7);
    assert_eq!(msg.control(), Ok(Control::Error { error: -22 }));
}

#[test]
fn done_can_carry_a_negative_errno() {
    let msg = only(NO_HANDLER);
    assert_eq!(msg.control(), Ok(Control::Done { error: -2 }));
}

#[test]
fn old_kernels_send_done_without_payload() {
    let msg = RawMessage {
        kind: NLMSG_DONE,
        flags: 2,
        seq: 1,
        payload: &[],
    };
    assert_eq!(msg.control(), Ok(Control::Done { error: 0 }));
}

#[test]
fn error_without_errno_is_rejected() {
    let msg = RawMessage {
        kind: NLMSG_ERROR,
        flags: 0,
        seq: 1,
        payload: &[0xea, 0xff],
    };
    assert!(msg.control().is_err());
}

#[test]
fn every_truncation_of_a_record_is_an_error_not_a_panic() {
    for len in 0..CLOSE_WAIT_RECORD.len() {
        let cut = &CLOSE_WAIT_RECORD[..len];
        // The netlink header claims 408 bytes: a shorter datagram is malformed.
        let parsed: Vec<_> = messages(cut).collect();
        if len == 0 {
            assert!(parsed.is_empty());
        } else {
            assert!(parsed.iter().any(Result::is_err), "len {len}");
        }
        // The payload cut short. Inside inet_diag_msg or inside the tcp_info
        // attribute it is an error; cut where attributes end it is a shorter
        // record (as an orphan's is), parsed without the missing ones; any
        // other cut may be either, but never a panic.
        if len > NETLINK_HEADER_LEN {
            let payload = &CLOSE_WAIT_RECORD[NETLINK_HEADER_LEN..len];
            let r = socket(payload, NetnsId(0));
            let info_at = INET_DIAG_MSG_LEN + 8 + 8 + 12 + 8;
            if payload.len() < INET_DIAG_MSG_LEN
                || (payload.len() > info_at && len < CLOSE_WAIT_RECORD.len())
            {
                assert!(r.is_err(), "payload of {} bytes parsed", payload.len());
            } else if payload.len() == INET_DIAG_MSG_LEN || payload.len() == info_at {
                assert_eq!(
                    r.map(|s| s.info),
                    Ok(None),
                    "payload of {} bytes",
                    payload.len()
                );
            }
        }
    }
}

#[test]
fn length_field_shorter_than_a_header_stops_the_walk() {
    let mut bytes = CLOSE_WAIT_RECORD;
    bytes[0..4].copy_from_slice(&8u32.to_ne_bytes());
    let parsed: Vec<_> = messages(&bytes).collect();
    assert_eq!(parsed.len(), 1);
    assert!(parsed[0].is_err());
}

#[test]
fn attribute_with_impossible_length_is_an_error() {
    let mut bytes = CLOSE_WAIT_RECORD;
    // The first attribute (INET_DIAG_SHUTDOWN) claims 2000 bytes.
    let at = NETLINK_HEADER_LEN + INET_DIAG_MSG_LEN;
    bytes[at..at + 2].copy_from_slice(&2000u16.to_ne_bytes());
    let err = socket(&bytes[NETLINK_HEADER_LEN..], NetnsId(0)).expect_err("bad nla");
    assert!(matches!(err, ParseError::Malformed { .. }), "{err:?}");
}

#[test]
fn short_tcp_info_from_an_old_kernel_is_reported() {
    // Keep 40 bytes of tcp_info: too short to reach tcpi_last_ack_recv.
    let info_at = 4 + 8 + 12 + 8 + 4 + NETLINK_HEADER_LEN + INET_DIAG_MSG_LEN;
    let mut bytes = CLOSE_WAIT_RECORD[..info_at + 4 + 40].to_vec();
    let nla_len = (4 + 40) as u16;
    bytes[info_at..info_at + 2].copy_from_slice(&nla_len.to_ne_bytes());
    let err = socket(&bytes[NETLINK_HEADER_LEN..], NetnsId(0)).expect_err("short tcp_info");
    assert!(
        matches!(
            err,
            ParseError::Truncated {
                what: "tcp_info",
                have: 40,
                ..
            }
        ),
        "{err:?}"
    );
}
