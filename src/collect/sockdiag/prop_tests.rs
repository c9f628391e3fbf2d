//! Property tests: no bytes a netlink socket can deliver make the sock_diag
//! parsers or the receive loop panic or spin, and whatever they accept agrees
//! with the wire format field by field.
//!
//! Inputs: arbitrary bytes; records generated from their fields and framed
//! as the kernel frames them; and the datagrams captured in
//! tests/fixtures/sockdiag, cut at every length, with every byte and every
//! length field overwritten (exhaustively), and with random stacks of such
//! edits (proptest).

use std::cell::Cell;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

use super::parse::{
    Control, RawMessage, INET_DIAG_INFO, INET_DIAG_MSG_LEN, NETLINK_HEADER_LEN, NLMSG_DONE,
    NLMSG_ERROR, SOCK_DIAG_BY_FAMILY,
};
use super::*;
use crate::byte_edits::{self, applied, Edit};
use crate::model::TcpInfo;

/// Every captured reply: records of both families and of the combined
/// request, NLMSG_DONE, and the two error shapes.
const FIXTURES: [&[u8]; 8] = [
    include_bytes!("../../../tests/fixtures/sockdiag/v4/000.bin"),
    include_bytes!("../../../tests/fixtures/sockdiag/v4/001.bin"),
    include_bytes!("../../../tests/fixtures/sockdiag/v6/000.bin"),
    include_bytes!("../../../tests/fixtures/sockdiag/v4-all/000.bin"),
    include_bytes!("../../../tests/fixtures/sockdiag/any-flagged/000.bin"),
    include_bytes!("../../../tests/fixtures/sockdiag/any-flagged/001.bin"),
    include_bytes!("../../../tests/fixtures/sockdiag/errors/bad-family.bin"),
    include_bytes!("../../../tests/fixtures/sockdiag/errors/no-handler.bin"),
];

const NETNS: NetnsId = NetnsId(7);

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The address at `addr_at` and big-endian port at `port_at` of an
/// inet_diag_msg, read straight from the bytes.
fn addr_at(p: &[u8], port_at: usize, addr_at: usize) -> SocketAddr {
    let port = u16::from_be_bytes([p[port_at], p[port_at + 1]]);
    let ip = if p[0] == 2 {
        IpAddr::V4(Ipv4Addr::new(
            p[addr_at],
            p[addr_at + 1],
            p[addr_at + 2],
            p[addr_at + 3],
        ))
    } else {
        let mut a = [0u8; 16];
        a.copy_from_slice(&p[addr_at..addr_at + 16]);
        IpAddr::V6(Ipv6Addr::from(a))
    };
    SocketAddr::new(ip, port)
}

/// Walks a datagram as the receive loop does, checking each message against
/// the bytes at the 4-byte-aligned offset where it must start. Returns the
/// messages before the end or the first error (the loop hands those to its
/// sink before it sees the error).
fn check_datagram(d: &[u8]) -> Result<Vec<RawMessage<'_>>, TestCaseError> {
    let mut msgs = Vec::new();
    let mut iter = parse::messages(d);
    let mut at = 0usize;
    loop {
        match iter.next() {
            None => {
                prop_assert!(at >= d.len(), "walk ended at {at} of {} bytes", d.len());
                return Ok(msgs);
            }
            Some(Err(_)) => {
                prop_assert!(at < d.len(), "an error after the end");
                // Nothing after a bad header can be trusted.
                prop_assert!(iter.next().is_none(), "the walk went on after an error");
                return Ok(msgs);
            }
            Some(Ok(m)) => {
                let header = d.get(at..at + NETLINK_HEADER_LEN);
                prop_assert!(header.is_some(), "a message without a header at {at}");
                let len = u32_at(d, at) as usize;
                prop_assert!(len >= NETLINK_HEADER_LEN && at + len <= d.len());
                prop_assert_eq!(m.kind, u16_at(d, at + 4));
                prop_assert_eq!(m.flags, u16_at(d, at + 6));
                prop_assert_eq!(m.seq, u32_at(d, at + 8));
                prop_assert_eq!(m.payload, &d[at + NETLINK_HEADER_LEN..at + len]);
                check_message(&m)?;
                msgs.push(m);
                at += align4(len);
                // Every message takes a header: a walk that does not advance
                // is caught here rather than spinning.
                prop_assert!(msgs.len() <= d.len() / NETLINK_HEADER_LEN);
            }
        }
    }
}

