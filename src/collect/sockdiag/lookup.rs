//! A namespace's TCP tables from lookups of the sockets its processes hold,
//! instead of a dump. A dump walks the kernel's whole established hash,
//! which every namespace shares unless `net.ipv4.tcp_child_ehash_entries`
//! gives it its own (262,144 buckets here: ~2.4 ms of kernel time per walk
//! with nothing in them); a lookup (`inet_diag_req_v2` without NLM_F_DUMP)
//! goes to one bucket and answers with the same record a dump gives.
//!
//! Lookups are complete only when every socket in the namespace's tables is
//! held by a process: [`complete`] checks that against the namespace's
//! counters (/proc/net/sockstat and sockstat6), and any socket that is gone,
//! moved or answers for another inode makes [`Lookups`] fail, so that the
//! caller dumps instead.

use netlink_packet_core::NLM_F_REQUEST;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY};
use netlink_packet_sock_diag::inet::ExtensionFlags;

use super::{parse, DumpError, Family, Fill, Request, Sink, Transport};
use crate::collect::procfs::parse::TcpSockstat;

/// A socket to look up: what the fd pass read of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exact {
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// Its state when it was read (`TCP_*`).
    pub state: u8,
    pub inode: u64,
    /// The socket cookie; 0 if none was made yet.
    pub cookie: u64,
    /// Ports in host order; addresses in network order (IPv4: the first 4
    /// bytes).
    pub sport: u16,
    pub dport: u16,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// Listeners: connection requests still in their handshake
    /// (`icsk_accept_queue.qlen`), which are in no fd and no counter.
    pub requests: u32,
}

/// `INET_DIAG_NOCOOKIE`: any cookie.
const NO_COOKIE: u32 = !0;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, the
/// 48-byte socket id.
const REQUEST_LEN: usize = 4 + 4 + 48;
/// Requests sent in one datagram. Each answer (a few hundred bytes, with
/// tcp_info) waits in the socket's receive buffer until read: 64 of them
/// fit in net.core.rmem_default's 208 KiB even at 2 KiB of buffer each. An
/// answer that did not fit would fail the lookups (ENOBUFS), and the
/// namespace would be dumped.
const BATCH: usize = 64;
const ENOENT: i32 = 2;
const ESTALE: i32 = 116;
const TCP_LISTEN: u8 = 10;

/// The exact request for one socket: the kernel finds it by its addresses
/// (and cookie, when it has one) and answers with its record, tcp_info
/// included, or with ENOENT.
pub fn encode(e: &Exact, seq: u32) -> Vec<u8> {
    let len = parse::NETLINK_HEADER_LEN + REQUEST_LEN;
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    buf.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&[e.family, IPPROTO_TCP, ExtensionFlags::INFO.bits(), 0]);
    buf.extend_from_slice(&super::ALL_STATES.to_ne_bytes());
    buf.extend_from_slice(&e.sport.to_be_bytes());
    buf.extend_from_slice(&e.dport.to_be_bytes());
    buf.extend_from_slice(&e.saddr);
    buf.extend_from_slice(&e.daddr);
    buf.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    let (low, high) = match e.cookie {
        0 => (NO_COOKIE, NO_COOKIE),
        c => (c as u32, (c >> 32) as u32),
    };
    buf.extend_from_slice(&low.to_ne_bytes());
    buf.extend_from_slice(&high.to_ne_bytes());
    buf
}

/// Why a namespace's tables cannot be read by lookups.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Incomplete {
    #[error("{0} TIME_WAIT sockets")]
    TimeWait(u64),
    #[error("{family}: {inuse} sockets in its tables, {held} held by a process")]
    Unheld {
        family: &'static str,
        inuse: u64,
        held: u64,
    },
    #[error("{0} connection requests in a handshake")]
    Requests(u64),
}

