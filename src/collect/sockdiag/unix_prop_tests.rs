//! Property tests: no bytes a netlink socket can deliver make the UNIX_DIAG
//! parser, its sink or the receive loop panic or spin, and whatever the
//! parser accepts agrees field by field with an oracle written from
//! include/uapi/linux/unix_diag.h and netlink's attribute framing rather
//! than from the code.
//!
//! Inputs: arbitrary bytes; records generated from their fields and framed
//! as the kernel frames them; and the datagrams captured in
//! tests/fixtures/sockdiag/unix, cut at every length, with every byte and
//! every length field overwritten (exhaustively), and with random stacks of
//! such edits (proptest, through crate::byte_edits).

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

use super::tests::{DATAGRAM, DONE, NO_FAMILY_HANDLER, RECORDS};
use super::*;
use crate::byte_edits::{self, applied, Edit};
use crate::collect::sockdiag::parse::{self, Control, RawMessage, NLMSG_DONE};
use crate::collect::sockdiag::MAX_ATTEMPTS;

const FIXTURES: [&[u8]; 3] = [DATAGRAM, DONE, NO_FAMILY_HANDLER];
const NETNS: NetnsId = NetnsId(9);

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn ne16(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn ne32(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// What unix_diag.h says a record holds, or `None` where it holds no
/// record: shorter than `struct unix_diag_msg`, not AF_UNIX, an attribute
/// whose `nla_len` is under 4 or runs past the record, or a PEER (u32),
/// RQLEN (two u32) or SHUTDOWN (u8) attribute too short for its value.
/// Later attributes of a type replace earlier ones.
fn oracle(p: &[u8]) -> Option<UnixSocket> {
    if p.len() < 16 || p[0] != 1 {
        return None;
    }
    let mut s = UnixSocket {
        netns: NETNS,
        inode: u64::from(ne32(p, 4)),
        cookie: u64::from(ne32(p, 8)) | u64::from(ne32(p, 12)) << 32,
        kind: UnixKind::from_kernel(p[1]),
        state: p[2],
        peer: None,
        shutdown: None,
        recv_q: None,
        name: None,
    };
    let mut at = 16;
    while at < p.len() {
        if p.len() - at < 4 {
            return None;
        }
        let len = usize::from(ne16(p, at));
        if len < 4 || len > p.len() - at {
            return None;
        }
        // NLA_F_NESTED and NLA_F_NET_BYTEORDER are flags, not the type.
        let value = &p[at + 4..at + len];
        match ne16(p, at + 2) & 0x3fff {
            0 => s.name = Some(value.to_vec()),
            2 if value.len() >= 4 => s.peer = Some(u64::from(ne32(value, 0))),
            4 if value.len() >= 8 => s.recv_q = Some(ne32(value, 0)),
            6 if !value.is_empty() => s.shutdown = Some(value[0]),
            2 | 4 | 6 => return None,
            _ => {}
        }
        at += align4(len);
    }
    Some(s)
}

/// The rule, from the kernel's side: SHUTDOWN_MASK (both bits) on a
/// connected (state 1) SOCK_STREAM (1) or SOCK_SEQPACKET (5) socket; a
/// peer inode of 0 when there is no shutdown byte.
fn closed_oracle(s: &UnixSocket) -> bool {
    let connection = [1, 5].contains(&s.kind.kernel_number()) && s.state == 1;
    let over = match s.shutdown {
        Some(b) => b & 1 != 0 && b & 2 != 0,
        None => s.peer == Some(0),
    };
    connection && over
}

fn check_payload(p: &[u8]) -> Result<(), TestCaseError> {
    let got = socket(p, NETNS);
    let expected = oracle(p);
    match (&got, &expected) {
        (Ok(s), Some(e)) => {
            prop_assert_eq!(s, e);
            prop_assert_eq!(s.peer_closed(), closed_oracle(s));
        }
        (Err(e), None) => {
            let header = p.len() < UNIX_DIAG_MSG_LEN || p[0] != AF_UNIX;
            let what = match e {
                ParseError::Truncated { what, .. } | ParseError::Malformed { what, .. } => *what,
            };
            if header {
                prop_assert_eq!(what, "unix_diag_msg");
            } else {
                prop_assert!(
                    [
                        "unix_diag attribute",
                        "UNIX_DIAG_PEER",
                        "UNIX_DIAG_RQLEN",
                        "UNIX_DIAG_SHUTDOWN"
                    ]
                    .contains(&what),
                    "{:?}",
                    e
                );
            }
        }
        _ => prop_assert!(false, "parser {:?}, oracle {:?}", got, expected),
    }
    Ok(())
}

/// Walks a datagram as the receive loop does, checking every payload, and
/// the sink over its records: it counts the connected records that parse
/// and keeps, in order, those peer-closed.
fn check_datagram(d: &[u8]) -> Result<(), TestCaseError> {
    let mut sink = UnixSink {
        netns: NETNS,
        ..UnixSink::default()
    };
    let mut expected_connected = 0;
    let mut expected_closed = Vec::new();
    let mut walked = 0;
    for m in parse::messages(d) {
        walked += 1;
        prop_assert!(walked <= d.len() / NETLINK_HEADER_LEN + 1, "the walk spins");
        let Ok(m) = m else { break };
        check_payload(m.payload)?;
        if m.control() == Ok(Control::Record) {
            let r = sink.record(m.payload);
            prop_assert_eq!(r.is_ok(), oracle(m.payload).is_some());
            if let Some(s) = oracle(m.payload) {
                expected_connected += u64::from(s.state == 1);
                if closed_oracle(&s) {
                    expected_closed.push(s);
                }
            }
        }
    }
    prop_assert_eq!(sink.connected, expected_connected);
    prop_assert_eq!(sink.peer_closed, expected_closed);
    Ok(())
}

fn assert_datagram(d: &[u8], what: &str) {
    if let Err(e) = check_datagram(d) {
        panic!("{what}: {e}\n{d:02x?}");
    }
}

/// Offsets of every length field of a well-formed datagram: each
/// nlmsg_len (true), and each nla_len of each record (false).
fn length_fields(d: &[u8]) -> Vec<(usize, bool)> {
    let mut fields = Vec::new();
    let mut at = 0;
    while at + NETLINK_HEADER_LEN <= d.len() {
        let len = ne32(d, at) as usize;
        if len < NETLINK_HEADER_LEN || at + len > d.len() {
            break;
        }
        fields.push((at, true));
        if ne16(d, at + 4) == parse::SOCK_DIAG_BY_FAMILY {
            let mut nla = at + NETLINK_HEADER_LEN + UNIX_DIAG_MSG_LEN;
            while nla + 4 <= at + len {
                fields.push((nla, false));
                let nla_len = usize::from(ne16(d, nla));
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

const EDGE_LENGTHS: [u32; 16] = [
    0,
    1,
    3,
    4,
    5,
    7,
    8,
    15,
    16,
    17,
    32,
    60,
    0xffff,
    0x1_0000,
    0xffff_fffc,
    u32::MAX,
];

#[test]
fn the_oracle_agrees_with_the_captures() {
    for r in RECORDS {
        let p = &r[NETLINK_HEADER_LEN..];
        assert!(oracle(p).is_some());
        check_payload(p).expect("agrees");
    }
    for f in FIXTURES {
        check_datagram(f).expect("agrees");
    }
    let closed = parse::messages(DATAGRAM)
        .filter_map(|m| oracle(m.ok()?.payload))
        .filter(closed_oracle)
        .count();
    assert_eq!(closed, 4);
}

#[test]
fn every_truncation_of_every_capture() {
    for (i, f) in FIXTURES.iter().enumerate() {
        for len in 0..f.len() {
            assert_datagram(&f[..len], &format!("fixture {i} cut to {len} bytes"));
        }
    }
}

#[test]
fn every_byte_of_every_capture_overwritten() {
    for (i, f) in FIXTURES.iter().enumerate() {
        let mut d = f.to_vec();
        for at in 0..d.len() {
            let was = d[at];
            for b in [0x00, 0xff, was ^ 0x80, was ^ 0x01] {
                d[at] = b;
                assert_datagram(&d, &format!("fixture {i}, byte {at} set to {b:#04x}"));
            }
            d[at] = was;
        }
    }
}

#[test]
fn every_length_field_of_every_capture_set_to_edge_values() {
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
    // 12 records + DONE + ERROR; 3 attributes a record, 4 for the 2 named.
    assert_eq!(seen, 14 + 12 * 3 + 2);
}

fn edit() -> impl Strategy<Value = Edit> {
    let edge = || prop_oneof![select(EDGE_LENGTHS.to_vec()), any::<u32>()];
    prop_oneof![
        any::<Index>().prop_map(Edit::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Byte(i, b)),
        (any::<Index>(), edge()).prop_map(|(i, v)| Edit::Len16(i, v as u16)),
        (any::<Index>(), edge()).prop_map(|(i, v)| Edit::Len32(i, v)),
        (any::<Index>(), 1usize..80).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<Index>(), vec(any::<u8>(), 1..80)).prop_map(|(i, b)| Edit::Insert(i, b)),
    ]
}

fn edited_capture() -> impl Strategy<Value = Vec<u8>> {
    byte_edits::edited(&FIXTURES, edit())
}

/// A record's payload: arbitrary, or a captured one with a few edits.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let captured: Vec<Vec<u8>> = RECORDS
        .iter()
        .map(|r| r[NETLINK_HEADER_LEN..].to_vec())
        .collect();
    prop_oneof![
        vec(any::<u8>(), 0..120),
        (select(captured), vec(edit(), 0..4)).prop_map(|(p, edits)| applied(p, &edits)),
    ]
}

/// A netlink message with a correct length, padded to 4 bytes.
fn frame(kind: u16, seq: u32, payload: &[u8], out: &mut Vec<u8>) {
    let len = NETLINK_HEADER_LEN + payload.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&2u16.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0x1234u32.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(align4(out.len()), 0);
}

fn nla(kind: u16, value: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(align4(out.len()), 0);
}

/// A socket as the generator writes it.
#[derive(Clone, Debug)]
struct Record {
    kind: u8,
    state: u8,
    inode: u32,
    cookie: u64,
    name: Option<Vec<u8>>,
    peer: Option<u32>,
    rqlen: Option<(u32, u32)>,
    shutdown: Option<u8>,
    /// Attributes closewatch does not read (VFS, ICONS, MEMINFO, UID, and
    /// types from the future), and where the known ones go among them.
    others: Vec<(u16, Vec<u8>)>,
    order: Vec<Index>,
}

fn record() -> impl Strategy<Value = Record> {
    let other = (
        prop_oneof![select(vec![1u16, 3, 5, 7]), 8u16..64],
        vec(any::<u8>(), 0..40),
    );
    (
        (
            prop_oneof![select(vec![1u8, 2, 5]), any::<u8>()],
            prop_oneof![select(vec![1u8, 7, 10]), any::<u8>()],
            any::<u32>(),
            any::<u64>(),
        ),
        (
            proptest::option::of(vec(any::<u8>(), 0..108)),
            proptest::option::of(prop_oneof![Just(0u32), any::<u32>()]),
            proptest::option::of(any::<(u32, u32)>()),
            proptest::option::of(prop_oneof![0u8..4, any::<u8>()]),
        ),
        vec(other, 0..3),
        vec(any::<Index>(), 4),
    )
        .prop_map(
            |((kind, state, inode, cookie), (name, peer, rqlen, shutdown), others, order)| Record {
                kind,
                state,
                inode,
                cookie,
                name,
                peer,
                rqlen,
                shutdown,
                others,
                order,
            },
        )
}

impl Record {
    /// `struct unix_diag_msg` and its attributes, as the kernel writes them
    /// (in any order).
    fn encode(&self) -> Vec<u8> {
        let mut p = vec![AF_UNIX, self.kind, self.state, 0];
        p.extend_from_slice(&self.inode.to_ne_bytes());
        p.extend_from_slice(&(self.cookie as u32).to_ne_bytes());
        p.extend_from_slice(&((self.cookie >> 32) as u32).to_ne_bytes());
        let mut attrs = self.others.clone();
        let known = [
            self.name.clone().map(|n| (UNIX_DIAG_NAME, n)),
            self.peer
                .map(|i| (UNIX_DIAG_PEER, i.to_ne_bytes().to_vec())),
            self.rqlen.map(|(r, w)| {
                let mut v = r.to_ne_bytes().to_vec();
                v.extend_from_slice(&w.to_ne_bytes());
                (UNIX_DIAG_RQLEN, v)
            }),
            self.shutdown.map(|b| (UNIX_DIAG_SHUTDOWN, vec![b])),
        ];
        for (attr, at) in known.into_iter().zip(&self.order) {
            if let Some(attr) = attr {
                let at = at.index(attrs.len() + 1);
                attrs.insert(at, attr);
            }
        }
        for (kind, value) in &attrs {
            nla(*kind, value, &mut p);
        }
        p
    }

    fn expected(&self) -> UnixSocket {
        UnixSocket {
            netns: NETNS,
            inode: u64::from(self.inode),
            cookie: self.cookie,
            kind: UnixKind::from_kernel(self.kind),
            state: self.state,
            peer: self.peer.map(u64::from),
            shutdown: self.shutdown,
            recv_q: self.rqlen.map(|(r, _)| r),
            name: self.name.clone(),
        }
    }
}

/// A transport that plays the same script on every connection, each
/// datagram with the length `recv` reports (more than its bytes: it did
/// not fit), and refuses to be read more often than the script allows.
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

fn run_dump(script: &[(Vec<u8>, usize)]) -> (Result<UnixTable, DumpError>, u32) {
    let recvs = Rc::new(Cell::new(0));
    let budget = MAX_ATTEMPTS as usize * (script.len() + 1);
    let mut connects = 0;
    let result = dump_unix(NETNS, || {
        connects += 1;
        Ok(Scripted {
            datagrams: script.iter().cloned().collect(),
            recvs: recvs.clone(),
            budget,
        })
    });
    (result, connects)
}

fn done() -> Vec<u8> {
    let mut d = Vec::new();
    frame(NLMSG_DONE, 1, &0u32.to_ne_bytes(), &mut d);
    d
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_parsed_or_rejected(d in vec(any::<u8>(), 0..512)) {
        check_payload(&d)?;
        check_datagram(&d)?;
    }

    #[test]
    fn edited_captures_are_parsed_or_rejected(d in edited_capture()) {
        check_datagram(&d)?;
    }

    /// Arbitrary or edited payloads, framed as records: each is checked.
    #[test]
    fn framed_payloads_are_parsed_or_rejected(payloads in vec(payload(), 0..6)) {
        let mut d = Vec::new();
        for p in &payloads {
            frame(parse::SOCK_DIAG_BY_FAMILY, 1, p, &mut d);
        }
        let msgs: Vec<RawMessage<'_>> =
            parse::messages(&d).collect::<Result<_, _>>().map_err(|e| {
                TestCaseError::fail(format!("framed messages did not walk: {e}"))
            })?;
        prop_assert_eq!(msgs.len(), payloads.len());
        check_datagram(&d)?;
    }

    /// Generated sockets, framed over two datagrams and ended by
    /// NLMSG_DONE, parse to exactly their fields, and the dump keeps
    /// exactly the peer-closed ones and counts the connected ones.
    #[test]
    fn generated_records_round_trip_through_the_receive_loop(
        records in vec(record(), 0..8),
        split in any::<Index>(),
    ) {
        let mut framed = Vec::new();
        for r in &records {
            let p = r.encode();
            prop_assert_eq!(socket(&p, NETNS), Ok(r.expected()));
            let mut m = Vec::new();
            frame(parse::SOCK_DIAG_BY_FAMILY, 1, &p, &mut m);
            framed.push(m);
        }
        let cut = split.index(framed.len() + 1);
        let script: Vec<(Vec<u8>, usize)> =
            [framed[..cut].concat(), framed[cut..].concat(), done()]
                .into_iter()
                .filter(|d| !d.is_empty())
                .map(|d| (d, 0))
                .collect();
        let (result, connects) = run_dump(&script);
        prop_assert_eq!(connects, 1);
        let expected: Vec<UnixSocket> = records.iter().map(Record::expected).collect();
        let table = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(table, UnixTable {
            connected: expected.iter().filter(|s| s.state == 1).count() as u64,
            peer_closed: expected.into_iter().filter(closed_oracle).collect(),
            diag_available: true,
        });
    }

    /// The receive loop over edited datagrams, some reported longer than
    /// they are: it ends, within its attempts, whatever they hold.
    #[test]
    fn the_receive_loop_ends_on_any_datagrams(
        datagrams in vec(
            (
                prop_oneof![4 => edited_capture(), 1 => vec(any::<u8>(), 0..64)],
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
        let (result, connects) = run_dump(&script);
        prop_assert!(connects <= MAX_ATTEMPTS, "{} connections", connects);
        match result {
            Ok(table) => {
                prop_assert!(table.peer_closed.len() as u64 <= table.connected);
                prop_assert!(table.peer_closed.iter().all(UnixSocket::peer_closed));
            }
            Err(DumpError::Io(e)) => prop_assert!(e.to_string() != OVERDRAWN, "the loop spun"),
            Err(_) => {}
        }
    }
}