/// What a message means, against its type and first payload bytes; then the
/// record parsers on its payload, whatever its type.
fn check_message(m: &RawMessage<'_>) -> Result<(), TestCaseError> {
    let errno = m.payload.get(..4).map(|_| u32_at(m.payload, 0) as i32);
    let control = m.control();
    match m.kind {
        SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => prop_assert_eq!(control, Ok(Control::Record)),
        NLMSG_DONE => prop_assert_eq!(
            control,
            Ok(Control::Done {
                error: errno.unwrap_or(0)
            })
        ),
        NLMSG_ERROR => match errno {
            Some(error) => prop_assert_eq!(control, Ok(Control::Error { error })),
            None => prop_assert!(control.is_err()),
        },
        _ => prop_assert_eq!(control, Ok(Control::Ignore)),
    }
    check_record(m.payload)
}

/// `peek_state`, `listener` and `socket` on any payload: an error exactly
/// when the bytes call for one, and otherwise every field as in the bytes.
fn check_record(p: &[u8]) -> Result<(), TestCaseError> {
    let long_enough = p.len() >= INET_DIAG_MSG_LEN;
    let known_family = long_enough && matches!(p[0], 2 | 10);

    let peek = parse::peek_state(p);
    prop_assert_eq!(peek.is_ok(), long_enough);
    if let Ok(state) = peek {
        prop_assert_eq!(state, TcpState::from_kernel(p[1]));
    }

    let listener = parse::listener(p, NETNS);
    prop_assert_eq!(listener.is_ok(), known_family, "{:?}", listener);
    if let Ok(l) = &listener {
        prop_assert_eq!(l.netns, NETNS);
        prop_assert_eq!(l.local, addr_at(p, 4, 8));
        prop_assert_eq!(l.inode, u64::from(u32_at(p, 68)));
    }

    match parse::socket(p, NETNS) {
        Ok(s) => {
            prop_assert!(known_family);
            prop_assert_eq!(s.netns, NETNS);
            prop_assert_eq!(s.state, TcpState::from_kernel(p[1]));
            prop_assert_eq!(s.local, addr_at(p, 4, 8));
            prop_assert_eq!(s.remote, addr_at(p, 6, 24));
            let cookie = (u64::from(u32_at(p, 48)) << 32) | u64::from(u32_at(p, 44));
            prop_assert_eq!(s.cookie, cookie);
            prop_assert_eq!(s.recv_q, u32_at(p, 56));
            prop_assert_eq!(s.send_q, u32_at(p, 60));
            prop_assert_eq!(s.uid, u32_at(p, 64));
            prop_assert_eq!(s.inode, u64::from(u32_at(p, 68)));
            if s.info.is_some() {
                prop_assert!(p.len() >= INET_DIAG_MSG_LEN + 4 + tcp_info::MIN_LEN);
            }
        }
        Err(e) if known_family => prop_assert!(
            matches!(
                e,
                ParseError::Malformed {
                    what: "inet_diag attribute",
                    ..
                } | ParseError::Truncated {
                    what: "tcp_info",
                    ..
                }
            ),
            "a record with a good header failed outside its attributes: {:?}",
            e
        ),
        Err(e) => prop_assert!(
            matches!(
                e,
                ParseError::Malformed {
                    what: "inet_diag_msg",
                    ..
                } | ParseError::Truncated {
                    what: "inet_diag_msg",
                    ..
                }
            ),
            "{:?}",
            e
        ),
    }
    if known_family {
        // Without its attributes, every record with a known family parses.
        let bare = parse::socket(&p[..INET_DIAG_MSG_LEN], NETNS).map(|s| s.info);
        prop_assert_eq!(bare, Ok(None));
    }
    Ok(())
}