/// Whether `held` (every TCP socket in a table of the namespace that a
/// process holds, each once) is every socket of the namespace's tables, as
/// its counters tell: no TIME_WAIT, no connection request, and as many
/// sockets in use per family as held. Sockets no process holds (orphans
/// closing, connections not yet accepted, the kernel's own) count in
/// `inuse` and not in `held`.
pub fn complete(counters: &TcpSockstat, held: &[Exact]) -> Result<(), Incomplete> {
    if counters.tw > 0 {
        return Err(Incomplete::TimeWait(counters.tw));
    }
    let requests: u64 = held.iter().map(|e| u64::from(e.requests)).sum();
    if requests > 0 {
        return Err(Incomplete::Requests(requests));
    }
    let v4 = held.iter().filter(|e| e.family == AF_INET).count() as u64;
    let v6 = held.iter().filter(|e| e.family == AF_INET6).count() as u64;
    for (family, inuse, held) in [("IPv4", counters.inuse, v4), ("IPv6", counters.inuse6, v6)] {
        if inuse != held {
            return Err(Incomplete::Unheld {
                family,
                inuse,
                held,
            });
        }
    }
    Ok(())
}

/// Answers requests by looking up, on one socket, the `held` sockets in
/// the states and family a request asks for: listeners first, as a dump
/// gives them. Fails if one is gone or answers for another inode.
pub struct Lookups<'a, T> {
    transport: T,
    held: &'a [Exact],
    seq: u32,
    buf: Vec<u8>,
}

impl<'a, T: Transport> Lookups<'a, T> {
    pub fn new(transport: T, held: &'a [Exact]) -> Self {
        Lookups {
            transport,
            held,
            seq: 0,
            buf: Vec::with_capacity(super::RECV_BUFFER),
        }
    }

    /// One batch: every request in one datagram, then every answer.
    fn batch<S: Sink>(&mut self, batch: &[&Exact], sink: &mut S) -> Result<(), DumpError> {
        let first = self.seq.wrapping_add(1);
        let mut out = Vec::with_capacity(batch.len() * (parse::NETLINK_HEADER_LEN + REQUEST_LEN));
        for (i, e) in batch.iter().enumerate() {
            out.extend_from_slice(&encode(e, first.wrapping_add(i as u32)));
        }
        self.seq = first.wrapping_add(batch.len() as u32);
        self.transport.send(&out)?;
        let mut answered = vec![false; batch.len()];
        let mut left = batch.len();
        while left > 0 {
            let len = self.transport.recv(&mut self.buf)?;
            if len == 0 {
                return Err(DumpError::Eof);
            }
            if len > self.buf.len() {
                return Err(DumpError::Truncated {
                    len,
                    cap: self.buf.capacity(),
                });
            }
            for msg in parse::messages(&self.buf[..len]) {
                let msg = msg?;
                let i = msg.seq.wrapping_sub(first) as usize;
                let Some(e) = batch.get(i) else { continue };
                if std::mem::replace(&mut answered[i], true) {
                    continue;
                }
                left -= 1;
                match msg.control()? {
                    parse::Control::Record => {
                        let inode = parse::peek_inode(msg.payload)?;
                        if inode != e.inode {
                            return Err(DumpError::Changed(format!(
                                "socket {} answered as {inode}",
                                e.inode
                            )));
                        }
                        sink.record(msg.payload)?;
                    }
                    parse::Control::Error { error } if error == -ENOENT => {
                        return Err(DumpError::Changed(format!("socket {} is gone", e.inode)));
                    }
                    // Its addresses now lead to a socket with another
                    // cookie: listeners sharing a port (SO_REUSEPORT)
                    // answer one lookup for the group.
                    parse::Control::Error { error } if error == -ESTALE => {
                        return Err(DumpError::Changed(format!(
                            "socket {}: its addresses lead to another socket",
                            e.inode
                        )));
                    }
                    parse::Control::Error { error } | parse::Control::Done { error } => {
                        return Err(DumpError::Kernel { errno: error });
                    }
                    parse::Control::Ignore => {}
                }
            }
        }
        Ok(())
    }
}