/// Feeds the records among `msgs` to both sinks: a record either sink takes
/// is counted once, and nothing is kept that was not counted.
fn check_sinks(msgs: &[RawMessage<'_>]) -> Result<(), TestCaseError> {
    let mut table = TableSink {
        netns: NETNS,
        keep: Keep::Every,
        ..TableSink::default()
    };
    let mut flagged = TableSink {
        netns: NETNS,
        keep: Keep::Flagged,
        ..TableSink::default()
    };
    let mut list = SocketSink {
        netns: NETNS,
        sockets: Vec::new(),
    };
    let mut counted = 0u64;
    for m in msgs.iter().filter(|m| m.control() == Ok(Control::Record)) {
        counted += u64::from(m.payload.len() >= INET_DIAG_MSG_LEN);
        let t = table.record(m.payload);
        let f = flagged.record(m.payload);
        let s = list.record(m.payload);
        if s.is_ok() {
            prop_assert!(t.is_ok(), "SocketSink took a record TableSink refused");
            prop_assert!(f.is_ok(), "SocketSink took a record Keep::Flagged refused");
        }
    }
    // Keep::Flagged keeps exactly the sockets of the flagged states.
    let in_flagged_states: Vec<&TcpSocket> = list
        .sockets
        .iter()
        .filter(|s| s.state.mask() & FLAGGED_STATES != 0)
        .collect();
    prop_assert_eq!(
        flagged.sockets.iter().collect::<Vec<_>>(),
        in_flagged_states
    );
    prop_assert_eq!(flagged.states.total(), counted);
    prop_assert_eq!(table.states.total(), counted);
    prop_assert!((table.sockets.len() + table.listeners.len()) as u64 <= counted);
    // The table keeps every socket the list keeps, but a LISTEN one as a
    // listener (which may parse where the whole socket does not).
    let not_listening: Vec<&TcpSocket> = list
        .sockets
        .iter()
        .filter(|s| s.state != TcpState::Listen)
        .collect();
    prop_assert_eq!(table.sockets.iter().collect::<Vec<_>>(), not_listening);
    let listening = list.sockets.len() - table.sockets.len();
    prop_assert!(table.listeners.len() >= listening);
    Ok(())
}

/// Runs the checks of a datagram in a plain test, naming the input on failure.
fn assert_datagram(d: &[u8], what: &str) {
    let checked = check_datagram(d).and_then(|msgs| check_sinks(&msgs));
    if let Err(e) = checked {
        panic!("{what}: {e}\n{d:02x?}");
    }
}

/// Offsets of every length field of a well-formed datagram: each nlmsg_len,
/// and each nla_len of each record's attributes.
fn length_fields(d: &[u8]) -> Vec<(usize, bool)> {
    let mut fields = Vec::new();
    let mut at = 0;
    while at + NETLINK_HEADER_LEN <= d.len() {
        let len = u32_at(d, at) as usize;
        if len < NETLINK_HEADER_LEN || at + len > d.len() {
            break;
        }
        fields.push((at, true));
        let kind = u16_at(d, at + 4);
        if kind == SOCK_DIAG_BY_FAMILY || kind == TCPDIAG_GETSOCK {
            let mut nla = at + NETLINK_HEADER_LEN + INET_DIAG_MSG_LEN;
            while nla + 4 <= at + len {
                fields.push((nla, false));
                let nla_len = usize::from(u16_at(d, nla));
                if nla_len < 4 {
                    break;
                }
                nla += align4(nla_len);
            }
        }
        at += align4(len);
    }
    fields
}

const EDGE_LENGTHS: [u32; 20] = [
    0,
    1,
    3,
    4,
    5,
    8,
    15,
    16,
    17,
    20,
    72,
    76,
    88,
    0xfffc,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0xffff_fffc,
    0xffff_fffd,
    u32::MAX,
];

#[test]
fn the_fixtures_pass_the_checks_whole() {
    for (i, f) in FIXTURES.iter().enumerate() {
        let msgs = check_datagram(f).expect("checks");
        assert!(!msgs.is_empty(), "fixture {i} parses to messages");
        check_sinks(&msgs).expect("checks");
    }
    // The records really are seen as records (else the sink checks are idle).
    let records = check_datagram(FIXTURES[0]).expect("checks");
    assert_eq!(records.len(), 4);
    assert!(records
        .iter()
        .all(|m| parse::socket(m.payload, NETNS).is_ok()));
}

#[test]
fn every_truncation_of_every_fixture() {
    for (i, f) in FIXTURES.iter().enumerate() {
        for len in 0..f.len() {
            assert_datagram(&f[..len], &format!("fixture {i} cut to {len} bytes"));
        }
    }
}

#[test]
fn every_byte_of_every_fixture_overwritten() {
    for (i, f) in FIXTURES.iter().enumerate() {
        let mut d = f.to_vec();
        for at in 0..d.len() {
            let was = d[at];
            for b in [0x00, 0xff, was ^ 0x80] {
                d[at] = b;
                assert_datagram(&d, &format!("fixture {i}, byte {at} set to {b:#04x}"));
            }
            d[at] = was;
        }
    }
}

#[test]
fn every_length_field_of_every_fixture_set_to_edge_values() {
    let mut seen = 0;
    for (i, f) in FIXTURES.iter().enumerate() {
        for (at, netlink) in length_fields(f) {
            seen += 1;
            for v in EDGE_LENGTHS {
                let mut d = f.to_vec();
                if netlink {
                    d[at..at + 4].copy_from_slice(&v.to_ne_bytes());
                } else {
                    d[at..at + 2].copy_from_slice(&(v as u16).to_ne_bytes());
                }
                assert_datagram(&d, &format!("fixture {i}, length at {at} set to {v}"));
            }
        }
    }
    // 19 nlmsg_len and 59 nla_len: the walk above found every one.
    assert_eq!(seen, 19 + 59);
}

fn edge_u32() -> impl Strategy<Value = u32> {
    prop_oneof![select(EDGE_LENGTHS.to_vec()), any::<u32>()]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<Index>().prop_map(Edit::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Byte(i, b)),
        (any::<Index>(), edge_u32()).prop_map(|(i, v)| Edit::Len16(i, v as u16)),
        (any::<Index>(), edge_u32()).prop_map(|(i, v)| Edit::Len32(i, v)),
        (any::<Index>(), 1usize..80).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<Index>(), vec(any::<u8>(), 1..80)).prop_map(|(i, b)| Edit::Insert(i, b)),
    ]
}

/// A captured datagram with a stack of edits.
fn edited_fixture() -> impl Strategy<Value = Vec<u8>> {
    byte_edits::edited(&FIXTURES, edit())
}

/// The payloads of the captured records (the messages of the fixtures).
fn fixture_payloads() -> Vec<Vec<u8>> {
    FIXTURES
        .iter()
        .flat_map(|f| parse::messages(f).filter_map(Result::ok))
        .map(|m| m.payload.to_vec())
        .collect()
}

/// A netlink message with a correct length, padded to 4 bytes (the
/// lookup tests frame their answers with it too).
pub(super) fn frame(kind: u16, flags: u16, seq: u32, payload: &[u8], out: &mut Vec<u8>) {
    let len = NETLINK_HEADER_LEN + payload.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0x1234u32.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(align4(out.len()), 0);
}

/// A payload for a framed message: arbitrary bytes, or a captured one,
/// edited or not.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let captured = fixture_payloads();
    prop_oneof![
        vec(any::<u8>(), 0..200),
        (select(captured), vec(edit(), 0..4)).prop_map(|(p, edits)| applied(p, &edits)),
    ]
}

fn kind() -> impl Strategy<Value = u16> {
    prop_oneof![
        select(vec![
            SOCK_DIAG_BY_FAMILY,
            TCPDIAG_GETSOCK,
            NLMSG_DONE,
            NLMSG_ERROR,
            parse::NLMSG_NOOP,
            parse::NLMSG_OVERRUN,
        ]),
        any::<u16>(),
    ]
}