impl<T: Transport> Fill for Lookups<'_, T> {
    fn fill<S: Sink>(&mut self, req: &Request, sink: &mut S) -> Result<(), DumpError> {
        sink.reset();
        let family = match req.family {
            Family::V4 => Some(AF_INET),
            Family::V6 => Some(AF_INET6),
            Family::Both => None,
        };
        let mut asked: Vec<&Exact> = self
            .held
            .iter()
            .filter(|e| req.states & (1u32 << e.state.min(31)) != 0)
            .filter(|e| family.is_none_or(|f| f == e.family))
            .collect();
        // A port tally needs each listener before the connections it
        // accepted, as a dump gives them (sort_by_key is stable).
        asked.sort_by_key(|e| e.state != TCP_LISTEN);
        for batch in asked.chunks(BATCH) {
            self.batch(batch, sink)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(inode: u64, state: u8, requests: u32) -> Exact {
        let mut saddr = [0u8; 16];
        saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        Exact {
            family: AF_INET,
            state,
            inode,
            cookie: 0,
            sport: 8080,
            dport: 0,
            saddr,
            daddr: [0; 16],
            requests,
        }
    }

    fn v6(inode: u64) -> Exact {
        Exact {
            family: AF_INET6,
            ..v4(inode, 1, 0)
        }
    }

    fn counters(inuse: u64, inuse6: u64, tw: u64) -> TcpSockstat {
        TcpSockstat { inuse, tw, inuse6 }
    }

    use std::collections::VecDeque;

    use crate::model::NetnsId;

    /// A flagged dump captured on this kernel: its records are the answers.
    const DATAGRAM: &[u8] = include_bytes!("../../../tests/fixtures/sockdiag/v4/000.bin");

    fn records() -> Vec<Vec<u8>> {
        parse::messages(DATAGRAM)
            .map(|m| m.expect("a captured message"))
            .filter(|m| m.control() == Ok(parse::Control::Record))
            .map(|m| m.payload.to_vec())
            .collect()
    }

    /// One netlink message: a header for `seq` of `kind`, then `payload`.
    fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        super::super::prop_tests::frame(kind, 0, seq, payload, &mut m);
        m
    }

    fn enoent(seq: u32) -> Vec<u8> {
        let mut payload = (-(ENOENT)).to_ne_bytes().to_vec();
        payload.extend_from_slice(&[0; 16]); // the request's header
        message(2, seq, &payload) // NLMSG_ERROR
    }

    /// Answers with canned datagrams; keeps what was sent.
    struct Canned {
        datagrams: VecDeque<Vec<u8>>,
        sent: Vec<Vec<u8>>,
    }

    impl Transport for Canned {
        fn send(&mut self, request: &[u8]) -> std::io::Result<()> {
            self.sent.push(request.to_vec());
            Ok(())
        }

        fn recv(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
            buf.clear();
            let d = self.datagrams.pop_front().unwrap_or_default();
            buf.extend_from_slice(&d);
            Ok(d.len())
        }
    }

    /// The held sockets the records answer for, in the records' order.
    fn held_for(records: &[Vec<u8>]) -> Vec<Exact> {
        records
            .iter()
            .map(|r| v4(parse::peek_inode(r).expect("an inode"), 8, 0))
            .collect()
    }

    fn fill(held: &[Exact], datagrams: Vec<Vec<u8>>) -> (Result<(), DumpError>, usize, usize) {
        let canned = Canned {
            datagrams: datagrams.into(),
            sent: Vec::new(),
        };
        let mut lookups = Lookups::new(canned, held);
        let mut sink = super::super::SocketSink {
            netns: NetnsId(1),
            sockets: Vec::new(),
        };
        let req = Request {
            family: Family::Both,
            states: super::super::ALL_STATES,
            tcp_info: true,
        };
        let result = lookups.fill(&req, &mut sink);
        (result, sink.sockets.len(), lookups.transport.sent.len())
    }

    #[test]
    fn answers_in_any_order_and_datagram_reach_the_sink_once_each() {
        let records = records();
        assert!(
            records.len() >= 3,
            "the capture has {} records",
            records.len()
        );
        let held = held_for(&records);
        // Every answer in one datagram, last first, a leftover of an
        // earlier request among them, and one answer repeated.
        let mut all = message(20, 900, &records[0]);
        for (i, r) in records.iter().enumerate().rev() {
            all.extend(message(20, i as u32 + 1, r));
        }
        all.extend(message(20, 1, &records[0]));
        let (result, kept, sent) = fill(&held, vec![all]);
        assert!(result.is_ok(), "{result:?}");
        assert_eq!((kept, sent), (records.len(), 1));
        // One datagram per answer, as the kernel sends them.
        let one_each = records
            .iter()
            .enumerate()
            .map(|(i, r)| message(20, i as u32 + 1, r))
            .collect();
        assert_eq!(fill(&held, one_each).1, records.len());
    }

    #[test]
    fn a_socket_gone_or_answering_for_another_inode_fails_the_lookups() {
        let records = records();
        let held = held_for(&records);
        let mut gone: Vec<Vec<u8>> = records
            .iter()
            .enumerate()
            .map(|(i, r)| message(20, i as u32 + 1, r))
            .collect();
        gone[1] = enoent(2);
        let (result, _, _) = fill(&held, gone);
        assert!(matches!(result, Err(DumpError::Changed(_))), "{result:?}");

        let mut moved = held.clone();
        moved[0].inode += 1;
        let answers = records
            .iter()
            .enumerate()
            .map(|(i, r)| message(20, i as u32 + 1, r))
            .collect();
        let (result, _, _) = fill(&moved, answers);
        assert!(matches!(result, Err(DumpError::Changed(_))), "{result:?}");

        // A socket that ends before every answer came is an error too.
        let (result, _, _) = fill(&held, vec![message(20, 1, &records[0])]);
        assert!(matches!(result, Err(DumpError::Eof)), "{result:?}");
    }

    #[test]
    fn a_request_names_the_socket_in_network_order() {
        let e = Exact {
            cookie: 0x0000_0001_0000_0002,
            dport: 40000,
            ..v4(7, 1, 0)
        };
        let b = encode(&e, 9);
        assert_eq!(b.len(), 72);
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().expect("4 or 2 bytes")),
            72
        );
        assert_eq!(
            u16::from_ne_bytes(b[4..6].try_into().expect("4 or 2 bytes")),
            20
        ); // SOCK_DIAG_BY_FAMILY
        assert_eq!(
            u16::from_ne_bytes(b[6..8].try_into().expect("4 or 2 bytes")),
            1
        ); // NLM_F_REQUEST, no dump
        assert_eq!(
            u32::from_ne_bytes(b[8..12].try_into().expect("4 or 2 bytes")),
            9
        );
        assert_eq!(&b[16..20], &[AF_INET, 6, 2, 0]); // TCP, INET_DIAG_INFO
        assert_eq!(&b[24..26], &8080u16.to_be_bytes());
        assert_eq!(&b[26..28], &40000u16.to_be_bytes());
        assert_eq!(&b[28..32], &[127, 0, 0, 1]);
        assert_eq!(
            u32::from_ne_bytes(b[64..68].try_into().expect("4 or 2 bytes")),
            2
        );
        assert_eq!(
            u32::from_ne_bytes(b[68..72].try_into().expect("4 or 2 bytes")),
            1
        );
        let any = encode(&v4(7, 1, 0), 9);
        assert_eq!(
            &any[64..72],
            &[0xff; 8],
            "no cookie yet: INET_DIAG_NOCOOKIE"
        );
    }

    #[test]
    fn lookups_suffice_only_when_the_counters_show_nothing_unheld() {
        let held = [v4(1, 10, 0), v4(2, 1, 0), v6(3)];
        assert_eq!(complete(&counters(2, 1, 0), &held), Ok(()));
        assert_eq!(complete(&counters(0, 0, 0), &[]), Ok(()));
        assert_eq!(
            complete(&counters(2, 1, 4), &held),
            Err(Incomplete::TimeWait(4))
        );
        assert_eq!(
            complete(&counters(3, 1, 0), &held),
            Err(Incomplete::Unheld {
                family: "IPv4",
                inuse: 3,
                held: 2
            })
        );
        assert_eq!(
            complete(&counters(2, 0, 0), &held),
            Err(Incomplete::Unheld {
                family: "IPv6",
                inuse: 0,
                held: 1
            })
        );
        let handshaking = [v4(1, 10, 2), v4(2, 1, 0), v6(3)];
        assert_eq!(
            complete(&counters(2, 1, 0), &handshaking),
            Err(Incomplete::Requests(2))
        );
    }
}