/// A socket as the generator writes it, and what the parser must read back.
#[derive(Clone, Debug)]
struct Record {
    v6: bool,
    state: u8,
    ports: (u16, u16),
    src: [u8; 16],
    dst: [u8; 16],
    cookie: u64,
    queues: (u32, u32),
    uid: u32,
    inode: u32,
    /// Attributes other than INET_DIAG_INFO (type, value).
    attrs: Vec<(u16, Vec<u8>)>,
    /// `tcp_info`: its length, its fields, the filler of the rest, and where
    /// among the other attributes it goes.
    info: Option<(usize, TcpInfo, u8, Index)>,
}

fn record() -> impl Strategy<Value = Record> {
    let info = (
        tcp_info::MIN_LEN..300,
        (any::<u8>(), any::<u32>(), any::<u32>(), any::<u32>()),
        any::<u8>(),
        any::<Index>(),
    )
        .prop_map(|(len, (state, sent, recv, ack), fill, at)| {
            let info = TcpInfo {
                state,
                last_data_sent_ms: sent,
                last_data_recv_ms: recv,
                last_ack_recv_ms: ack,
            };
            (len, info, fill, at)
        });
    let attr = (
        (0u16..40).prop_filter("not INET_DIAG_INFO", |&k| k != INET_DIAG_INFO),
        vec(any::<u8>(), 0..24),
    );
    (
        (any::<bool>(), any::<u8>(), any::<(u16, u16)>()),
        (any::<[u8; 16]>(), any::<[u8; 16]>(), any::<u64>()),
        (any::<(u32, u32)>(), any::<u32>(), any::<u32>()),
        vec(attr, 0..4),
        proptest::option::of(info),
    )
        .prop_map(
            |((v6, state, ports), (src, dst, cookie), (queues, uid, inode), attrs, info)| Record {
                v6,
                state,
                ports,
                src,
                dst,
                cookie,
                queues,
                uid,
                inode,
                attrs,
                info,
            },
        )
}

fn nla(kind: u16, value: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(align4(out.len()), 0);
}

impl Record {
    /// `struct inet_diag_msg` and its attributes, as the kernel writes them.
    fn encode(&self) -> Vec<u8> {
        let mut p = vec![if self.v6 { 10 } else { 2 }, self.state, 0, 0];
        p.extend_from_slice(&self.ports.0.to_be_bytes());
        p.extend_from_slice(&self.ports.1.to_be_bytes());
        p.extend_from_slice(&self.src);
        p.extend_from_slice(&self.dst);
        p.extend_from_slice(&0u32.to_ne_bytes()); // idiag_if
        p.extend_from_slice(&(self.cookie as u32).to_ne_bytes());
        p.extend_from_slice(&((self.cookie >> 32) as u32).to_ne_bytes());
        p.extend_from_slice(&0u32.to_ne_bytes()); // idiag_expires
        p.extend_from_slice(&self.queues.0.to_ne_bytes());
        p.extend_from_slice(&self.queues.1.to_ne_bytes());
        p.extend_from_slice(&self.uid.to_ne_bytes());
        p.extend_from_slice(&self.inode.to_ne_bytes());
        assert_eq!(p.len(), INET_DIAG_MSG_LEN);
        let info_at = self
            .info
            .as_ref()
            .map(|(_, _, _, at)| at.index(self.attrs.len() + 1));
        for i in 0..=self.attrs.len() {
            if info_at == Some(i) {
                if let Some((len, info, fill, _)) = &self.info {
                    let mut value = vec![*fill; *len];
                    value[0] = info.state;
                    value[44..48].copy_from_slice(&info.last_data_sent_ms.to_ne_bytes());
                    value[52..56].copy_from_slice(&info.last_data_recv_ms.to_ne_bytes());
                    value[56..60].copy_from_slice(&info.last_ack_recv_ms.to_ne_bytes());
                    nla(INET_DIAG_INFO, &value, &mut p);
                }
            }
            if let Some((kind, value)) = self.attrs.get(i) {
                nla(*kind, value, &mut p);
            }
        }
        p
    }

    fn expected(&self) -> TcpSocket {
        let ip = |a: &[u8; 16]| {
            if self.v6 {
                IpAddr::V6(Ipv6Addr::from(*a))
            } else {
                IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
            }
        };
        TcpSocket {
            timer: 0,
            peer: None,
            netns: NETNS,
            state: TcpState::from_kernel(self.state),
            local: SocketAddr::new(ip(&self.src), self.ports.0),
            remote: SocketAddr::new(ip(&self.dst), self.ports.1),
            cookie: self.cookie,
            inode: u64::from(self.inode),
            uid: self.uid,
            recv_q: self.queues.0,
            send_q: self.queues.1,
            info: self.info.as_ref().map(|(_, info, _, _)| *info),
        }
    }
}

/// A transport that plays one script of datagrams per connection, each with
/// the length `recv` reports (more than its bytes: it did not fit), and
/// gives up (with an error the test looks for) if asked for more than it
/// could ever have been owed.
struct Scripted {
    datagrams: VecDeque<(Vec<u8>, usize)>,
    recvs: Rc<Cell<usize>>,
    budget: usize,
}

const OVERDRAWN: &str = "recv called more often than the script allows";

impl Transport for Scripted {
    fn send(&mut self, _request: &[u8]) -> io::Result<()> {
        Ok(())
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.recvs.set(self.recvs.get() + 1);
        if self.recvs.get() > self.budget {
            return Err(io::Error::other(OVERDRAWN));
        }
        buf.clear();
        let Some((d, reported)) = self.datagrams.pop_front() else {
            return Ok(0);
        };
        let n = d.len().min(buf.capacity());
        buf.extend_from_slice(&d[..n]);
        Ok(reported.max(d.len()))
    }
}

/// Runs `dump` over the same script on every connection; returns its result,
/// the sink, and how many connections were made.
fn run_dump(script: &[(Vec<u8>, usize)]) -> (Result<(), DumpError>, TableSink, usize) {
    let recvs = Rc::new(Cell::new(0));
    let budget = MAX_ATTEMPTS as usize * (script.len() + 1);
    let mut connects = 0;
    let mut sink = TableSink {
        netns: NETNS,
        keep: Keep::Every,
        ..TableSink::default()
    };
    let req = Request {
        family: Family::V4,
        states: FLAGGED_STATES,
        tcp_info: true,
    };
    let result = dump(
        || {
            connects += 1;
            Ok(Scripted {
                datagrams: script.iter().cloned().collect(),
                recvs: recvs.clone(),
                budget,
            })
        },
        &req,
        &mut sink,
    );
    (result, sink, connects)
}

fn check_dump(script: &[(Vec<u8>, usize)]) -> Result<(), TestCaseError> {
    let (result, sink, connects) = run_dump(script);
    prop_assert!(connects as u32 <= MAX_ATTEMPTS, "{} connections", connects);
    if let Err(DumpError::Io(e)) = &result {
        prop_assert!(e.to_string() != OVERDRAWN, "the receive loop did not stop");
    }
    if result.is_ok() {
        // What was kept was counted; no LISTEN socket among the others.
        let kept = (sink.sockets.len() + sink.listeners.len()) as u64;
        prop_assert!(kept <= sink.states.total());
        prop_assert!(sink.sockets.iter().all(|s| s.state != TcpState::Listen));
    }
    Ok(())
}

/// The datagram of NLMSG_DONE (no error) for sequence 1.
fn done() -> Vec<u8> {
    let mut d = Vec::new();
    frame(NLMSG_DONE, 2, 1, &0u32.to_ne_bytes(), &mut d);
    d
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_parsed_or_rejected(d in vec(any::<u8>(), 0..1024)) {
        let msgs = check_datagram(&d)?;
        check_sinks(&msgs)?;
    }

    #[test]
    fn edited_fixtures_are_parsed_or_rejected(d in edited_fixture()) {
        let msgs = check_datagram(&d)?;
        check_sinks(&msgs)?;
    }

    /// Well-framed messages with arbitrary or edited payloads: the walk
    /// yields exactly the messages framed, in order.
    #[test]
    fn framed_messages_come_back_as_framed(
        msgs in vec((kind(), any::<u16>(), any::<u32>(), payload()), 0..6),
    ) {
        let mut d = Vec::new();
        for (kind, flags, seq, payload) in &msgs {
            frame(*kind, *flags, *seq, payload, &mut d);
        }
        let parsed = check_datagram(&d)?;
        prop_assert_eq!(parsed.len(), msgs.len());
        for (m, (kind, flags, seq, payload)) in parsed.iter().zip(&msgs) {
            prop_assert_eq!((m.kind, m.flags, m.seq), (*kind, *flags, *seq));
            prop_assert_eq!(m.payload, &payload[..]);
        }
        check_sinks(&parsed)?;
    }

    /// Generated sockets, framed as records over one or more datagrams and
    /// ended by NLMSG_DONE, come out of the receive loop exactly as written.
    #[test]
    fn generated_records_round_trip_through_the_receive_loop(
        records in vec(record(), 0..6),
        split in any::<Index>(),
        legacy in any::<bool>(),
    ) {
        let kind = if legacy { TCPDIAG_GETSOCK } else { SOCK_DIAG_BY_FAMILY };
        let mut framed = Vec::new();
        for r in &records {
            let mut m = Vec::new();
            frame(kind, 2, 1, &r.encode(), &mut m);
            framed.push(m);
        }
        // Records split over two datagrams at a message boundary, DONE last.
        let cut = split.index(framed.len() + 1);
        let script: Vec<(Vec<u8>, usize)> = [
            framed[..cut].concat(),
            framed[cut..].concat(),
            done(),
        ]
        .into_iter()
        .filter(|d| !d.is_empty())
        .map(|d| (d, 0))
        .collect();
        let (result, sink, connects) = run_dump(&script);
        prop_assert!(result.is_ok(), "{:?}", result);
        prop_assert_eq!(connects, 1);
        let expected: Vec<TcpSocket> = records.iter().map(Record::expected).collect();
        let listeners = expected.iter().filter(|s| s.state == TcpState::Listen).count();
        let others: Vec<&TcpSocket> =
            expected.iter().filter(|s| s.state != TcpState::Listen).collect();
        prop_assert_eq!(sink.sockets.iter().collect::<Vec<_>>(), others);
        prop_assert_eq!(sink.listeners.len(), listeners);
        prop_assert_eq!(sink.states.total(), records.len() as u64);
        for r in &records {
            prop_assert_eq!(parse::socket(&r.encode(), NETNS), Ok(r.expected()));
        }
    }

    /// The receive loop over edited datagrams, some reported longer than
    /// they are: it ends, within its attempts, whatever they hold.
    #[test]
    fn the_receive_loop_ends_on_any_datagrams(
        datagrams in vec(
            (
                prop_oneof![4 => edited_fixture(), 1 => vec(any::<u8>(), 0..64)],
                prop_oneof![8 => Just(0usize), 1 => any::<usize>(), 1 => 0usize..70_000],
            ),
            1..5,
        ),
        with_done in any::<bool>(),
    ) {
        let mut script = datagrams;
        if with_done {
            script.push((done(), 0));
        }
        check_dump(&script)?;
    }

    #[test]
    fn tcp_info_reads_its_fields_from_their_offsets_or_is_too_short(
        b in prop_oneof![vec(any::<u8>(), 0..80), vec(any::<u8>(), 0..400)],
    ) {
        match tcp_info::parse(&b) {
            Ok(info) => {
                prop_assert!(b.len() >= tcp_info::MIN_LEN);
                prop_assert_eq!(info.state, b[0]);
                prop_assert_eq!(info.last_data_sent_ms, u32_at(&b, 44));
                prop_assert_eq!(info.last_data_recv_ms, u32_at(&b, 52));
                prop_assert_eq!(info.last_ack_recv_ms, u32_at(&b, 56));
            }
            Err(e) => {
                prop_assert!(b.len() < tcp_info::MIN_LEN);
                prop_assert_eq!(
                    e,
                    ParseError::Truncated { what: "tcp_info", need: tcp_info::MIN_LEN, have: b.len() }
                );
            }
        }
    }
}
